"""Evaluate a trained run from the command line: load its config and checkpoint, then score it
(`python -m eval.slot_sweep`, `eval.per_object`, `eval.set_prediction`, `eval.disentangle`)."""
