"""`etl report --html` on a 30-day state of 2,000,000 events: the page's size and time.

Builds a SQLite state as a 30-day backfill leaves it: 2M events whose latest outcomes
spread over 720 hours (1% failed, 0.5% refused by the API), 60 runs with their JSON
summaries and rejects in 3 rules; then reads the history and renders the page.
Target: well under 2 MB (small enough to mail).

    python -m benchmarks.report_size
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from etl.history import load_history
from etl.html_report import render
from etl.state import StateStore

EVENTS = 2_000_000
HOURS = 30 * 24
RUNS = 60
PIPELINE = "bench"
START = datetime(2026, 11, 1, tzinfo=UTC).replace(tzinfo=None)


def _rows(n0: int, n1: int) -> list[tuple]:
    rows = []
    for n in range(n0, n1):
        status = "failed" if n % 100 == 0 else "rejected" if n % 200 == 1 else "delivered"
        at = (START + timedelta(seconds=n * HOURS * 3600 // EVENTS)).isoformat(" ")
        rows.append((PIPELINE, f"{n:032x}", "h", status, 1, None, at, at, 1 + n * RUNS // EVENTS))
    return rows


def _build(path: Path) -> None:
    StateStore(f"sqlite:///{path}").close()  # the schema
    connection = sqlite3.connect(path)
    insert = (
        "INSERT INTO etl_events (pipeline, event_id, payload_hash, status, attempts, "
        "last_error, first_at, last_at, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    for start in range(0, EVENTS, 100_000):
        connection.executemany(insert, _rows(start, start + 100_000))
    per_run = EVENTS // RUNS
    for run in range(1, RUNS + 1):
        started = START + timedelta(hours=12 * (run - 1))
        summary = {
            "store": "store-1",
            "extracted": per_run,
            "delivered": per_run - 500,
            "failed": 330,
            "rejected": 170,
            "rejected_by_rule": {"email": 100, "phone_number": 50, "api": 20},
            "limiter_wait_s": 40_000.0,
            "pause_429_s": 12.5,
            "duration_s": 43_000.0,
            "requests_per_s": 4.9,
            "outcome": "completed",
        }
        connection.execute(
            "INSERT INTO etl_runs (pipeline, started_at, ended_at, exit_code, summary) "
            "VALUES (?, ?, ?, 1, ?)",
            (
                PIPELINE,
                started.isoformat(" "),
                (started + timedelta(hours=12)).isoformat(" "),
                json.dumps(summary),
            ),
        )
    connection.commit()
    connection.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.db"
        started = time.perf_counter()
        _build(path)
        print(
            f"built a state of {EVENTS:,} events over {HOURS} hours and {RUNS} runs "
            f"in {time.perf_counter() - started:.1f}s ({path.stat().st_size / 2**20:,.0f} MiB)"
        )
        store = StateStore(f"sqlite:///{path}")
        started = time.perf_counter()
        history = load_history(store, PIPELINE)
        read_s = time.perf_counter() - started
        page = render(history)
        total_s = time.perf_counter() - started
        store.close()
        size = len(page.encode())
        print(
            f"report: {size / 1024:,.0f} KiB ({size / 2**20:.2f} MB, target < 2 MB), "
            f"{len(history.hourly)} hours, {len(history.runs)} runs; "
            f"read {read_s:.1f}s, read + render {total_s:.1f}s"
        )


if __name__ == "__main__":
    main()
