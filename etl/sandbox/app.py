"""The sandbox: an ASGI app that behaves like the custom-event endpoint (SPEC §8).

Users point a pipeline at it before their real store; tests and benchmarks use
it as the destination. Every `POST {path}` goes through these steps, in order,
and the first that answers wins:

    1. auth          401 when X-Yotpo-Token is missing or not an accepted token
    2. rate limit    429 when the store's token bucket is empty (no token taken by a 401)
    3. faults        one seeded draw: drop the connection | 500 | answer slowly (then go on)
    4. body          400 naming the wire field that breaks SPEC §4/§5
    5. upsert        200 {"id": ...}; the last body sent for an id wins

Auth comes first so a wrong token never spends the store's budget; faults come
before the body so a failure run is reproducible whatever the bodies are.

When a rate limit is set, every answer of the endpoint carries `RateLimit-Limit`
(the bucket size), `RateLimit-Remaining` (whole tokens left) and `RateLimit-Reset`
(whole seconds, rounded up, until a request would pass when none remain, else
until the bucket is full again); a 429 adds `Retry-After` with the same seconds.
With the limit off the three headers are left out: there is no budget to report.

`/_sandbox/...` reads back what arrived (events, per-store stats), resets, and
answers a health check; those routes take no token and no latency.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from etl import wire
from etl.sandbox.config import SandboxConfig
from etl.sandbox.rules import check_event
from etl.sandbox.store import EventStore, open_store

#: Scope key under which the app leaves a callable that aborts the client's TCP connection.
ABORT_KEY = "sandbox.abort"


class TokenBucket:
    """A per-store bucket of `capacity` tokens refilled at `rate` per second (monotonic clock)."""

    def __init__(self, rate: float, capacity: int, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = float(capacity)
        self.stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False means answer 429."""
        self.refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def refill(self, now: float) -> None:
        """Add the tokens earned since the last call."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def reset_seconds(self) -> int:
        """Whole seconds until a request passes (none left: at least 1), else until full."""
        if self.tokens < 1:
            return max(1, math.ceil((1 - self.tokens) / self.rate))
        return math.ceil((self.capacity - self.tokens) / self.rate)

    def headers(self) -> dict[str, str]:
        """The RateLimit-* headers describing the bucket now."""
        return {
            "RateLimit-Limit": str(self.capacity),
            "RateLimit-Remaining": str(int(self.tokens)),
            "RateLimit-Reset": str(self.reset_seconds()),
        }


@dataclass
class StoreStats:
    """What one store's endpoint saw since the start or the last reset."""

    requests: int = 0
    status_counts: Counter[str] = field(default_factory=Counter)
    receipts: Counter[str] = field(default_factory=Counter)
    request_times: array[float] = field(default_factory=lambda: array("d"))  # 8 bytes a request

    def as_json(self, count: int) -> dict[str, Any]:
        """The /stats answer."""
        return {
            "count": count,
            "receipts": dict(self.receipts),
            "status_counts": dict(self.status_counts),
            "requests": self.requests,
            "request_times": self.request_times.tolist(),
        }


class Sandbox:
    """The mutable state behind the routes: events, stats, buckets, issued tokens, fault draws."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.events: EventStore = open_store(config.db)
        self.tokens = {config.token}
        self.restart()

    def reset(self) -> None:
        """Forget events, stats and buckets; restart the seeded draws (issued tokens stay valid)."""
        self.events.clear()
        self.restart()

    def restart(self) -> None:
        """Start counting afresh: empty stats and buckets, seeded draws from the start."""
        self.stats: dict[str, StoreStats] = {}
        self.buckets: dict[str, TokenBucket] = {}
        self.faults = random.Random(self.config.seed)
        self.jitter = random.Random(
            None if self.config.seed is None else f"{self.config.seed}:latency"
        )

    def delay(self) -> float:
        """Seconds to wait before any answer of the API endpoints."""
        config = self.config
        if not config.latency_jitter_ms:
            return config.latency_ms / 1000
        spread = self.jitter.uniform(-config.latency_jitter_ms, config.latency_jitter_ms)
        return max(0.0, config.latency_ms + spread) / 1000

    def bucket(self, store_id: str, now: float) -> TokenBucket | None:
        """The store's bucket, created full on first use; None when the limit is off."""
        rate = self.config.rate_limit
        if rate is None:
            return None
        bucket = self.buckets.get(store_id)
        if bucket is None:
            bucket = self.buckets[store_id] = TokenBucket(rate, self.config.capacity, now)
        return bucket

    def fault(self) -> str | None:
        """One seeded draw: "drop", "fail", "slow" or None."""
        config = self.config
        if not (config.drop_rate or config.fail_rate or config.slow_rate):
            return None
        draw = self.faults.random()
        for name, rate in (
            ("drop", config.drop_rate),
            ("fail", config.fail_rate),
            ("slow", config.slow_rate),
        ):
            if draw < rate:
                return name
            draw -= rate
        return None


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


def _error(
    status: int, message: str, headers: dict[str, str] | None = None, field: str | None = None
) -> Response:
    error: dict[str, str] = (
        {"message": message} if field is None else {"field": field, "message": message}
    )
    return _json(status, {"error": error}, headers)


