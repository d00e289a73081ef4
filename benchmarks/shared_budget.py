"""One store's budget shared by N worker processes (SPEC §11, issue 15).

N = 1, 2, 4, 8 processes, each a `Loader` with `concurrency` 8 sending to ONE store
of the sandbox at `rate_limit` 5 through the shared budget (PostgreSQL, then Redis)
for BENCH_DURATION_S seconds (default 60). The figures come from the sandbox's own
arrival times: achieved / limit over the whole span from first to last request,
the 429s, and the most requests any 1 s window held (target: >= 0.98, 0, <= 5).
Then the latency of one budget acquisition (`SharedLimiter.acquire` with no wait to
serve: the round trip to the coordinator plus the hop to a thread), p50 and p99.

    BENCH_DURATION_S=20 python -m benchmarks shared_budget
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from etl.definition import Destination
from etl.events import Event, Outcome
from etl.load import Loader
from etl.load.budgets import SharedLimiter
from etl.load.budgets.postgres import PostgresBudget
from etl.load.budgets.redis_lua import RedisBudget
from etl.sandbox.config import SandboxConfig
from etl.sandbox.process import start_sandbox

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from fleet_helpers import postgres_state  # the tests' set-up, shared
from test_load_limits import max_in_window  # one definition of the window count

from benchmarks.load_throughput import events

REDIS = "redis://127.0.0.1:6379/0"
RATE = 5.0
WORKERS = (1, 2, 4, 8)
START_DELAY_S = 1.0  # after every worker is ready: one common start
ACQUISITIONS = 1000


def _worker(
    index: int,
    base_url: str,
    token: str,
    budget: dict[str, str],
    ready: Any,
    start: Any,
    duration: float,
) -> None:
    destination = Destination(
        store_id="bench-fleet",
        token=token,
        base_url=base_url,
        rate_limit=RATE,
        concurrency=8,
        timeout=10,
        max_retries=2,
        rate_limit_url=budget.get("redis"),
    )
    mine = [
        Event(
            f"w{index}-{e.id}", e.body.replace(b'"bench-', f'"w{index}-'.encode()), e.payload_hash
        )
        for e in events(int(RATE * duration) + 50)
    ]

    async def until_the_end() -> AsyncIterator[Event]:
        for event in mine:
            if time.time() >= start.value + duration:
                return
            yield event

    async def ignore(outcome: Outcome) -> None:
        return None

    async def send() -> None:
        async with Loader(destination, state_url=budget.get("postgres")) as loader:
            await asyncio.to_thread(ready.wait)  # every worker imported and set up...
            while not start.value:  # ...then one common start, set once all are ready
                await asyncio.sleep(0.01)
            await asyncio.sleep(max(0.0, start.value - time.time()))
            await loader.deliver(until_the_end(), ignore)

    asyncio.run(send())


def _sweep(kind: str, budget: dict[str, str], duration: float) -> None:
    for count in WORKERS:
        with start_sandbox(SandboxConfig(rate_limit=RATE)) as server:
            context = multiprocessing.get_context("spawn")
            ready, start = context.Barrier(count + 1), context.Value("d", 0.0)
            processes = [
                context.Process(
                    target=_worker,
                    args=(i, server.base_url, server.token, budget, ready, start, duration),
                )
                for i in range(count)
            ]
            for process in processes:
                process.start()
            ready.wait(120)
            start.value = time.time() + START_DELAY_S
            for process in processes:
                process.join(duration + 60)
            stats = server.stats("bench-fleet")
        times = sorted(stats["request_times"])
        # Achieved over the steady part: from the first request, for duration - 1 s.
        steady = [t for t in times if t < times[0] + duration - 1] if times else []
        achieved = len(steady) / (duration - 1) / RATE
        print(
            f"{kind:8} N={count}: {len(times)} requests, achieved / limit {achieved:.3f} "
            f"(first {duration - 1:.0f} s), 429s {stats['status_counts'].get('429', 0)}, "
            f"max in any 1 s {max_in_window(times)} (limit {RATE:.0f})",
            flush=True,
        )


def _latency(kind: str, limiter: SharedLimiter) -> None:
    async def measure() -> list[float]:
        took = []
        for _ in range(ACQUISITIONS):
            began = time.perf_counter()
            await limiter.acquire()
            took.append((time.perf_counter() - began) * 1000)
        return took

    took = sorted(asyncio.run(measure()))
    limiter.close()
    p50, p99 = statistics.median(took), took[int(len(took) * 0.99) - 1]
    print(
        f"{kind:8} one acquisition: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({ACQUISITIONS} in a row)",
        flush=True,
    )


def main() -> None:
    duration = float(os.environ.get("BENCH_DURATION_S", "60"))
    with postgres_state() as state:
        print(f"{duration:.0f} s per run, rate_limit {RATE:.0f}, concurrency 8 per worker")
        _sweep("postgres", {"postgres": state}, duration)
        _sweep("redis", {"redis": REDIS}, duration)
        key = f"bench-{uuid.uuid4().hex}"
        _latency("postgres", SharedLimiter(1e6, PostgresBudget(state, key)))
        _latency("redis", SharedLimiter(1e6, RedisBudget(REDIS, key)))


if __name__ == "__main__":
    main()
