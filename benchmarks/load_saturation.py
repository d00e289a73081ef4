"""Saturation: does the loader use the whole rate limit without provoking 429s?

Target: >= 0.98 of the sandbox's 5 requests/s, with <= 0.5 % of answers 429, for
60 s at 150 +/- 100 ms of added latency and again at 600 +/- 400 ms (a realistic
internet round trip, where a one-at-a-time client reaches about a quarter of the
limit). The loader is configured at the same 5/s with the default concurrency.
The achieved rate comes from the sandbox's arrival times: accepted requests over
the span from the first arrival to the last. Takes about 2.5 minutes.

    python -m benchmarks load_saturation
"""

from __future__ import annotations

import asyncio

from benchmarks.load_throughput import STORE, deliver, destination, events
from etl.sandbox.config import SandboxConfig
from etl.sandbox.process import start_sandbox

LIMIT = 5.0
SECONDS = 60.0
TARGET_SHARE = 0.98
TARGET_429 = 0.005


def _run(latency_ms: float, jitter_ms: float) -> None:
    config = SandboxConfig(
        rate_limit=LIMIT, latency_ms=latency_ms, latency_jitter_ms=jitter_ms, seed=11
    )
    with start_sandbox(config) as server:
        dest = destination(server, rate_limit=LIMIT)
        batch = events(int(LIMIT * SECONDS * 2))  # more than fits: the clock ends the run
        _, stats, _ = asyncio.run(deliver(dest, batch, seconds=SECONDS))
        seen = server.stats(STORE)
    times = seen["request_times"]
    accepted = seen["status_counts"].get("200", 0)
    share = (accepted - 1) / (times[-1] - times[0]) / LIMIT
    throttled = seen["status_counts"].get("429", 0) / seen["requests"]
    verdict = "meets" if share >= TARGET_SHARE and throttled <= TARGET_429 else "MISSES"
    print(
        f"latency {latency_ms:.0f}+/-{jitter_ms:.0f} ms: {accepted} accepted in "
        f"{times[-1] - times[0]:.1f}s = {share:.3f} of the limit, {throttled:.2%} 429s "
        f"({verdict} the >= {TARGET_SHARE} and <= {TARGET_429:.1%} targets); "
        f"limiter wait {stats.limiter_wait_s:.1f}s, 429 pauses {stats.pause_429_s:.1f}s",
        flush=True,
    )


def main() -> None:
    """Two runs, one line each."""
    _run(150, 100)
    _run(600, 400)


if __name__ == "__main__":
    main()
