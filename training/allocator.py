"""Keep freed memory inside the process (glibc), so a CPU training step does not pay for page faults.

glibc's malloc serves every block above its mmap threshold (at most 32 MiB) with a fresh mapping and unmaps it
on free; a 64x64 step allocates many such blocks ([slots x channels x pixels] activations of 40 MiB and more),
so each step faults every page of them in again, and a slow-memory CPU spends as long on that as on the
arithmetic. PyTorch's CPU tuning guide answers this with jemalloc or tcmalloc; `mallopt` does the same with
the C library already loaded: no mappings, and no returning of the heap's top to the system, so freed blocks
are reused by the next step. The process's resident memory then stays at its peak, which a training run
reaches within its first steps anyway.
"""
from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # glibc's malloc.h
GLIBC_MMAP_MAX, GLIBC_MMAP_THRESHOLD_MAX = 65536, 32 * 1024 * 1024  # its defaults and the threshold's ceiling


def _mallopt():
    """glibc's `mallopt`, or None on another platform or C library."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL("libc.so.6"), "mallopt", None)
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Serve every allocation from the heap and never trim it; True if glibc accepted both settings."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def return_freed_memory() -> bool:
    """glibc's behaviour once its dynamic threshold has settled (blocks above 32 MiB mapped and unmapped, the
    heap trimmed above twice that): the baseline `bench.allocator` compares against in the same process."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return (bool(mallopt(M_MMAP_MAX, GLIBC_MMAP_MAX)) and bool(mallopt(M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD_MAX))
            and bool(mallopt(M_TRIM_THRESHOLD, 2 * GLIBC_MMAP_THRESHOLD_MAX)))
