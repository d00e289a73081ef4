"""The rate limit: the limiter's slots (fake clock), the API's headers, and the sandbox's view.

The sandbox records when each request arrived; those times, not the loader's own
account, decide whether a 1 s window ever held more than the limit.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from test_load import STORE, body, deliver, destination, make_events

from etl import wire
from etl.events import Status
from etl.load import Limiter
from etl.load.limiter import FLOOR_RATE, MARGIN_S
from etl.load.retry import backoff, quota_spent, throttle_reset


class FakeTime:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def slots(limiter: Limiter, time: FakeTime, count: int) -> list[float]:
    async def take() -> list[float]:
        taken = []
        for _ in range(count):
            await limiter.acquire()
            taken.append(round(time.now - 100.0, 6))
        return taken

    return asyncio.run(take())


def max_in_window(times: list[float], width: float = 1.0) -> int:
    """The most requests any half-open window [t, t + width) holds."""
    ordered = sorted(times)
    most = start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= width:
            start += 1
        most = max(most, end - start + 1)
    return most


# -- the limiter on a fake clock ------------------------------------------------------------
def test_slots_are_evenly_spaced_from_the_first_with_no_burst() -> None:
    time = FakeTime()
    taken = slots(Limiter(5.0, time.clock, time.sleep), time, 5)
    assert taken == [0.0, 0.2, 0.4, 0.6, 0.8]


def test_no_one_second_window_holds_more_than_floor_rate_sends() -> None:
    time = FakeTime()
    taken = slots(Limiter(5.0, time.clock, time.sleep), time, 11)
    assert taken[5] == pytest.approx(1.0 + MARGIN_S)
    assert max_in_window(taken) == 5


def test_idle_time_is_not_saved_up_as_a_burst() -> None:
    time = FakeTime()
    limiter = Limiter(2.0, time.clock, time.sleep)
    slots(limiter, time, 1)
    time.now += 60.0
    assert slots(limiter, time, 3) == [60.0, 60.5, 61.0 + MARGIN_S]


def test_a_pause_holds_the_next_slot_until_it_ends() -> None:
    time = FakeTime()
    limiter = Limiter(5.0, time.clock, time.sleep)
    slots(limiter, time, 1)
    limiter.pause(3.0)

    async def one() -> tuple[float, float]:
        return await limiter.acquire()

    paced, paused = asyncio.run(one())
    assert (time.now - 100.0, paced, paused) == (3.0, 0.0, 3.0)


def test_a_429_halves_the_pace_and_clean_answers_creep_back_to_the_rate() -> None:
    time = FakeTime()
    limiter = Limiter(8.0, time.clock, time.sleep)
    limiter.throttled()
    limiter.throttled()  # the same burst: one decrease
    assert limiter.pace == 4.0
    time.now += 1.0
    limiter.throttled()
    assert limiter.pace == 2.0
    for _ in range(10):
        time.now += 1.0
        limiter.clean()
    assert limiter.pace == pytest.approx(2.0 * 1.05**10)
    for _ in range(30):
        time.now += 1.0
        limiter.clean()
    assert limiter.pace == 8.0
    for _ in range(100):
        limiter.throttled()
        time.now += 1.0
    assert limiter.pace == FLOOR_RATE


# -- the API's headers ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        pytest.param({"Retry-After": "2"}, 2.0, id="retry-after"),
        pytest.param({"Retry-After": "0", "RateLimit-Reset": "3"}, 3.0, id="zero-then-reset"),
        pytest.param({"Retry-After": "soon"}, None, id="garbage"),
        pytest.param({"Retry-After": "0"}, None, id="zero"),
        pytest.param({"Retry-After": "-4"}, None, id="negative"),
        pytest.param({"Retry-After": "nan"}, None, id="nan"),
        pytest.param({}, None, id="missing"),
        pytest.param({"Retry-After": "99999999"}, 3600.0, id="capped"),
        pytest.param({"X-RateLimit-Reset-Minute": "40"}, 40.0, id="minute"),
    ],
)
def test_a_429_waits_for_the_first_believable_reset(
    headers: dict[str, str], wait: float | None
) -> None:
    assert throttle_reset(httpx.Headers(headers)) == wait


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        pytest.param({"RateLimit-Remaining": "0", "RateLimit-Reset": "1"}, 1.0, id="spent"),
        pytest.param({"RateLimit-Remaining": "3", "RateLimit-Reset": "1"}, None, id="budget-left"),
        pytest.param({"RateLimit-Remaining": "0"}, None, id="no-reset"),
        pytest.param(
            {"X-RateLimit-Remaining-Minute": "0", "X-RateLimit-Reset-Minute": "12"},
            12.0,
            id="minute-spent",
        ),
        pytest.param({"X-RateLimit-Remaining-Minute": "9"}, None, id="minute-left"),
        pytest.param({}, None, id="no-headers"),
    ],
)
def test_an_accepted_answer_with_no_budget_left_pauses_until_the_reset(
    headers: dict[str, str], wait: float | None
) -> None:
    assert quota_spent(httpx.Headers(headers)) == wait


def test_back_off_doubles_from_half_a_second_with_jitter_and_a_cap() -> None:
    draws = {attempt: [backoff(attempt) for _ in range(200)] for attempt in (1, 2, 3, 9)}
    assert min(draws[1]) >= 0.5 and max(draws[1]) <= 1.0
    assert min(draws[2]) >= 1.0 and max(draws[2]) <= 2.0
    assert min(draws[3]) >= 2.0 and max(draws[3]) <= 4.0
    assert min(draws[9]) >= 15.0 and max(draws[9]) <= 30.0


# -- against the sandbox process --------------------------------------------------------------
def test_at_the_limit_with_latency_no_window_holds_more_than_the_limit(
    sandbox: Callable[..., Any],
) -> None:
    server = sandbox(rate_limit=5, latency_ms=200, latency_jitter_ms=100, seed=3)
    bodies = [body(n) for n in range(60)]
    outcomes, stats = deliver(destination(server, rate_limit=5.0), make_events(bodies))

    seen = server.stats(STORE)
    assert Counter(o.status for o in outcomes) == {Status.DELIVERED: 60}
    assert max_in_window(seen["request_times"]) <= 5
    assert seen["status_counts"].get("429", 0) <= 0.01 * seen["requests"]
    assert stats.limiter_wait_s > 0


def test_a_sandbox_slower_than_configured_is_matched_and_nothing_fails(
    sandbox: Callable[..., Any],
) -> None:
    server = sandbox(rate_limit=5)
    bodies = [body(n) for n in range(60)]
    outcomes, stats = deliver(destination(server, rate_limit=20.0), make_events(bodies))

    assert by_id_set(server.events(STORE)) == by_id_set(bodies)
    assert Counter(o.status for o in outcomes) == {Status.DELIVERED: 60}
    assert stats.http_429 == server.stats(STORE)["status_counts"].get("429", 0) <= 6
    assert stats.pause_429_s > 0


def by_id_set(bodies: list[dict[str, Any]]) -> set[str]:
    return {b["id"] for b in bodies}


# -- 429s whose headers give no believable wait, from a tiny real server -----------------------
def throttling_app(retry_after: str | None, refusals: int, arrivals: list[float]) -> Starlette:
    """Answers 429 (with `retry_after`, if any) to the first `refusals` posts, then 200."""

    async def post(request: Request) -> Response:
        arrivals.append(asyncio.get_running_loop().time())
        if len(arrivals) <= refusals:
            headers = {} if retry_after is None else {"Retry-After": retry_after}
            return Response(b'{"error": {"message": "slow down"}}', 429, headers)
        return Response(b'{"id": "x"}', 200, media_type="application/json")

    return Starlette(routes=[Route(wire.DEFAULT_PATH, post, methods=["POST"])])


@pytest.mark.parametrize("retry_after", ["0", "garbage", None], ids=["zero", "garbage", "missing"])
def test_a_429_without_a_believable_wait_falls_back_to_back_off(
    serve: Callable[[Starlette], str], retry_after: str | None
) -> None:
    arrivals: list[float] = []
    base_url = serve(throttling_app(retry_after, 2, arrivals))
    outcomes, stats = deliver(
        destination(base_url=base_url, concurrency=1, max_retries=3), make_events([body(0)])
    )

    assert [(o.status, o.attempts) for o in outcomes] == [(Status.DELIVERED, 3)]
    assert (stats.http_429, stats.retries, stats.status_counts) == (2, 2, {429: 2, 200: 1})
    gaps = [later - earlier for earlier, later in pairwise(arrivals)]
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0  # back-off attempts 1 and 2, never at once
    assert stats.pause_429_s >= 1.5


def test_an_accepted_answer_with_no_budget_left_holds_the_next_request(
    serve: Callable[[Starlette], str],
) -> None:
    arrivals: list[float] = []

    async def post(request: Request) -> Response:
        arrivals.append(asyncio.get_running_loop().time())
        spent = {"RateLimit-Remaining": "0", "RateLimit-Reset": "1"} if len(arrivals) == 1 else {}
        return Response(b'{"id": "x"}', 200, spent, media_type="application/json")

    base_url = serve(Starlette(routes=[Route(wire.DEFAULT_PATH, post, methods=["POST"])]))
    outcomes, stats = deliver(
        destination(base_url=base_url, concurrency=1), make_events([body(0), body(1)])
    )

    assert [o.status for o in outcomes] == [Status.DELIVERED, Status.DELIVERED]
    assert arrivals[1] - arrivals[0] >= 1.0
    assert stats.pause_429_s >= 0.9 and stats.http_429 == 0
