"""Many stores from one process (SPEC §10): does one `etl run` keep every store at its limit?

The sandbox (its own process) limits each store to `rate` req/s and answers after
150 +/- 100 ms; the source is a CSV sorted by store (the common export, and the worst
order for head-of-line blocking), `rate x seconds` rows per store, so a perfect run
lasts `seconds`. The loader is the real CLI in a subprocess (rate_limit = the store's
limit, concurrency 8 per store, SQLite state). Printed, from the sandbox's own arrival
times: requests, the aggregate rate over the sending window against stores x rate, 429s,
the most requests any store got in any 1 s window; from the loader: its CPU (user+sys)
per wall second and its peak RSS (getrusage of the child).

    python -m benchmarks.many_stores                       # 200 x 5 req/s, then 2,000 x 1
    python -m benchmarks.many_stores --stores 200 --rate 5 --seconds 60
    python -m benchmarks.many_stores --pool                # CPU per request, 8 vs 1,600 conns

`--pool` measures the shared transport alone: one `httpx.AsyncClient` over
`KeepAliveTransport(N)` with N connections opened, posting REQUESTS events with W
concurrent requests to the unthrottled sandbox; the figure is this process's CPU per
request: (8, 8), (1,600, 8) isolates the pool's size, (1,600, 1,600) adds the fan-out.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from etl.load.transport import KeepAliveTransport
from etl.sandbox.config import SandboxConfig
from etl.sandbox.process import start_sandbox

CONCURRENCY = 8
#: Requests of each `--pool` measurement.
REQUESTS = 16_000


def _write_source(folder: Path, stores: int, per_store: int) -> None:
    with (folder / "orders.csv").open("w", newline="") as file:
        out = csv.writer(file)
        out.writerow(["shop_id", "order_id", "customer_id", "shipped_at"])
        for s in range(stores):  # sorted by store
            for i in range(per_store):
                out.writerow([f"shop-{s:04d}", f"o-{s}-{i}", f"c-{i % 97}", "2024-03-01T12:30:00Z"])


def _write_pipeline(
    folder: Path, base_url: str, token: str, stores: int, rate: float, concurrency: int
) -> Path:
    (folder / "stores.yaml").write_text(
        yaml.safe_dump({f"shop-{s:04d}": {"token": token} for s in range(stores)})
    )
    definition = {
        "name": "many_stores_bench",
        "source": {"type": "csv", "path": "orders.csv", "chunk_size": 50_000},
        "event": {
            "source": "bench",
            "event_name": "order_shipped",
            "occurred_at": "shipped_at",
            "id": {"key": ["order_id"]},
            "customer": {"external_id": "customer_id"},
            "properties": {"order_id": "order_id"},
        },
        "destination": {
            "store_id": {"column": "shop_id"},
            "credentials": "stores.yaml",
            "base_url": base_url,
            "rate_limit": rate,
            "concurrency": concurrency,
            "timeout": 30,
            "max_retries": 8,
        },
    }
    file = folder / "pipe.yaml"
    file.write_text(yaml.safe_dump(definition))
    return file


def _max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most arrivals in any `window`-second interval (times sorted)."""
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def measure(
    stores: int, rate: float, seconds: float, concurrency: int = CONCURRENCY
) -> dict[str, float]:
    """One run; returns (and prints) its figures."""
    per_store = int(rate * seconds)
    config = SandboxConfig(rate_limit=rate, latency_ms=150, latency_jitter_ms=100)
    with tempfile.TemporaryDirectory() as name, start_sandbox(config) as server:
        folder = Path(name)
        _write_source(folder, stores, per_store)
        pipeline = _write_pipeline(folder, server.base_url, server.token, stores, rate, concurrency)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "etl",
                "run",
                str(pipeline),
                "--report-json",
                str(folder / "r.json"),
            ],
            check=False,
            capture_output=True,
            text=True,
            cwd=folder,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if result.returncode != 0:
            print(result.stderr[-2000:], file=sys.stderr)
        report = json.loads((folder / "r.json").read_text())
        times: list[float] = []
        worst = throttled = 0
        for s in range(stores):
            stats = server.stats(f"shop-{s:04d}")
            arrivals = sorted(stats["request_times"])
            times += arrivals
            worst = max(worst, _max_in_window(arrivals))
            throttled += stats["status_counts"].get("429", 0)
    times.sort()
    window = times[-1] - times[0] if len(times) > 1 else 0.0
    achieved = (len(times) - 1) / window if window else 0.0
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    figures = {
        "stores": stores,
        "rate": rate,
        "events": stores * per_store,
        "requests": len(times),
        "achieved": achieved,
        "ratio": achieved / (stores * rate),
        "http_429": throttled,
        "max_per_store_1s": worst,
        "cpu_cores": cpu / wall,
        "peak_rss_mb": after.ru_maxrss / 1024,
        "wall_s": wall,
        "exit": result.returncode,
        "delivered": report["delivered"],
    }
    print(
        f"{stores:>5} stores x {rate:g} req/s (concurrency {concurrency}), {seconds:g} s of "
        f"work: {len(times):,} requests, "
        f"{achieved:,.1f} req/s = {figures['ratio']:.3f} of {stores * rate:,.0f}; "
        f"429s {throttled}; max per store in 1 s {worst}; loader CPU {figures['cpu_cores']:.2f} "
        f"cores over {wall:.1f} s wall; peak RSS {figures['peak_rss_mb']:.0f} MB; "
        f"delivered {report['delivered']:,}; exit {result.returncode}",
        flush=True,
    )
    return figures


