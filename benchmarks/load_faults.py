"""A flaky API, unthrottled: 2,000 events with 10 % 500s and 3 % dropped connections.

Target: every event stored (counted from the sandbox's read-back); the wall time
is the figure (a one-at-a-time client needs about 3 minutes here, because each
retry waits out its back-off while nothing else is sent).

    python -m benchmarks load_faults
"""

from __future__ import annotations

import asyncio

from benchmarks.load_throughput import STORE, deliver, destination, events
from etl.sandbox.config import SandboxConfig
from etl.sandbox.process import start_sandbox

EVENTS = 2_000


def main() -> None:
    """One line: stored / sent, wall time, retries."""
    config = SandboxConfig(rate_limit=None, fail_rate=0.10, drop_rate=0.03, seed=5)
    with start_sandbox(config) as server:
        dest = destination(server, rate_limit=1e6, concurrency=64, max_retries=10)
        statuses, stats, elapsed = asyncio.run(deliver(dest, events(EVENTS)))
        held = server.stats(STORE)["count"]
    verdict = "meets" if held == EVENTS else "MISSES"
    print(
        f"{held:,} of {EVENTS:,} events stored ({verdict} the all-stored target) in "
        f"{elapsed:.1f}s; outcomes {dict(statuses)}; {stats.requests:,} requests, "
        f"{stats.retries:,} retries, statuses {stats.status_counts}",
        flush=True,
    )


if __name__ == "__main__":
    main()
