"""How many events a second the sandbox takes on loopback, with the rate limit off.

Target: >= 3,000 requests/s on a 2-core machine, so the sandbox never bottlenecks
the loader in end-to-end tests and load benchmarks. The sandbox runs as its own
process (`start_sandbox`, as the tests use it); the load comes from this process:
64 keep-alive connections, each posting valid events with fresh ids one after the
other for 10 s. The client is a minimal HTTP/1.1 writer/reader on asyncio streams
rather than httpx, so the figure measures the server, not the client (httpx alone
tops out near the target on one core). Two runs: the memory store and a `--db`
SQLite file.

    python -m benchmarks.sandbox_load
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from etl import wire
from etl.sandbox.config import SandboxConfig
from etl.sandbox.process import start_sandbox

DURATION = 10.0
CONNECTIONS = 64
STORE = "bench-store"
TARGET = 3_000


def _request(path: str, token: str, host: str, n: int) -> bytes:
    body = (
        b'{"source":"shopify_backfill","event_name":"order_shipped",'
        b'"occurred_at":"2024-03-01T12:30:00Z",'
        b'"id":"bench-%d","customer":{"external_id":"c-%d","email":"ann@example.com"},'
        b'"properties":{"order_id":"o-%d","total":12.5,"gift":false}}' % (n, n, n)
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"{wire.TOKEN_HEADER}: {token}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _connection(
    base_url: str, token: str, first: int, deadline: float, statuses: Counter[str]
) -> None:
    """One keep-alive connection posting events back to back until the deadline."""
    url = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    path = wire.DEFAULT_PATH.format(store_id=STORE)
    n = first
    while time.monotonic() < deadline:
        writer.write(_request(path, token, url.netloc, n))
        status = (await reader.readline()).split()[1].decode()
        length = 0
        while (line := await reader.readline()) != b"\r\n":
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        statuses[status] += 1
        n += CONNECTIONS
    writer.close()
    await writer.wait_closed()


async def _load(base_url: str, token: str) -> tuple[Counter[str], float]:
    statuses: Counter[str] = Counter()
    started = time.monotonic()
    deadline = started + DURATION
    await asyncio.gather(
        *(_connection(base_url, token, i, deadline, statuses) for i in range(CONNECTIONS))
    )
    return statuses, time.monotonic() - started


def _run(label: str, config: SandboxConfig) -> None:
    with start_sandbox(config) as server:
        statuses, elapsed = asyncio.run(_load(server.base_url, server.token))
        held = server.stats(STORE)["count"]
    total = sum(statuses.values())
    rate = total / elapsed
    verdict = "meets" if rate >= TARGET else "BELOW"
    print(
        f"{label:<14} {total:>7,} requests in {elapsed:4.1f}s = {rate:>6,.0f} requests/s "
        f"({verdict} the {TARGET:,}/s target); statuses {dict(statuses)}; events held {held:,}",
        flush=True,
    )


def main() -> None:
    """Both runs, one line each."""
    _run("memory store", SandboxConfig(rate_limit=None))
    with tempfile.TemporaryDirectory() as folder:
        _run("sqlite --db", SandboxConfig(rate_limit=None, db=Path(folder) / "sandbox.db"))


if __name__ == "__main__":
    main()
