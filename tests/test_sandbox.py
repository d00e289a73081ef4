"""The sandbox (SPEC §8) over real loopback sockets, plus fast in-process rule checks."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from etl import wire
from etl.sandbox.app import TokenBucket, create_app
from etl.sandbox.config import SandboxConfig
from etl.sandbox.process import SandboxStartError, start_sandbox

STORE = "store-1"
EVENTS = wire.DEFAULT_PATH.format(store_id=STORE)
TOKENS = wire.ACCESS_TOKEN_PATH.format(store_id=STORE)
MISSING = object()


def event(event_id: str = "e-1", **changes: Any) -> dict[str, Any]:
    """A valid body; a change to MISSING removes that field."""
    body = {
        wire.SOURCE: "shopify_backfill",
        wire.EVENT_NAME: "order_shipped",
        wire.OCCURRED_AT: "2024-03-01T12:30:00Z",
        wire.ID: event_id,
        wire.CUSTOMER: {wire.EXTERNAL_ID: "c-1", wire.EMAIL: "ann@example.com"},
        wire.PROPERTIES: {"order_id": "o-9", "total": 12.5},
    }
    body.update(changes)
    return {name: value for name, value in body.items() if value is not MISSING}


def post(
    server: Any, body: Any, token: str | None = None, path: str = EVENTS, **client: Any
) -> httpx.Response:
    """One POST over a fresh loopback connection (plain HTTP: no TLS context to build)."""
    headers = {wire.TOKEN_HEADER: server.token if token is None else token}
    content = body if isinstance(body, bytes) else None
    with httpx.Client(base_url=server.base_url, verify=False, **client) as http:
        if content is not None:
            return http.post(path, content=content, headers=headers)
        return http.post(path, json=body, headers=headers)


def outcome(server: Any, body: dict[str, Any]) -> str:
    """The status of one POST, or "dropped" when the connection closed without an answer."""
    try:
        return str(post(server, body).status_code)
    except httpx.TransportError:
        return "dropped"


INVALID = [
    pytest.param(event(source="Quiz App"), "source", id="source-not-snake-case"),
    pytest.param(event(source=""), "source", id="source-empty"),
    pytest.param(event(event_name="a" * 256), "event_name", id="event-name-too-long"),
    pytest.param(event(event_name=MISSING), "event_name", id="event-name-missing"),
    pytest.param(event(occurred_at="yesterday"), "occurred_at", id="occurred-at-unparsable"),
    pytest.param(event(occurred_at="2024-03-01T12:30:00"), "occurred_at", id="occurred-at-naive"),
    pytest.param(event(event_id=""), "id", id="id-empty"),
    pytest.param(event(id=5), "id", id="id-not-a-string"),
    pytest.param(event(customer=MISSING), "customer", id="customer-missing"),
    pytest.param(event(customer={}), "customer", id="customer-without-identifier"),
    pytest.param(
        event(customer={"email": "a@b.com", "phone_number": "+14155552671"}),
        "customer",
        id="email-and-phone-without-external-id",
    ),
    pytest.param(
        event(customer={"external_id": "c" * 256}),
        "customer.external_id",
        id="external-id-too-long",
    ),
    pytest.param(
        event(customer={"external_id": None}), "customer.external_id", id="external-id-null"
    ),
    pytest.param(
        event(customer={"phone_number": "4155552671"}), "customer.phone_number", id="phone-not-e164"
    ),
    pytest.param(
        event(customer={"phone_number": "+0155552671"}),
        "customer.phone_number",
        id="phone-leading-zero",
    ),
    pytest.param(event(customer={"email": "not-an-email"}), "customer.email", id="email-syntax"),
    pytest.param(
        event(customer={"external_id": "c", "nickname": "x"}),
        "customer.nickname",
        id="customer-unknown-field",
    ),
    pytest.param(
        event(customer={"external_id": "c", "properties": {"tags": ["a"]}}),
        "customer.properties.tags",
        id="customer-property-list",
    ),
    pytest.param(event(properties={"total": None}), "properties.total", id="property-null"),
    pytest.param(event(properties={"o": {"a": 1}}), "properties.o", id="property-object"),
    pytest.param(
        event(properties={"bad name": 1}), "properties.bad name", id="property-name-with-space"
    ),
    pytest.param(event(properties=[1]), "properties", id="properties-not-an-object"),
    pytest.param(event(extra=1), "extra", id="unknown-top-level-field"),
    pytest.param([event()], "body", id="body-not-an-object"),
    pytest.param(b"{not json", "body", id="body-not-json"),
]

VALID = [
    pytest.param(event(customer={"email": "ann@example.com"}), id="email-only"),
    pytest.param(event(customer={"phone_number": "+14155552671"}), id="phone-only"),
    pytest.param(
        event(customer={"external_id": "c", "email": "a@b.com", "phone_number": "+14155552671"}),
        id="all-identifiers",
    ),
    pytest.param(event(properties=MISSING), id="no-properties"),
    pytest.param(
        event(occurred_at="2024-03-01T12:30:00.123456+02:00"), id="offset-and-microseconds"
    ),
    pytest.param(
        event(
            properties={"s": "x", "b": True, "i": 3, "f": 1.5},
            customer={"external_id": "c", "properties": {"vip": False}},
        ),
        id="every-primitive",
    ),
]


def asgi_post(config: SandboxConfig, body: Any) -> tuple[httpx.Response, dict[str, Any]]:
    """One POST to an in-process app (no sockets), and the store's stats afterwards."""

    async def call() -> tuple[httpx.Response, dict[str, Any]]:
        transport = httpx.ASGITransport(app=create_app(config))
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as http:
            headers = {wire.TOKEN_HEADER: config.token}
            if isinstance(body, bytes):
                response = await http.post(EVENTS, content=body, headers=headers)
            else:
                response = await http.post(EVENTS, json=body, headers=headers)
            stats = (await http.get(f"/_sandbox/stores/{STORE}/stats")).json()
        return response, stats

    return asyncio.run(call())


