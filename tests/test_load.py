"""The loader against the real sandbox process: delivery, retries, rejects, auth, abort, shutdown.

Rate limiting and the API's rate-limit headers are in test_load_limits.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from etl import wire
from etl.definition import Destination
from etl.errors import AuthError, TooManyFailures
from etl.events import Event, Outcome, Status
from etl.load import Loader, LoadStats
from etl.load.loader import MAX_CONSECUTIVE_FAILURES
from etl.sandbox.app import create_app
from etl.sandbox.config import SandboxConfig
from etl.sandbox.process import SandboxProcess

STORE = "store-load"


def body(n: int, **overrides: Any) -> dict[str, Any]:
    """A valid wire body (SPEC §4) with id `ev-<n>`."""
    return {
        "source": "shopify_backfill",
        "event_name": "order_shipped",
        "occurred_at": "2024-03-01T12:30:00Z",
        "id": f"ev-{n}",
        "customer": {"external_id": f"c-{n % 7}", "email": "ann@example.com"},
        "properties": {"order_id": f"o-{n}", "total": 12.5 + n},
        **overrides,
    }


def make_events(bodies: list[dict[str, Any]]) -> list[Event]:
    return [
        Event(id=b["id"], body=orjson.dumps(b), payload_hash=str(i)) for i, b in enumerate(bodies)
    ]


class Source:
    """An async event source that records how far it was read and whether it was closed."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.taken = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[Event]:
        try:
            for event in self.events:
                self.taken += 1
                yield event
        finally:
            self.closed = True


def destination(server: SandboxProcess | None = None, **fields: Any) -> Destination:
    defaults: dict[str, Any] = {
        "store_id": STORE,
        "token": server.token if server else "sandbox-token",
        "base_url": server.base_url if server else "http://sandbox",
        "rate_limit": 1000.0,
        "concurrency": 8,
        "timeout": 5.0,
        "max_retries": 3,
    }
    return Destination(**{**defaults, **fields})


def deliver(
    dest: Destination,
    events: list[Event] | Source,
    client: httpx.AsyncClient | None = None,
) -> tuple[list[Outcome], LoadStats]:
    """Run one Loader over `events`; the outcomes in the order on_outcome received them."""
    outcomes: list[Outcome] = []

    async def on_outcome(outcome: Outcome) -> None:
        outcomes.append(outcome)

    async def main() -> LoadStats:
        source = events if isinstance(events, Source) else Source(events)
        async with Loader(dest, client=client) as loader:
            try:
                await loader.deliver(source, on_outcome)
            finally:
                stats = loader.stats
        return stats

    return outcomes, asyncio.run(main())


