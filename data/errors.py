"""The one exception type the data package raises for bad input.

Every problem a user can cause (a missing shard, a corrupt tar, a sample of the wrong
size, an unknown generator name) surfaces as a single ``DataError`` whose message names
the file and what was expected, instead of a deep traceback from tarfile or PIL.
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad data or a bad data request; the message says which file/key and why."""
