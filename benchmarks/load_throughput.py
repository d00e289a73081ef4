"""Unthrottled loading: how many events a second the loader gets into the sandbox.

Target: >= 2,500 delivered events/s end to end on a 2-core machine. 20,000 events,
the sandbox's rate limit off, `concurrency` 64 and `rate_limit` 1e6 (the limiter
still hands out every slot). The sandbox runs in its own process (one core), the
loader in this one (the other core). The figure counts what the sandbox holds
afterwards, not what the loader claims. The other load benchmarks reuse `events`
and `deliver` from here.

    python -m benchmarks load_throughput
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import orjson

from etl.definition import Destination
from etl.events import Event, Outcome
from etl.load import Loader, LoadStats
from etl.sandbox.config import SandboxConfig
from etl.sandbox.process import SandboxProcess, start_sandbox

STORE = "bench-load"
EVENTS = 20_000
TARGET = 2_500


def events(count: int) -> list[Event]:
    """`count` valid events with distinct ids, built before the clock starts."""
    made = []
    for n in range(count):
        body = orjson.dumps(
            {
                "source": "shopify_backfill",
                "event_name": "order_shipped",
                "occurred_at": "2024-03-01T12:30:00Z",
                "id": f"bench-{n}",
                "customer": {"external_id": f"c-{n % 997}", "email": "ann@example.com"},
                "properties": {"order_id": f"o-{n}", "total": 12.5},
            }
        )
        made.append(Event(id=f"bench-{n}", body=body, payload_hash=str(n)))
    return made


def destination(server: SandboxProcess, **fields: Any) -> Destination:
    """The sandbox's store as a pipeline destination."""
    return Destination(store_id=STORE, token=server.token, base_url=server.base_url, **fields)


async def deliver(
    dest: Destination, batch: list[Event], seconds: float | None = None
) -> tuple[Counter[str], LoadStats, float]:
    """Deliver `batch` (stopping after `seconds` if given): outcomes by status, stats, wall time."""
    statuses: Counter[str] = Counter()

    async def source() -> AsyncIterator[Event]:
        for event in batch:
            yield event

    async def on_outcome(outcome: Outcome) -> None:
        statuses[outcome.status.value] += 1

    started = time.monotonic()
    async with Loader(dest) as loader:
        with suppress(TimeoutError):  # the clock ends the run
            await asyncio.wait_for(loader.deliver(source(), on_outcome), seconds)
    return statuses, loader.stats, time.monotonic() - started


def _busy_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat."""
    ticks = [int(field) for field in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # idle and iowait are not busy


def _process_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def main() -> None:
    """Two lines: events/s from the sandbox's count against the target, and who used the CPU.

    The machine is shared (2 cores), so the second line says how much of it the loader,
    the sandbox and everything else used meanwhile: a low figure with a busy "else"
    is contention, not the loader.
    """
    batch = events(EVENTS)
    with start_sandbox(SandboxConfig(rate_limit=None)) as server:
        dest = destination(server, rate_limit=1e6, concurrency=64)
        machine, sandbox, loader = _busy_ticks(), _process_ticks(server.pid), time.process_time()
        statuses, stats, elapsed = asyncio.run(deliver(dest, batch))
        loader = time.process_time() - loader
        sandbox = (_process_ticks(server.pid) - sandbox) / os.sysconf("SC_CLK_TCK")
        busy, total = (now - then for now, then in zip(_busy_ticks(), machine, strict=True))
        held = server.stats(STORE)["count"]
    rate = held / elapsed
    verdict = "meets" if rate >= TARGET else "BELOW"
    print(
        f"{held:,} of {EVENTS:,} events stored in {elapsed:.1f}s = {rate:,.0f} events/s "
        f"({verdict} the {TARGET:,}/s target); outcomes {dict(statuses)}; "
        f"requests {stats.requests:,}, statuses {stats.status_counts}",
        flush=True,
    )
    cores = os.cpu_count() or 1
    used = busy / total * cores * elapsed if total else 0.0
    print(
        f"CPU meanwhile, in cores: loader {loader / elapsed:.2f}, sandbox {sandbox / elapsed:.2f}, "
        f"everything else {max(0.0, used - loader - sandbox) / elapsed:.2f} (of {cores})",
        flush=True,
    )


if __name__ == "__main__":
    main()
