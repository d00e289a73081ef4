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
    """Pin glibc's mmap threshold at 1 MiB and its trim threshold at 8 MiB.

    glibc raises the mmap threshold each time a large block is freed (up to 32 MiB), so
    after the first chunk numpy's and pandas' per-column arrays (400 KB for 50,000 rows)
    come from the heap, whose freed holes are not given back while a later block sits
    above them. Pinned, blocks above 1 MiB are mapped and unmapped whole, and the heap
    keeps up to 8 MiB free at its top instead of page-faulting it back. Side by side on
    the realistic export, a 10,000,000-row dry run peaked at 378 MB in 103 s (glibc's
    own thresholds were measured at 425 MB on 1,000,000 rows; 256 KiB / 1 MiB gave
    358 MB in 118 s, 64 MiB / 128 MiB 415 MB in 94 s). Returns whether it applied: not
    without glibc, nor when the user set `MALLOC_MMAP_THRESHOLD_`.
    """
    return _mallopt(mmap_threshold=1 << 20, trim_threshold=8 << 20)


def keep_freed_malloc(trim_threshold: int = 128 << 20) -> bool:
    """In a preparing process and in the run's process beside them
    (`etl.runner.processes`): glibc keeps freed blocks up to 64 MiB for reuse instead of
    unmapping them, since mapping them again page-faults every page, and keeps up to
    `trim_threshold` bytes free at the top of the heap.

    With two preparing processes on the realistic export this cut system time from 4.3
    to 1.8 s and the 1,000,000-row dry run from 9.1 to 8.0 s, for about 140 MB more (Pss
    summed over the processes). The run's process receives every chunk's bodies. There
    it cut the page faults from 518,000 to 130,000 and the system time from 2.95 to
    1.1 s. A 16 MiB trim threshold was as fast there as 128 MiB, and its peak was about
    75 MB lower (four runs each). Returns whether it applied."""
    return _mallopt(mmap_threshold=64 << 20, trim_threshold=trim_threshold)


def _mallopt(mmap_threshold: int, trim_threshold: int) -> bool:
    """Pin glibc's thresholds; not without glibc, nor when the user set them."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, mmap_threshold) and mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
