"""Multi-run studies: each trains its runs through `train_slots.py` (resumable, reusable, shareable between
processes) and writes its table and plot into `results/<study>/README.md`."""
