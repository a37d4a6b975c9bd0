"""Training plumbing shared by `train_slots.py`: typed config, schedules, checkpoints, evaluation."""
