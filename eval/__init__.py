"""Evaluate a trained run from the command line: load its config and checkpoint, then score it
(`python -m eval.slot_sweep`, `eval.per_object`, `eval.set_prediction`, `eval.disentangle`), or segment
anyone's images with it (`python -m eval.segment`; from Python, `eval.load_run(RUN).segment(images)`)."""
from eval.segmenter import Segmentation, Segmenter, load_run

__all__ = ["Segmentation", "Segmenter", "load_run"]
