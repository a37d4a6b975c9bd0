"""Version of the on-disk sample format.

Bump it whenever the bytes a generator writes for a given (seed, index) could change,
so cached datasets made by an older library version are not silently reused.
"""

DATA_VERSION = 1
