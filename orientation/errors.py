"""One error type for bad input to the orientation functions, so callers can turn it into a one-line message."""


class OrientationError(ValueError):
    """Input the orientation functions cannot act on (a non-cubic voxel grid, an unknown rotation index...)."""
