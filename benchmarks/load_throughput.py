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
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import orjson

from etl.definition import Destination
from etl.events import Event, Outcome
from etl.load import Loader, LoadStats
from etl.sandbox.app import SandboxConfig
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
    return Destination(
        store_id=STORE, token=server.token, base_url=server.base_url, **fields
    )


async def deliver(
    dest: Destination, batch: list[Event], seconds: float | None = None
) -> tuple[Counter[str], LoadStats, float]:
    """Deliver `batch` (stopping after `seconds` if given): outcomes by status, stats, wall time."""
    statuses: Counter[str] = Counter()
    cpu = time.process_time()

    async def source() -> AsyncIterator[Event]:
        for event in batch:
            yield event

    async def on_outcome(outcome: Outcome) -> None:
        statuses[outcome.status.value] += 1

    started = time.monotonic()
    async with Loader(dest) as loader:
        try:
            await asyncio.wait_for(loader.deliver(source(), on_outcome), seconds)
        except TimeoutError:
            pass
    elapsed = time.monotonic() - started
    print(f"  (the loader used {(time.process_time() - cpu) / elapsed:.2f} of a core)", flush=True)
    return statuses, loader.stats, elapsed


def main() -> None:
    """One line: events/s from the sandbox's count, against the target."""
    batch = events(EVENTS)
    with start_sandbox(SandboxConfig(rate_limit=None)) as server:
        dest = destination(server, rate_limit=1e6, concurrency=64)
        statuses, stats, elapsed = asyncio.run(deliver(dest, batch))
        held = server.stats(STORE)["count"]
    rate = held / elapsed
    verdict = "meets" if rate >= TARGET else "BELOW"
    print(
        f"{held:,} of {EVENTS:,} events stored in {elapsed:.1f}s = {rate:,.0f} events/s "
        f"({verdict} the {TARGET:,}/s target); outcomes {dict(statuses)}; "
        f"requests {stats.requests:,}, statuses {stats.status_counts}",
        flush=True,
    )


if __name__ == "__main__":
    main()
