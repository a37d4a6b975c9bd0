"""training/allocator.py: with freed memory kept, a large block freed and allocated again comes from the heap
(glibc counts no mapped bytes for it); with glibc's own behaviour restored, the same block is a mapping."""
import ctypes
import sys

import pytest
import torch

from training.allocator import keep_freed_memory, return_freed_memory


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def mapped_bytes() -> int:
    """Bytes glibc holds in mmapped blocks right now (mallinfo2's hblkhd)."""
    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = MallInfo2
    return mallinfo2().hblkhd


def mapped_while_holding(megabytes: int) -> int:
    block = torch.empty(megabytes * 2**18)  # float32: 4 bytes each
    block.fill_(1.0)
    held = mapped_bytes()
    del block
    return held


def has_mallinfo2() -> bool:
    try:
        return sys.platform.startswith("linux") and hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:  # another C library
        return False


glibc = pytest.mark.skipif(not has_mallinfo2(), reason="needs glibc >= 2.33")


@glibc
def test_kept_memory_serves_large_blocks_from_the_heap_and_glibcs_default_maps_them():
    try:
        assert return_freed_memory()
        baseline = mapped_bytes()
        assert mapped_while_holding(64) - baseline >= 64 * 2**20  # glibc maps a 64 MiB block
        assert keep_freed_memory()
        baseline = mapped_bytes()
        assert mapped_while_holding(64) - baseline < 2**20  # now it comes from the heap
    finally:
        return_freed_memory()
