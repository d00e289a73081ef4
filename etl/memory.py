"""Arrow's allocator for runs whose memory must stay bounded by the chunk (SPEC §7).

pyarrow's default pool (mimalloc) keeps more of the pages of freed chunks than jemalloc:
on the realistic export (benchmarks/realistic.py) a 1,000,000-row dry run peaked at
479 MB with mimalloc and 423 MB with jemalloc, measured side by side. A pyarrow built
without jemalloc keeps its default, and `ARROW_DEFAULT_MEMORY_POOL` set by the user wins.
"""

from __future__ import annotations

import os

import pyarrow as pa


def bound_arrow_memory() -> None:
    """Make jemalloc Arrow's memory pool, unless the user chose one."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        return
    pa.set_memory_pool(pool)
