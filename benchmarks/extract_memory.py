"""Peak memory of extracting 10,000,000 Parquet rows (and 2,000,000 CSV rows) in 50k chunks.

Each extraction runs in a child process (so the parent's data generation does not count)
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
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROWS = 10_000_000
CSV_ROWS = 2_000_000
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


def make_csv(parquet: Path, path: Path, rows: int = CSV_ROWS) -> None:
    """The first `rows` rows of the Parquet file as CSV, written batch by batch."""
    if path.exists():
        return
    source = pq.ParquetFile(parquet)
    schema = pa.schema(f.with_type(pa.string()) if pa.types.is_dictionary(f.type) else f
                       for f in source.schema_arrow)
    with pacsv.CSVWriter(path, schema) as writer:
        for batch in source.iter_batches(batch_size=100_000):
            writer.write_table(pa.Table.from_batches([batch]).cast(schema))
            rows -= batch.num_rows
            if rows <= 0:
                break


def child(kind: str, path: str) -> None:
    """Extract every column in chunks; print rows, seconds and memory figures as JSON."""
    from etl.definition import SourceSpec
    from etl.extract import open_extractor

    extractor = open_extractor(SourceSpec(type=kind, path=path, chunk_size=CHUNK))
    imported_mb = _high_water_mb()
    started = time.perf_counter()
    rows = sum(len(frame) for frame in extractor.chunks(extractor.columns(), None))
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "seconds": seconds, "imported_mb": imported_mb,
                      "peak_mb": _high_water_mb()}))


def _high_water_mb() -> float:
    """This process image's own peak RSS (VmHWM): the child's own getrusage(RUSAGE_SELF)
    started from the parent's RSS (229 MB right after import, against 127 MB here)."""
    status = Path("/proc/self/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kib) / 1024


def _extract(kind: str, path: Path) -> dict[str, float]:
    code = f"from benchmarks.extract_memory import child; child({kind!r}, {str(path)!r})"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _report(label: str, figures: dict[str, float]) -> None:
    rows, seconds, peak = figures["rows"], figures["seconds"], figures["peak_mb"]
    verdict = "met" if peak < TARGET_MB else "MISSED"
    print(f"{label}: {rows:,} rows in chunks of {CHUNK:,}: {seconds:.1f} s, "
          f"{rows / seconds:,.0f} rows/s; peak RSS {peak:,.0f} MB (target < {TARGET_MB} MB: "
          f"{verdict}; {figures['imported_mb']:,.0f} MB of it is Python with pandas/pyarrow)")


def main() -> None:
    parquet, csv = DATA / "orders_10m.parquet", DATA / "orders_2m.csv"
    make_source(parquet)
    make_csv(parquet, csv)
    print(f"Parquet {parquet.stat().st_size / 1e6:,.0f} MB (row groups of {GROUP:,}), "
          f"CSV {csv.stat().st_size / 1e6:,.0f} MB")
    figures = _extract("parquet", parquet)
    _report("parquet", figures)
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    print(f"  (the same child seen by getrusage(RUSAGE_CHILDREN).ru_maxrss: {children_mb:,.0f} MB)")
    _report("csv (typed by a first pass, then read)", _extract("csv", csv))


if __name__ == "__main__":
    main()
