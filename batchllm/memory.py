"""How a batchllm process allocates: two settings that keep its resident size near what it uses.

A run builds large short-lived arrays (the done index, a batch's hashes) and Arrow buffers (a
read's blocks, a part's columns). Measured on a 1M-row nightly run, the allocators' defaults keep
~30–40 MB of freed pages: mimalloc (Arrow's default pool) keeps its segments, and glibc raises its
mmap threshold to the largest block freed, so later large blocks land in the heap, whose freed
pages are kept. ``frugal()`` gives Arrow glibc's allocator and fixes the threshold at 128 KiB:
every large block is then mapped on its own and unmapped when freed. The command line calls it
once at start; the Python API leaves the process's allocators as the caller set them. An
``ARROW_DEFAULT_MEMORY_POOL`` in the environment is kept.
"""

from __future__ import annotations

import ctypes
import os

import pyarrow as pa

#: glibc's ``mallopt`` parameter number
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 128 * 1024


def frugal() -> None:
    """Arrow on glibc's allocator, and glibc's mmap threshold fixed (where there is glibc)."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return  # not glibc: its allocator returns memory its own way
    mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        pa.set_memory_pool(pa.system_memory_pool())
