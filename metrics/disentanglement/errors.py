"""The one error type the disentanglement metrics raise for bad inputs."""
from __future__ import annotations


class MetricInputError(ValueError):
    """An input a metric cannot score (NaN/inf codes, constant factors, wrong shapes, too few points).

    A `ValueError`, so generic callers still catch it; the message names the problem and the argument.
    """
