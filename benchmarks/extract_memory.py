"""Peak memory of extracting 10,000,000 Parquet rows in chunks of 50,000.

The extraction runs in a child process (so the parent's data generation does not count)
and reads every column through `etl.extract`; the figure is the child's peak RSS.
Target (issue #2): peak RSS < 500 MB, i.e. bounded by the chunk, not the file.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROWS = 10_000_000
GROUP = 1_000_000
CHUNK = 50_000
TARGET_MB = 500
ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / ".data"


def _group(rng: np.random.Generator, start: int, n: int) -> pa.Table:
    """One row group of realistic orders, built with Arrow kernels (no Python objects)."""
    ids = pc.cast(pa.array(np.arange(start, start + n)), pa.string())
    customers = pc.cast(pa.array(rng.integers(0, 500_000, n)), pa.string())
    seconds = rng.integers(1_700_000_000, 1_730_000_000, n).astype("datetime64[s]")
    return pa.table({
        "order_id": pc.binary_join_element_wise("o-", ids, ""),
        "customer_id": pc.binary_join_element_wise("c-", customers, ""),
        "email": pc.binary_join_element_wise("user", customers, "@example.com", ""),
        "shipped_at": pa.array(seconds, pa.timestamp("s", "UTC")).cast(pa.timestamp("us", "UTC")),
        "order_total": pa.array(np.round(rng.random(n) * 200, 2)),
        "item_count": pa.array(rng.integers(1, 9, n)),
        "gift": pa.array(rng.random(n) < 0.1),
        "currency": pa.array(np.where(rng.random(n) < 0.8, "USD", "EUR")).dictionary_encode(),
    })


def make_source(path: Path, rows: int = ROWS) -> None:
    """Write the file once, one row group at a time (the generator's memory stays small)."""
    if path.exists() and pq.ParquetFile(path).metadata.num_rows == rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    writer = None
    try:
        for start in range(0, rows, GROUP):
            table = _group(rng, start, min(GROUP, rows - start))
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def child(path: str) -> None:
    """Extract every column in chunks and print rows and seconds as JSON."""
    from etl.definition import SourceSpec
    from etl.extract import open_extractor

    extractor = open_extractor(SourceSpec(type="parquet", path=path, chunk_size=CHUNK))
    imported_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    rows = sum(len(frame) for frame in extractor.chunks(extractor.columns(), None))
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "seconds": seconds, "imported_mb": imported_mb}))


def main() -> None:
    path = DATA / "orders_10m.parquet"
    make_source(path)
    code = f"from benchmarks.extract_memory import child; child({str(path)!r})"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            check=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    rows, seconds = figures["rows"], figures["seconds"]
    size_mb = path.stat().st_size / 1e6
    print(f"file: {size_mb:,.0f} MB Parquet, {ROWS:,} rows, row groups of {GROUP:,}")
    print(f"extracted {rows:,} rows in chunks of {CHUNK:,}: "
          f"{seconds:.1f} s, {rows / seconds:,.0f} rows/s")
    verdict = "met" if peak_mb < TARGET_MB else "MISSED"
    print(f"peak RSS of the extracting process: {peak_mb:,.0f} MB "
          f"(target < {TARGET_MB} MB: {verdict}); {figures['imported_mb']:,.0f} MB of it is "
          "the interpreter with pandas/pyarrow loaded")


if __name__ == "__main__":
    main()
