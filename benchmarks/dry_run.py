"""`etl run --dry-run --output` end to end over the realistic export (benchmarks/realistic.py).

Runs the real CLI in a subprocess and reports rows/s and its peak memory (Pss summed over
the run's process and its preparing processes):
1,000,000 Parquet rows for speed (the bodies written to a file; in the run's process, then
with `--processes` one per CPU), then 10,000,000 rows in
chunks of 50,000 for memory (the bodies written to /dev/null: 6 GB of output would
measure the disk). Targets (issue 10): >= 200,000 rows/s end to end on a 2-core machine,
peak RSS < 450 MB for the 10,000,000 rows.

    python -m benchmarks.dry_run          # both
    python -m benchmarks.dry_run speed    # only the 1,000,000-row run
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import realistic

ROWS = 1_000_000
MEMORY_ROWS = 10_000_000
TARGET_ROWS_S = 200_000
TARGET_MB = 450


def _run(
    rows: int, output: Path, processes: int = 1, every: float = 0.02
) -> tuple[float, float, dict[str, float]]:
    """(seconds end to end, peak memory MB, the run's --report-json) of one dry run, its
    memory read every `every` seconds (reading smaps costs the run CPU: every 20 ms it
    slowed a 1,000,000-row run by 6-9 % on two cores, so the speed runs read every 0.2 s
    and the memory run, whose figure is the peak, every 20 ms)."""
    pipeline = realistic.pipeline(realistic.parquet(rows), f"bench_dry_run_{rows}")
    report_file = realistic.DATA / "dry_run_report.json"
    errors = realistic.DATA / "dry_run.stderr"
    started = time.monotonic()
    with errors.open("w") as stderr:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "etl",
                "run",
                str(pipeline),
                "--dry-run",
                "--output",
                str(output),
                "--report-json",
                str(report_file),
                "--processes",
                str(processes),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "TERM": "dumb"},
        )
        peak_mb = _peak_rss_mb(child, every)
    elapsed = time.monotonic() - started
    if child.returncode not in (0, 1):
        print(errors.read_text())
        raise SystemExit(f"dry run failed with exit {child.returncode}")
    return elapsed, peak_mb, json.loads(report_file.read_text())


def speed() -> None:
    """In the run's process, then in as many preparing processes as there are CPUs."""
    output = realistic.DATA / "dry_run.jsonl"
    for processes in sorted({1, len(os.sched_getaffinity(0))}):
        elapsed, peak_mb, report = _run(ROWS, output, processes, every=0.2)
        lines = sum(1 for _ in output.open("rb"))
        verdict = "met" if ROWS / elapsed >= TARGET_ROWS_S else "MISSED"
        print(
            f"dry run --processes {processes}: {ROWS:,} rows -> {lines:,} bodies, "
            f"{report['rejected']:,} rejected, in {elapsed:.1f}s = {ROWS / elapsed:,.0f} rows/s "
            f"end to end (process start included; target >= {TARGET_ROWS_S:,}: {verdict}); "
            f"peak memory {peak_mb:,.0f} MB"
        )
        print(
            f"  inside the run: {report['duration_s']:.1f}s = "
            f"{ROWS / report['duration_s']:,.0f} rows/s; reading (and waiting for the "
            f"preparing processes) {report['read_s']:.1f}s, validating + transforming "
            f"{report['prepare_s']:.1f}s (summed over processes)"
        )


def memory() -> None:
    elapsed, peak_mb, report = _run(MEMORY_ROWS, Path(os.devnull))
    verdict = "met" if peak_mb < TARGET_MB else "MISSED"
    print(
        f"dry run: {MEMORY_ROWS:,} rows in chunks of 50,000 in {elapsed:.1f}s "
        f"({MEMORY_ROWS / elapsed:,.0f} rows/s, {report['rejected']:,} rejected); "
        f"peak memory {peak_mb:,.0f} MB (target < {TARGET_MB}: {verdict})"
    )


def _peak_rss_mb(child: subprocess.Popen[bytes], every: float) -> float:
    """The peak, until the run exits, of the memory of the run's process and its preparing
    processes together: their proportional set sizes (Pss) summed, so the pages a forked
    worker shares with the run count once. Its getrusage peak would count the pages it
    shared with this process between fork and exec: 715 MB instead of 450 MB when `make
    bench` has already held a million rows in this process."""
    peak_kib = 0
    while child.poll() is None:
        peak_kib = max(peak_kib, sum(map(_pss_kib, _tree(child.pid))))
        time.sleep(every)
    return peak_kib / 1024


def _tree(pid: int) -> list[int]:
    """`pid` and its children (the preparing processes)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [pid, *map(int, children)]


def _pss_kib(pid: int) -> int:
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:  # exited between listing and reading
        return 0
    return sum(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))


def main(parts: list[str] | None = None) -> None:
    for part in parts or ["speed", "memory"]:
        {"speed": speed, "memory": memory}[part]()


if __name__ == "__main__":
    main(sys.argv[1:])