@pytest.mark.parametrize(("body", "field"), INVALID)
def test_a_body_breaking_a_rule_is_400_naming_the_wire_field(body: Any, field: str) -> None:
    response, stats = asgi_post(SandboxConfig(rate_limit=None), body)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field
    assert response.json()["error"]["message"]
    assert (stats["count"], stats["status_counts"]) == (0, {"400": 1})


@pytest.mark.parametrize("body", VALID)
def test_every_accepted_shape_is_200(body: dict[str, Any]) -> None:
    response, stats = asgi_post(SandboxConfig(rate_limit=None), body)
    assert (response.status_code, response.json()) == (200, {"id": body["id"]})
    assert stats["count"] == 1


def test_invalid_bodies_over_real_sockets_are_400_with_their_field(sandbox) -> None:
    server = sandbox(rate_limit=None)
    for case in INVALID:
        body, field = case.values
        response = post(server, body)
        assert (response.status_code, response.json()["error"]["field"]) == (400, field), case.id
    assert server.stats(STORE)["status_counts"] == {"400": len(INVALID)}
    assert server.events(STORE) == []


def test_a_valid_event_is_200_and_stored_as_sent(sandbox) -> None:
    server = sandbox(rate_limit=None)
    response = post(server, event("e-1"))
    assert (response.status_code, response.json()) == (200, {"id": "e-1"})
    assert response.headers["content-type"] == "application/json"
    assert "ratelimit-remaining" not in response.headers  # no limit, no budget to report
    assert server.events(STORE) == [event("e-1")]
    stats = server.stats(STORE)
    assert (stats["count"], stats["receipts"], stats["status_counts"], stats["requests"]) == (
        1,
        {"e-1": 1},
        {"200": 1},
        1,
    )
    assert server.events("another-store") == []


def test_the_same_id_twice_keeps_one_event_with_the_last_body(sandbox) -> None:
    server = sandbox(rate_limit=None)
    assert post(server, event("e-1")).status_code == 200
    changed = event("e-1", properties={"order_id": "o-9", "total": 99.0})
    assert post(server, changed).status_code == 200
    assert server.events(STORE) == [changed]
    stats = server.stats(STORE)
    assert (stats["count"], stats["receipts"]) == (1, {"e-1": 2})