class DropConnection(Response):
    """Not an answer: closes the client's TCP connection before a single byte is sent."""

    def __init__(self) -> None:
        super().__init__(status_code=599)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        abort: Callable[[], None] | None = scope.get(ABORT_KEY)
        if abort is None:
            # In process (httpx.ASGITransport) there is no socket to close: raise what an
            # httpx client sees on the wire, so a loader's retry path is the same.
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        abort()
        # Wait for the server to notice, so it does not try to answer on a closed socket.
        while (await receive())["type"] != "http.disconnect":
            pass


class SandboxApp(Starlette):
    """A Starlette app that lets routes abort the TCP connection under uvicorn."""

    sandbox: Sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # uvicorn's send is a bound method of the request cycle, which holds the transport;
        # other servers (or httpx.ASGITransport) get no hook, and a drop raises instead.
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if transport is not None and scope["type"] == "http":
            scope[ABORT_KEY] = transport.abort
        await super().__call__(scope, receive, send)


def create_app(config: SandboxConfig) -> Starlette:
    """The sandbox as an ASGI app; serve it with `etl.sandbox.server.serve` or any ASGI server.

    Example (in-process, no sockets):

        app = create_app(SandboxConfig(rate_limit=None))
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url="http://sandbox")
    """
    sandbox = Sandbox(config)

    async def custom_event(request: Request) -> Response:
        now = time.monotonic()
        store_id = request.path_params["store_id"]
        stats = sandbox.stats.get(store_id)
        if stats is None:
            stats = sandbox.stats[store_id] = StoreStats()
        stats.requests += 1
        stats.request_times.append(now)
        response = await _answer(request, store_id, stats, now)
        stats.status_counts[
            "dropped" if isinstance(response, DropConnection) else str(response.status_code)
        ] += 1
        return response

    async def _answer(request: Request, store_id: str, stats: StoreStats, now: float) -> Response:
        delay = sandbox.delay()
        bucket = sandbox.bucket(store_id, now)
        limits: dict[str, str] = {}
        if request.headers.get(wire.TOKEN_HEADER) not in sandbox.tokens:
            if bucket is not None:
                bucket.refill(now)
                limits = bucket.headers()
            return await _after(
                delay, _error(401, f"missing or invalid {wire.TOKEN_HEADER} header", limits)
            )
        if bucket is not None:
            allowed = bucket.take(now)
            limits = bucket.headers()
            if not allowed:
                limits["Retry-After"] = limits["RateLimit-Reset"]
                return await _after(
                    delay, _error(429, "rate limit exceeded for this store", limits)
                )
        fault = sandbox.fault()
        if fault == "drop":
            return await _after(delay, DropConnection())
        if fault == "fail":
            return await _after(delay, _error(500, "injected failure", limits))
        if fault == "slow":
            delay += config.slow_ms / 1000
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return await _after(
                delay, _error(400, "the body is not valid JSON", limits, field="body")
            )
        problem = check_event(body)
        if problem is not None:
            return await _after(delay, _error(400, problem[1], limits, field=problem[0]))
        event_id = body[wire.ID]
        sandbox.events.upsert(store_id, event_id, body)
        stats.receipts[event_id] += 1
        return await _after(delay, _json(200, {"id": event_id}, limits))

    async def access_token(request: Request) -> Response:
        delay = sandbox.delay()
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        secret = body.get("secret") if isinstance(body, dict) else None
        if not isinstance(secret, str):
            return await _after(
                delay, _error(400, 'the body must be {"secret": "<api secret>"}', field="secret")
            )
        if not secrets.compare_digest(secret.encode(), config.secret.encode()):
            return await _after(delay, _error(401, "invalid API secret"))
        token = secrets.token_urlsafe(24)
        sandbox.tokens.add(token)
        return await _after(delay, _json(200, {"access_token": token}))

    async def events(request: Request) -> Response:
        held = sandbox.events.events(request.path_params["store_id"])
        return _json(200, {"count": len(held), "events": held})

    async def stats(request: Request) -> Response:
        store_id = request.path_params["store_id"]
        seen = sandbox.stats.get(store_id, StoreStats())
        return _json(200, seen.as_json(sandbox.events.count(store_id)))

    async def reset(request: Request) -> Response:
        sandbox.reset()
        return Response(status_code=204)

    async def health(request: Request) -> Response:
        return _json(200, {"ok": True})

    app = SandboxApp(
        routes=[
            Route(config.path, custom_event, methods=["POST"]),
            Route(wire.ACCESS_TOKEN_PATH, access_token, methods=["POST"]),
            Route("/_sandbox/stores/{store_id}/events", events, methods=["GET"]),
            Route("/_sandbox/stores/{store_id}/stats", stats, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/_sandbox/health", health, methods=["GET"]),
        ]
    )
    app.sandbox = sandbox
    return app


async def _after(delay: float, response: Response) -> Response:
    """`response`, once the configured latency has passed."""
    if delay > 0:
        await asyncio.sleep(delay)
    return response
