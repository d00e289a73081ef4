"""Allocators for runs whose memory must stay bounded by the chunk (SPEC §7).

pyarrow's default pool (mimalloc) keeps more of the pages of freed chunks than jemalloc:
on the realistic export (benchmarks/realistic.py) a 1,000,000-row dry run peaked at
479 MB with mimalloc and 423 MB with jemalloc, measured side by side. A pyarrow built
without jemalloc keeps its default, and `ARROW_DEFAULT_MEMORY_POOL` set by the user wins.
"""

from __future__ import annotations

import ctypes
import os

import pyarrow as pa

#: mallopt's parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def bound_arrow_memory() -> None:
    """Make jemalloc Arrow's memory pool, unless the user chose one."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        return
    pa.set_memory_pool(pool)


def bound_malloc() -> bool:
    """Pin glibc's mmap threshold at 256 KiB and its trim threshold at 1 MiB.

    glibc raises the mmap threshold each time a large block is freed (up to 32 MiB), so
    after the first chunk numpy's and pandas' per-column arrays (400 KB for 50,000 rows)
    come from the heap, whose freed holes are not given back while a later block sits
    above them. Pinned, they are mapped and unmapped whole: a 1,000,000-row dry run of
    the realistic export peaked at 406 MB instead of 425 MB, side by side. Returns
    whether it applied: not without glibc, nor when the user set `MALLOC_MMAP_THRESHOLD_`.
    """
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 256 << 10) and mallopt(_M_TRIM_THRESHOLD, 1 << 20))