@pytest.mark.parametrize("token", ["", "wrong-token"], ids=["missing", "wrong"])
def test_a_missing_or_wrong_token_is_401_and_spends_no_budget(sandbox, token: str) -> None:
    server = sandbox(rate_limit=3.0)
    with httpx.Client(base_url=server.base_url) as http:
        headers = {wire.TOKEN_HEADER: token} if token else {}
        response = http.post(EVENTS, json=event(), headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": {"message": "missing or invalid X-Yotpo-Token header"}}
    assert response.headers["RateLimit-Remaining"] == "3"
    assert server.token not in response.text
    assert server.stats(STORE)["status_counts"] == {"401": 1}
    assert server.events(STORE) == []


def test_an_empty_bucket_is_429_with_the_rate_limit_headers(sandbox) -> None:
    server = sandbox(rate_limit=0.5)  # one token every 2 s, bucket of 1
    with httpx.Client(base_url=server.base_url, headers={wire.TOKEN_HEADER: server.token}) as http:
        first = http.post(EVENTS, json=event("e-1"))
        second = http.post(EVENTS, json=event("e-2"))
        invalid = http.post(EVENTS, json=event("e-3", source="Bad Name"))
    assert first.status_code == 200
    assert (
        first.headers["RateLimit-Limit"],
        first.headers["RateLimit-Remaining"],
        first.headers["RateLimit-Reset"],
    ) == ("1", "0", "2")
    assert "Retry-After" not in first.headers
    assert second.status_code == 429
    assert second.json() == {"error": {"message": "rate limit exceeded for this store"}}
    assert {
        name: second.headers[name]
        for name in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After")
    } == {
        "RateLimit-Limit": "1",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "2",
        "Retry-After": "2",
    }
    assert invalid.status_code == 429  # the limit is checked before the body
    assert server.stats(STORE)["status_counts"] == {"200": 1, "429": 2}
    assert server.stats("other-store")["requests"] == 0  # buckets are per store
    other = post(server, event("e-1"), path=wire.DEFAULT_PATH.format(store_id="other-store"))
    assert other.status_code == 200


def test_the_bucket_refills_at_the_rate_and_allows_no_burst_above_it() -> None:
    # The bucket's own clock, not the wall's: 12 posts at once, then 0.35 s later 5 more.
    bucket = TokenBucket(rate=10.0, capacity=10, now=0.0)
    assert [bucket.take(0.0) for _ in range(12)] == [True] * 10 + [False] * 2
    assert [bucket.take(0.35) for _ in range(5)] == [True] * 3 + [False] * 2  # 3.5 earned
    bucket.refill(100.0)
    assert bucket.tokens == 10  # a long quiet spell fills it, never above capacity


def test_a_fail_rate_of_one_answers_500_and_stores_nothing(sandbox) -> None:
    server = sandbox(rate_limit=None, fail_rate=1.0)
    response = post(server, event())
    assert (response.status_code, response.json()) == (
        500,
        {"error": {"message": "injected failure"}},
    )
    assert server.events(STORE) == []
    assert server.stats(STORE)["status_counts"] == {"500": 1}


def test_a_dropped_connection_gives_the_client_a_transport_error_and_no_status(sandbox) -> None:
    server = sandbox(rate_limit=None, drop_rate=1.0)
    # A closed or a reset connection, by the server's timing (older uvicorn resets it).
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        post(server, event())
    stats = server.stats(STORE)
    assert (stats["requests"], stats["status_counts"], stats["count"]) == (1, {"dropped": 1}, 0)


def test_in_process_a_drop_raises_the_error_an_httpx_client_sees_on_the_wire() -> None:
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        asgi_post(SandboxConfig(rate_limit=None, drop_rate=1.0), event())


def test_slow_answers_arrive_after_slow_ms_and_time_out_a_hasty_client(sandbox) -> None:
    server = sandbox(rate_limit=None, slow_rate=1.0, slow_ms=400)
    started = time.monotonic()
    assert post(server, event("e-1")).status_code == 200
    assert time.monotonic() - started >= 0.4
    with pytest.raises(httpx.ReadTimeout):
        post(server, event("e-2"), timeout=0.1)


def test_latency_is_added_to_every_answer(sandbox) -> None:
    server = sandbox(rate_limit=None, latency_ms=200)
    started = time.monotonic()
    assert post(server, event(), token="wrong").status_code == 401
    assert time.monotonic() - started >= 0.2


def test_the_same_seed_gives_the_same_faults_and_reset_restarts_them(sandbox) -> None:
    faults = {
        "rate_limit": None,
        "fail_rate": 0.3,
        "drop_rate": 0.2,
        "slow_rate": 0.1,
        "slow_ms": 1,
    }
    first, same, other = (
        sandbox(seed=11, **faults),
        sandbox(seed=11, **faults),
        sandbox(seed=12, **faults),
    )
    runs = {
        name: [outcome(server, event(f"e-{i}")) for i in range(40)]
        for name, server in (("first", first), ("same", same), ("other", other))
    }
    assert runs["first"] == runs["same"]
    assert runs["first"] != runs["other"]
    assert set(runs["first"]) == {"200", "500", "dropped"}
    first.reset()
    assert [outcome(first, event(f"e-{i}")) for i in range(40)] == runs["first"]


def test_the_access_token_endpoint_issues_fresh_working_tokens_for_the_secret(sandbox) -> None:
    server = sandbox(rate_limit=None, secret="s3cret")
    with httpx.Client(base_url=server.base_url) as http:
        issued = [http.post(TOKENS, json={"secret": "s3cret"}) for _ in range(2)]
        refused = http.post(TOKENS, json={"secret": "guess"})
        malformed = http.post(TOKENS, json={"key": "s3cret"})
    assert [response.status_code for response in issued] == [200, 200]
    tokens = [response.json()["access_token"] for response in issued]
    assert tokens[0] != tokens[1]
    assert [
        post(server, event(f"e-{i}"), token=token).status_code for i, token in enumerate(tokens)
    ] == [200, 200]
    assert post(server, event("e-3")).status_code == 200  # the configured token still works
    assert (refused.status_code, refused.json()) == (
        401,
        {"error": {"message": "invalid API secret"}},
    )
    assert "s3cret" not in refused.text
    assert (malformed.status_code, malformed.json()["error"]["field"]) == (400, "secret")


def test_a_db_file_keeps_the_events_across_a_restart(sandbox, tmp_path: Path) -> None:
    db = tmp_path / "sandbox.db"
    first = sandbox(rate_limit=None, db=db)
    for body in (event("e-1"), event("e-2"), event("e-1", properties={"total": 1.0})):
        assert post(first, body).status_code == 200
    first.stop()
    again = sandbox(rate_limit=None, db=db)
    assert again.events(STORE) == [event("e-1", properties={"total": 1.0}), event("e-2")]
    assert again.stats(STORE)["count"] == 2
    again.reset()
    assert again.events(STORE) == []


def test_reset_clears_events_stats_and_buckets(sandbox) -> None:
    server = sandbox(rate_limit=0.5)
    assert [outcome(server, event(f"e-{i}")) for i in range(2)] == ["200", "429"]
    server.reset()
    assert server.stats(STORE) == {
        "count": 0,
        "receipts": {},
        "status_counts": {},
        "requests": 0,
        "request_times": [],
    }
    assert outcome(server, event("e-9")) == "200"


def test_stats_record_every_post_arrival_in_order(sandbox) -> None:
    server = sandbox(rate_limit=None, drop_rate=0.5, seed=5)
    outcomes = [outcome(server, event(f"e-{i}")) for i in range(20)]
    stats = server.stats(STORE)
    assert stats["requests"] == len(stats["request_times"]) == 20
    assert stats["request_times"] == sorted(stats["request_times"])
    assert stats["status_counts"] == {name: outcomes.count(name) for name in set(outcomes)}
    assert stats["count"] == outcomes.count("200")


def test_the_endpoint_path_is_configurable(sandbox) -> None:
    server = sandbox(rate_limit=None, path="/v9/{store_id}/events")
    assert post(server, event(), path=f"/v9/{STORE}/events").status_code == 200
    assert post(server, event()).status_code == 404


def test_a_sandbox_that_cannot_start_fails_clearly_with_its_stderr(sandbox) -> None:
    running = sandbox(rate_limit=None)
    port = int(running.base_url.rsplit(":", 1)[1])
    with pytest.raises(
        SandboxStartError, match=r"exit code 2\)(?s:.*)cannot listen on .*Address already in use"
    ):
        start_sandbox(SandboxConfig(), port=port)


def test_stop_ends_the_process_promptly_even_with_a_request_in_flight(sandbox) -> None:
    server = sandbox(rate_limit=None, slow_rate=1.0, slow_ms=30_000)
    in_flight = threading.Thread(target=outcome, args=(server, event()))
    in_flight.start()
    while server.stats(STORE)["requests"] == 0:
        time.sleep(0.01)
    server.stop()  # SIGTERM, then SIGKILL after 5 s: the return code tells which ended it
    assert server.process.returncode == -signal.SIGTERM  # uvicorn exits by the signal, not SIGKILL
    in_flight.join()


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        pytest.param(
            {"fail_rate": 0.6, "drop_rate": 0.5}, "must not exceed 1", id="rates-above-one"
        ),
        pytest.param({"rate_limit": 0}, "rate_limit must be above 0", id="zero-rate"),
        pytest.param({"path": "/events"}, "contain {store_id}", id="path-without-store"),
        pytest.param({"slow_rate": 2}, "slow_rate must be between 0 and 1", id="rate-out-of-range"),
    ],
)
def test_a_bad_configuration_is_a_value_error_naming_the_option(
    changes: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem.replace("{", r"\{").replace("}", r"\}")):
        SandboxConfig(**changes)


def test_the_token_bucket_counts_whole_tokens_and_rounds_reset_up() -> None:
    bucket = TokenBucket(rate=4.0, capacity=4, now=0.0)
    assert [bucket.take(0.0) for _ in range(5)] == [True] * 4 + [False]
    assert bucket.headers() == {
        "RateLimit-Limit": "4",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "1",
    }
    assert bucket.take(0.25) and not bucket.take(0.25)
    bucket.refill(0.875)  # 2.5 tokens: 0.375 s to full, rounded up
    assert bucket.headers() == {
        "RateLimit-Limit": "4",
        "RateLimit-Remaining": "2",
        "RateLimit-Reset": "1",
    }
    bucket.refill(10.0)
    assert bucket.headers()["RateLimit-Remaining"] == "4" and bucket.reset_seconds() == 0


def test_a_taken_port_is_one_clear_line_and_exit_2(sandbox) -> None:
    port = httpx.URL(sandbox(rate_limit=None).base_url).port
    result = subprocess.run(
        [sys.executable, "-m", "etl", "sandbox", "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"Error: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
