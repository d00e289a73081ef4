"""Peak memory of extracting 10,000,000 Parquet rows (and 2,000,000 CSV rows) in 50k chunks.

The rows are the realistic export of benchmarks/realistic.py (the CSV with its NaN/NULL
markers in number columns). Each extraction runs in a child process (so the parent's
data generation does not count) and reads every column through `etl.extract`; the
figure is the child's peak RSS.
Target (issue #2): peak RSS < 500 MB, i.e. bounded by the chunk, not the file.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import realistic

ROWS = 10_000_000
CSV_ROWS = 2_000_000
CHUNK = 50_000
TARGET_MB = 500
ROOT = Path(__file__).resolve().parent.parent


def child(kind: str, path: str) -> None:
    """Extract every column in chunks; print rows, seconds and memory figures as JSON."""
    from etl.definition import SourceSpec
    from etl.extract import open_extractor

    extractor = open_extractor(SourceSpec(type=kind, path=path, chunk_size=CHUNK))
    imported_mb = _high_water_mb()
    started = time.perf_counter()
    rows = sum(len(frame) for frame in extractor.chunks(extractor.columns(), None))
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds": seconds,
                "imported_mb": imported_mb,
                "peak_mb": _high_water_mb(),
            }
        )
    )


def _high_water_mb() -> float:
    """This process image's own peak RSS (VmHWM): the child's own getrusage(RUSAGE_SELF)
    started from the parent's RSS (229 MB right after import, against 127 MB here)."""
    status = Path("/proc/self/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kib) / 1024


def _extract(kind: str, path: Path) -> dict[str, float]:
    code = f"from benchmarks.extract_memory import child; child({kind!r}, {str(path)!r})"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _report(label: str, figures: dict[str, float]) -> None:
    rows, seconds, peak = figures["rows"], figures["seconds"], figures["peak_mb"]
    verdict = "met" if peak < TARGET_MB else "MISSED"
    print(
        f"{label}: {rows:,} rows in chunks of {CHUNK:,}: {seconds:.1f} s, "
        f"{rows / seconds:,.0f} rows/s; peak RSS {peak:,.0f} MB (target < {TARGET_MB} MB: "
        f"{verdict}; {figures['imported_mb']:,.0f} MB of it is Python with pandas/pyarrow)"
    )


def main() -> None:
    parquet, csv = realistic.parquet(ROWS), realistic.csv(CSV_ROWS)
    print(
        f"Parquet {parquet.stat().st_size / 1e6:,.0f} MB (row groups of {realistic.GROUP:,}), "
        f"CSV {csv.stat().st_size / 1e6:,.0f} MB"
    )
    figures = _extract("parquet", parquet)
    _report("parquet", figures)
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    print(f"  (the same child seen by getrusage(RUSAGE_CHILDREN).ru_maxrss: {children_mb:,.0f} MB)")
    _report("csv (typed by a first pass, then read)", _extract("csv", csv))


if __name__ == "__main__":
    main()
