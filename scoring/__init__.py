"""Score a slot model on an evaluation set: object discovery (FG-ARI, mBO, ...) and its test-time slot sweep,
per-object disentanglement of matched slots, set-prediction AP. Functions of a model and batches, with no
knowledge of run directories or configs, so training and the evaluation commands share them."""