def by_id(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(bodies, key=lambda b: b["id"])


def test_every_event_is_delivered_once_with_the_exact_body(sandbox: Callable[..., Any]) -> None:
    server = sandbox(rate_limit=None)
    bodies = [body(n) for n in range(300)]
    outcomes, stats = deliver(destination(server), make_events(bodies))

    assert by_id(server.events(STORE)) == by_id(bodies)
    assert server.stats(STORE)["receipts"] == {b["id"]: 1 for b in bodies}
    assert sorted(o.event.id for o in outcomes) == sorted(b["id"] for b in bodies)
    assert {(o.status, o.attempts, o.error) for o in outcomes} == {(Status.DELIVERED, 1, None)}
    assert (stats.requests, stats.retries, stats.http_429, stats.status_counts) == (
        300,
        0,
        0,
        {200: 300},
    )


def test_500s_and_dropped_connections_are_retried_until_every_event_is_stored(
    sandbox: Callable[..., Any],
) -> None:
    server = sandbox(rate_limit=None, fail_rate=0.2, drop_rate=0.05, seed=7)
    bodies = [body(n) for n in range(150)]
    outcomes, stats = deliver(
        destination(server, concurrency=16, max_retries=12), make_events(bodies)
    )

    assert by_id(server.events(STORE)) == by_id(bodies)
    assert Counter(o.status for o in outcomes) == {Status.DELIVERED: 150}
    seen = server.stats(STORE)["status_counts"]
    assert stats.retries == seen["500"] + seen["dropped"] > 0
    assert stats.status_counts == {200: 150, 500: seen["500"], "connection": seen["dropped"]}
    assert sum(o.attempts for o in outcomes) == stats.requests == server.stats(STORE)["requests"]


def test_a_400_is_a_reject_with_the_apis_field_and_message(sandbox: Callable[..., Any]) -> None:
    server = sandbox(rate_limit=None)
    bad = body(1, event_name="Order Shipped")
    outcomes, stats = deliver(destination(server), make_events([body(0), bad]))

    rejected = [o for o in outcomes if o.status is Status.REJECTED]
    assert [(o.event.id, o.attempts) for o in rejected] == [("ev-1", 1)]
    assert rejected[0].error == (
        "event_name: event_name must be a non-empty snake_case string of at most 255 characters"
    )
    assert server.events(STORE) == [body(0)]
    assert stats.status_counts == {200: 1, 400: 1}


def test_a_wrong_token_without_a_secret_aborts_after_a_handful_of_requests(
    sandbox: Callable[..., Any],
) -> None:
    server = sandbox(rate_limit=None)
    source = Source(make_events([body(n) for n in range(500)]))
    with pytest.raises(AuthError, match="refused the token") as raised:
        deliver(destination(server, token="not-the-token"), source)

    assert "not-the-token" not in str(raised.value)
    assert server.stats(STORE)["requests"] <= 8 + 2
    assert server.events(STORE) == []
    assert source.taken <= 8 + 2 and source.closed


def test_a_wrong_token_with_the_secret_is_renewed_once_for_every_worker(
    sandbox: Callable[..., Any],
) -> None:
    server = sandbox(rate_limit=None)
    bodies = [body(n) for n in range(100)]
    outcomes, stats = deliver(
        destination(server, token="expired", secret=server.secret), make_events(bodies)
    )

    assert by_id(server.events(STORE)) == by_id(bodies)
    assert Counter(o.status for o in outcomes) == {Status.DELIVERED: 100}
    assert stats.token_refreshes == 1
    assert 1 <= stats.status_counts[401] <= 8  # at most the requests in flight with the old one


def test_a_secret_alone_generates_the_token_before_the_first_event(
    sandbox: Callable[..., Any],
) -> None:
    server = sandbox(rate_limit=None)
    outcomes, stats = deliver(
        destination(server, token=None, secret=server.secret), make_events([body(0)])
    )
    assert [(o.status, o.attempts) for o in outcomes] == [(Status.DELIVERED, 1)]
    assert (stats.token_refreshes, stats.status_counts) == (1, {200: 1})


def test_a_secret_the_api_refuses_aborts_without_showing_it(sandbox: Callable[..., Any]) -> None:
    server = sandbox(rate_limit=None)
    with pytest.raises(AuthError, match="refused the secret") as raised:
        deliver(
            destination(server, token="expired", secret="not-the-secret"),
            make_events([body(n) for n in range(50)]),
        )
    assert "not-the-secret" not in str(raised.value)
    assert server.stats(STORE)["requests"] <= 8 + 2


def test_fifty_failures_in_a_row_abort_the_run(sandbox: Callable[..., Any]) -> None:
    server = sandbox(rate_limit=None, fail_rate=1.0)
    source = Source(make_events([body(n) for n in range(200)]))
    with pytest.raises(TooManyFailures, match="injected failure"):
        deliver(destination(server, concurrency=1, max_retries=0), source)
    assert server.stats(STORE)["requests"] == MAX_CONSECUTIVE_FAILURES
    assert source.taken == MAX_CONSECUTIVE_FAILURES and source.closed


def test_cancelling_abandons_requests_in_flight_and_reports_each_outcome_once(
    sandbox: Callable[..., Any],
) -> None:
    server = sandbox(rate_limit=None, latency_ms=40, latency_jitter_ms=30, seed=1)
    source = Source(make_events([body(n) for n in range(2000)]))
    outcomes: list[Outcome] = []

    async def main() -> None:
        enough = asyncio.Event()

        async def on_outcome(outcome: Outcome) -> None:
            outcomes.append(outcome)
            if len(outcomes) >= 60:
                enough.set()

        async with Loader(destination(server), client=None) as loader:
            task = asyncio.create_task(loader.deliver(source, on_outcome))
            await enough.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    reported = [o.event.id for o in outcomes]
    stored = {b["id"] for b in server.events(STORE)}
    assert len(reported) == len(set(reported)) >= 60
    assert set(reported) <= stored
    assert len(stored) - 8 <= len(reported) <= len(stored)
    assert source.closed and source.taken < 2000


def test_in_process_the_given_client_is_used_and_left_open() -> None:
    app = create_app(SandboxConfig(rate_limit=None))
    bodies = [body(n) for n in range(20)]

    async def main() -> tuple[list[Outcome], bool]:
        outcomes: list[Outcome] = []

        async def on_outcome(outcome: Outcome) -> None:
            outcomes.append(outcome)

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport) as client:
            async with Loader(destination(), client=client) as loader:
                await loader.deliver(Source(make_events(bodies)), on_outcome)
            return outcomes, client.is_closed

    outcomes, closed = asyncio.run(main())
    assert Counter(o.status for o in outcomes) == {Status.DELIVERED: 20}
    assert not closed
    assert by_id(app.sandbox.events.events(STORE)) == by_id(bodies)  # type: ignore[attr-defined]


def test_an_answer_slower_than_the_timeout_is_retried(sandbox: Callable[..., Any]) -> None:
    server = sandbox(rate_limit=None, slow_rate=0.3, slow_ms=3000, seed=2)
    bodies = [body(n) for n in range(30)]
    outcomes, stats = deliver(destination(server, timeout=0.5, max_retries=10), make_events(bodies))

    assert Counter(o.status for o in outcomes) == {Status.DELIVERED: 30}
    assert by_id(server.events(STORE)) == by_id(bodies)
    assert stats.status_counts["timeout"] == stats.retries > 0
    assert stats.status_counts[200] == 30


def test_a_freshly_generated_token_that_is_refused_too_aborts_the_run(
    serve: Callable[[Starlette], str],
) -> None:
    calls: Counter[str] = Counter()

    async def refuse(request: Request) -> Response:
        calls["events"] += 1
        return Response(b'{"error": {"message": "invalid token"}}', 401)

    async def issue(request: Request) -> Response:
        calls["tokens"] += 1
        return Response(b'{"access_token": "issued-but-useless"}', 200)

    app = Starlette(
        routes=[
            Route(wire.DEFAULT_PATH, refuse, methods=["POST"]),
            Route(wire.ACCESS_TOKEN_PATH, issue, methods=["POST"]),
        ]
    )
    dest = destination(base_url=serve(app), token="old", secret="the-secret")
    with pytest.raises(AuthError, match=r"token just generated .* \(HTTP 401\)") as raised:
        deliver(dest, make_events([body(n) for n in range(100)]))

    assert "issued-but-useless" not in str(raised.value) and "the-secret" not in str(raised.value)
    assert calls["tokens"] == 1
    assert calls["events"] <= 2 * 8 + 2  # the old token's requests in flight, then the new one's