async def _post_all(base_url: str, token: str, connections: int, workers: int) -> tuple[float, int]:
    """CPU seconds of this process to post REQUESTS events over `connections` connections,
    and how many requests the sandbox dropped (a closed connection, retried by the next)."""
    client = httpx.AsyncClient(transport=KeepAliveTransport(connections, 30.0), timeout=30.0)
    url = f"{base_url}/core/v3/stores/pool/custom_events"
    headers = {"X-Yotpo-Token": token, "content-type": "application/json"}
    counter = iter(range(REQUESTS))
    dropped = 0

    async def worker() -> None:
        nonlocal dropped
        for n in counter:
            body = (
                b'{"source":"bench","event_name":"e","occurred_at":"2024-03-01T12:30:00Z",'
                b'"id":"p-%d","customer":{"external_id":"c"}}' % n
            )
            try:
                response = await client.post(url, content=body, headers=headers)
                response.raise_for_status()
            except httpx.TransportError:
                dropped += 1

    async def warm() -> None:
        with contextlib.suppress(httpx.TransportError):
            await client.get(f"{base_url}/_sandbox/health")

    await asyncio.gather(*(warm() for _ in range(connections)))  # connections opened first
    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(workers)))
    spent = time.process_time() - started
    await client.aclose()
    return spent, dropped


def pool_cost() -> None:
    """The transport's CPU per request with 8 and with 1,600 pooled connections."""
    with start_sandbox(SandboxConfig(rate_limit=None)) as server:
        for connections, workers in ((8, 8), (1600, 8), (1600, 1600)):
            spent, dropped = asyncio.run(
                _post_all(server.base_url, server.token, connections, workers)
            )
            print(
                f"transport: {connections:>5} pooled connections, {workers:>5} concurrent "
                f"requests, {REQUESTS:,} requests: "
                f"{spent / REQUESTS * 1e6:,.0f} us CPU per request ({dropped} dropped by the "
                "sandbox)",
                flush=True,
            )


def main(argv: list[str] | None = None) -> None:
    """The issue's two cases by default; one case with --stores/--rate/--seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--pool", action="store_true")
    args = parser.parse_args(argv if argv is not None else [])
    if args.pool:
        pool_cost()
        return
    if args.stores:
        measure(args.stores, args.rate, args.seconds, args.concurrency)
        return
    measure(200, 5.0, args.seconds)
    measure(2000, 1.0, args.seconds)
    pool_cost()


if __name__ == "__main__":
    main(sys.argv[1:])
