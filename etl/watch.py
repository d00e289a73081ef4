"""Following a run from outside the process: metrics server and state heartbeat (SPEC §12).

While a real run lasts, its row in the runs table holds a snapshot of its counters,
rewritten every `HEARTBEAT_S` seconds, with `running: true`, the time of the snapshot,
the source's size when known and the ETA. `etl status` and `etl report --html` read
it; the end of the run overwrites it with the final summary. A snapshot that stopped
being refreshed means the process is gone (killed, rebooted) and says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from etl.load.loader import LoadStats
    from etl.report import ProgressDisplay
    from etl.state import StateStore

#: Seconds between two snapshots of a running run in the state store.
HEARTBEAT_S = 2.0
#: A snapshot older than this many heartbeats belongs to a process that is gone.
STALE_AFTER = 15


def snapshot(display: ProgressDisplay) -> dict[str, Any]:
    """The running run's summary as `etl status` and the HTML report read it."""
    eta = display.eta()
    return {
        **display.report.to_dict(),
        "running": True,
        "progress_at": datetime.now(UTC).isoformat(),
        "total_rows": display.total_rows(),
        "rate_per_s": eta.rate_per_s,
        "eta_s": eta.seconds,
        "eta_whole_source": eta.whole_source,
    }


def write_snapshot(state: StateStore, run_id: int, display: ProgressDisplay) -> None:
    """Rewrite the run's summary while the run has not ended (never over the final one)."""
    import json

    from etl.state.schema import runs

    with state.engine.begin() as connection:
        connection.execute(
            runs.update()
            .where(runs.c.id == run_id, runs.c.ended_at.is_(None))
            .values(summary=json.dumps(snapshot(display), default=str))
        )


async def _heartbeat(state: StateStore, run_id: int, display: ProgressDisplay) -> None:
    while True:
        await asyncio.to_thread(write_snapshot, state, run_id, display)
        await asyncio.sleep(HEARTBEAT_S)


@asynccontextmanager
async def watching(
    display: ProgressDisplay,
    stats: LoadStats | None,
    *,
    state: StateStore | None,
    run_id: int | None,
    metrics_port: int | None,
    metrics_host: str,
) -> AsyncIterator[None]:
    """Serve metrics and keep the state's snapshot fresh for the duration of the block."""
    async with AsyncExitStack() as stack:
        if metrics_port is not None:
            from etl.metrics import MetricsServer, RunCollector

            stack.enter_context(
                MetricsServer(RunCollector(display, stats, time.time()), metrics_port, metrics_host)
            )
        if state is not None and run_id is not None:
            task = asyncio.create_task(_heartbeat(state, run_id, display))
            stack.callback(task.cancel)
        yield


def running_line(summary: dict[str, Any], now: datetime | None = None) -> str | None:
    """`etl status`'s line about a run that has not ended, or None for a finished one."""
    if not summary.get("running"):
        return None
    at = datetime.fromisoformat(summary["progress_at"])
    age = (now or datetime.now(UTC)) - at
    if age > timedelta(seconds=HEARTBEAT_S * STALE_AFTER):
        return (
            f"run {summary.get('run_id')}: no progress since {at:%Y-%m-%d %H:%M:%S} UTC "
            "(the process is gone: killed or rebooted); rerun to resume"
        )
    total = summary.get("total_rows")
    read = f"{summary.get('extracted', 0):,}" + (f" of {total:,}" if total is not None else "")
    eta_s = summary.get("eta_s")
    scope = "whole source" if summary.get("eta_whole_source") else "what is read so far"
    eta = "unknown yet" if eta_s is None else f"{format_duration(eta_s)} ({scope})"
    return (
        f"run {summary.get('run_id')} running: read {read}, delivered "
        f"{summary.get('delivered', 0):,}, {summary.get('rate_per_s', 0):,.1f}/s, ETA {eta}"
    )


def format_duration(seconds: float) -> str:
    """`3d 4h`, `2h 05m`, `4m 10s`, `12s`: the precision a person plans with."""
    whole = round(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
