"""N `etl run` processes of ONE leased pipeline on one store (SPEC §11, issue 15).

N = 1, 2, 4, 8 worker processes of one pipeline with `workers: {lease: 30}` on a
PostgreSQL state, sending to ONE store of the sandbox at `rate_limit` 5 (concurrency 8
each); the source holds 5 x BENCH_DURATION_S rows (default 60 s of work). Figures from
the sandbox's own arrival times: achieved / limit over the span from the first to the
last request, 429s, the most requests in any 1 s window, events stored more than once;
and the wall time of the whole fleet (start-up, reading, draining and exit included).

    BENCH_DURATION_S=20 python -m benchmarks workers
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from etl.sandbox.config import SandboxConfig
from etl.sandbox.process import start_sandbox

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from fleet_helpers import STORE, orders_project, postgres_state, spawn_run  # the tests' set-up
from test_load_limits import max_in_window  # one definition of the window count

RATE = 5.0
WORKERS = (1, 2, 4, 8)


def _fleet(count: int, rows: int) -> None:
    with (
        postgres_state() as state,
        start_sandbox(SandboxConfig(rate_limit=RATE)) as server,
        tempfile.TemporaryDirectory() as folder,
    ):
        file = orders_project(
            Path(folder),
            "bench_workers",
            server.base_url,
            server.token,
            rows,
            state,
            rate_limit=RATE,
            concurrency=8,
        )
        definition = yaml.safe_load(file.read_text())
        definition["workers"] = {"lease": 30, "shards": 8}
        file.write_text(yaml.safe_dump(definition))
        began = time.monotonic()
        processes = [spawn_run(file, stderr=subprocess.DEVNULL) for _ in range(count)]
        for process in processes:
            process.communicate(timeout=rows / RATE + 300)
        codes = [process.returncode for process in processes]
        wall = time.monotonic() - began
        stats = server.stats(STORE)
    times = sorted(stats["request_times"])
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    # n requests spaced 1/rate apart take (n - 1) / rate seconds from first to last.
    achieved = (len(times) - 1) / span / RATE if span else 0.0
    twice = sum(n - 1 for n in stats["receipts"].values())
    print(
        f"N={count}: {len(times)} requests, achieved / limit {achieved:.3f}, "
        f"429s {stats['status_counts'].get('429', 0)}, max in any 1 s {max_in_window(times)} "
        f"(limit {RATE:.0f}), stored {stats['count']}/{rows}, sent twice {twice}, "
        f"exit codes {codes}, fleet wall time {wall:.1f} s",
        flush=True,
    )


def main() -> None:
    duration = float(os.environ.get("BENCH_DURATION_S", "60"))
    rows = int(RATE * duration)
    print(f"{rows} events ({duration:.0f} s at {RATE:.0f} req/s), lease 30 s, 8 shards")
    for count in WORKERS:
        _fleet(count, rows)


if __name__ == "__main__":
    main()
