"""The sender: `concurrency` workers posting events to one store through one shared limiter.

Each worker takes an event, sends it until it has an outcome (retrying per
`etl.load.retry`), awaits the caller's `on_outcome` and only then takes the next
one, so what a `kill -9` re-sends is bounded by `concurrency`. A refused token is
renewed once from the secret, for all workers at once; a run that cannot
authenticate, whose events keep failing, whose API never answered a connection, or
that keeps getting a 4xx about its configuration (404, 405...), stops every worker
and raises. Such an abort leaves the events in flight without an outcome, so a rerun
after the fix sends them. Pauses the API asks for are clamped to `max_pause`; a long
one is logged once and kept in `stats.paused_until` for the progress line.

    async with Loader(pipeline.destination) as loader:
        await loader.deliver(events, on_outcome)
    loader.stats.requests, loader.stats.http_429
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import urllib.request
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import httpx

from etl import wire
from etl.definition import Destination
from etl.errors import AuthError, ConfigRefused, TooManyFailures, Unreachable
from etl.events import Event, Outcome, Status
from etl.load.budgets import limiter_for
from etl.load.retry import (
    Verdict,
    api_message,
    backoff,
    classify,
    pause_cause,
    quota_spent,
    throttle_reset,
    transport_error,
)
from etl.load.transport import KeepAliveTransport

#: Consecutive failed outcomes after which the API is taken to be down (SPEC §2, exit 3).
MAX_CONSECUTIVE_FAILURES = 50
#: The same non-row 4xx answering this many requests in a row aborts the run (SPEC §5).
CONFIG_REFUSALS = 3
#: Failed connections of one event, before the API ever answered, that abort the run: a few
#: seconds of back-off, so a blip at start-up passes but a dead address fails fast.
UNREACHABLE_TRIES = 3
#: A pause at least this long, or one clamped to max_pause, is logged (once) and shown on the
#: progress line (SPEC §7).
VISIBLE_PAUSE_S = 5.0

log = logging.getLogger("etl.load")

OnOutcome = Callable[[Outcome], Awaitable[None]]
#: Asked before every request of an event; False drops the event unsent, without an outcome.
Guard = Callable[[Event], bool]


@dataclass
class LoadStats:
    """What the loader did, for the run summary: where a long backfill spent its time."""

    requests: int = 0
    """HTTP requests sent to the events endpoint (every try counts)."""
    retries: int = 0
    """Requests that were a second or later try of their event."""
    http_429: int = 0
    """Answers that said the rate limit was exceeded."""
    status_counts: dict[int | str, int] = field(default_factory=dict)
    """Answers by status code; "timeout" and "connection" for requests that got none."""
    limiter_wait_s: float = 0.0
    """Wall time the limiter held the next request back to keep the pace."""
    pause_429_s: float = 0.0
    """Wall time sending was paused on the API's word (429, Retry-After, Remaining 0)."""
    token_refreshes: int = 0
    """Access tokens generated from the secret."""
    last_error: str | None = None
    """The error of the latest failed try, for the progress line and the summary."""
    paused_until: datetime | None = None
    """Local time the latest long or clamped pause the API asked for ends."""

    def count(self, status: int | str) -> None:
        """One more answer of this status."""
        self.status_counts[status] = self.status_counts.get(status, 0) + 1


class _Credentials:
    """The token every worker sends; renewed from the secret, once per refusal, for all."""

    def __init__(self, destination: Destination, client: httpx.AsyncClient, stats: LoadStats):
        self._destination = destination
        self._client = client
        self._stats = stats
        self._secret = destination.secret.get_secret_value() if destination.secret else None
        self._lock = asyncio.Lock()
        self._renewed = False  # the current token came from the secret...
        self._accepted = False  # ...and the API has taken it at least once
        self.generation = 0
        self.headers: dict[str, str] = {}
        if destination.token is not None:
            self._use(destination.token.get_secret_value())

    def _use(self, token: str) -> None:
        self.headers = {wire.TOKEN_HEADER: token, "content-type": "application/json"}

    async def ready(self) -> None:
        """Make sure there is a token (a destination may give only the secret)."""
        if not self.headers:
            await self._renew()

    def accepted(self) -> None:
        """The API took the current token."""
        self._accepted = True

    async def refused(self, generation: int, status: int) -> None:
        """A request sent with token `generation` got `status` 401/403: renew or raise AuthError.

        Concurrent refusals of the same token cause one renewal; the others find the
        generation moved on and simply retry with the new token.
        """
        async with self._lock:
            if generation != self.generation:
                return
            store = self._destination.store_id
            if self._secret is None:
                raise AuthError(
                    f"the API refused the token for store {store!r} (HTTP {status}) and no secret "
                    "is configured to generate a new one; fix destination.token and rerun"
                )
            if self._renewed and not self._accepted:
                raise AuthError(
                    f"the API refused the token just generated for store {store!r} "
                    f"(HTTP {status}); the secret may belong to another store; "
                    "check destination.store_id and secret"
                )
            await self._renew()

    async def _renew(self) -> None:
        destination = self._destination
        url = destination.base_url.rstrip("/") + wire.ACCESS_TOKEN_PATH.format(
            store_id=destination.store_id
        )
        unconnected = 0
        for attempt in range(1, destination.max_retries + 2):
            try:
                response = await self._client.post(url, json={"secret": self._secret})
            except httpx.TransportError as exc:
                problem = transport_error(exc)
                if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                    unconnected += 1
                    if unconnected >= UNREACHABLE_TRIES:
                        raise _unreachable_abort(httpx.URL(url), problem) from None
            else:
                if response.status_code in (401, 403):
                    raise AuthError(
                        f"the API refused the secret for store {destination.store_id!r} "
                        f"(HTTP {response.status_code}); fix destination.secret and rerun"
                    )
                token = _access_token(response)
                if token is not None:
                    self._use(token)
                    self._renewed, self._accepted = True, False
                    self.generation += 1
                    self._stats.token_refreshes += 1
                    return
                problem = f"HTTP {response.status_code}: {api_message(response)}"
            if attempt <= destination.max_retries:
                await asyncio.sleep(backoff(attempt))
        raise AuthError(f"could not generate an access token from the secret ({problem})")


def _access_token(response: httpx.Response) -> str | None:
    if not response.is_success:
        return None
    try:
        token = response.json().get("access_token")
    except (ValueError, AttributeError):
        return None
    return token if isinstance(token, str) and token else None


def _own_client(destination: Destination, pool: int | None = None) -> httpx.AsyncClient:
    """A client with a keep-alive pool of `pool` (default: `concurrency`) connections.

    The lean transport, unless a proxy is configured for the API's URL: that one does
    not speak to proxies, httpx's own transport does (at a third of the speed).
    """
    pool, timeout = pool or destination.concurrency, destination.timeout
    url = httpx.URL(destination.base_url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(url.host):
        limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
        return httpx.AsyncClient(limits=limits, timeout=timeout)
    transport = KeepAliveTransport(pool, timeout, max_response_bytes=destination.max_response_bytes)
    return httpx.AsyncClient(transport=transport, timeout=timeout)


class Loader:
    """Posts events to one store: shared limiter, retries, token renewal, abort on the hopeless.

    `client=None` makes (and closes) an `httpx.AsyncClient` with a keep-alive pool of
    `concurrency` connections; a given client (tests: ASGITransport) is left open.
    """

    def __init__(
        self,
        destination: Destination,
        client: httpx.AsyncClient | None = None,
        stats: LoadStats | None = None,
        state_url: str | None = None,
        guard: Guard | None = None,
    ) -> None:
        self.destination = destination
        self._guard = guard  # leased work: may this event still be sent (SPEC §11)?
        self.stats = stats if stats is not None else LoadStats()
        self._own_client = client is None
        self._client = client if client is not None else _own_client(destination)
        self._url = httpx.URL(destination.events_url)
        self._limiter = limiter_for(destination, state_url)  # shared when state/Redis allow
        self._credentials = _Credentials(destination, self._client, self.stats)
        self._failed_in_a_row = 0
        self._answered = False  # any HTTP answer yet: a refused connection is then no surprise
        self._refusals = (0, 0)  # (status, count) of the non-row 4xx answering in a row
        self._pause_shown = -math.inf  # monotonic end of the last pause logged

    async def __aenter__(self) -> Loader:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._limiter.close()
        if self._own_client:
            await self._client.aclose()

    async def deliver(self, events: AsyncIterable[Event], on_outcome: OnOutcome) -> None:
        """Send every event; await `on_outcome` once per event before its worker goes on.

        Raises AuthError or TooManyFailures after stopping every worker. When cancelled,
        requests in flight are abandoned (their events get no outcome and are resent on
        the next run); an outcome whose `on_outcome` has begun is awaited to the end.
        """
        await self._credentials.ready()
        source = aiter(events)
        take = asyncio.Lock()
        workers = [
            asyncio.create_task(self._work(source, take, on_outcome))
            for _ in range(self.destination.concurrency)
        ]
        try:
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if (error := task.exception()) is not None:
                    raise error
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            aclose = getattr(source, "aclose", None)
            if aclose is not None:  # an async generator: run its clean-up now, not at GC
                await aclose()

    async def _work(
        self, source: AsyncIterator[Event], take: asyncio.Lock, on_outcome: OnOutcome
    ) -> None:
        # The lock: several workers may not await one async generator at the same time.
        while True:
            async with take:
                try:
                    event = await anext(source)
                except StopAsyncIteration:
                    return
            outcome = await self._send(event)
            if outcome is None:
                continue
            await _to_the_end(on_outcome(outcome))
            self._tally(outcome)

    def _tally(self, outcome: Outcome) -> None:
        if outcome.status is not Status.FAILED:
            self._failed_in_a_row = 0
            return
        self._failed_in_a_row += 1
        if self._failed_in_a_row >= MAX_CONSECUTIVE_FAILURES:
            raise TooManyFailures(
                f"{MAX_CONSECUTIVE_FAILURES} events in a row failed after "
                f"{self.destination.max_retries} retries each, the API looks down "
                f"(last error: {outcome.error}); rerun later to resend them"
            )

    async def _send(self, event: Event) -> Outcome | None:
        """Try `event` until it has an outcome (or AuthError ends the run); None when the
        guard forbids sending it (another worker's now)."""
        stats, limiter, credentials = self.stats, self._limiter, self._credentials
        attempts = failures = unconnected = 0
        while True:
            generation = credentials.generation
            paced, paused = await limiter.acquire()
            stats.limiter_wait_s += paced
            stats.pause_429_s += paused
            if self._guard is not None and not self._guard(event):
                return None
            stats.requests += 1
            stats.retries += attempts > 0
            attempts += 1
            try:
                response = await self._client.post(
                    self._url, content=event.body, headers=credentials.headers
                )
            except httpx.LocalProtocolError:  # never on the wire: our request is malformed
                raise ConfigRefused(
                    f"a request to {self._url} was refused before sending: a header name or "
                    "value holds CR, LF or NUL (check destination.token)"
                ) from None
            except httpx.TransportError as exc:
                stats.count("timeout" if isinstance(exc, httpx.TimeoutException) else "connection")
                verdict, error = Verdict.RETRY, transport_error(exc)
                if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                    unconnected += 1
                    self._unreachable(unconnected, error)
            else:
                verdict = self._observe(response, failures)
                if verdict is Verdict.AUTH:
                    await credentials.refused(generation, response.status_code)
                    continue
                if verdict is Verdict.DELIVERED:
                    return Outcome(event, Status.DELIVERED, attempts)
                if verdict is Verdict.REJECTED:
                    return Outcome(event, Status.REJECTED, attempts, api_message(response))
                error = _answer_error(response)
                if verdict is Verdict.CONFIG:
                    self._config_refusal(response.status_code, error)
            stats.last_error = error
            failures += 1
            if failures > self.destination.max_retries:
                return Outcome(event, Status.FAILED, attempts, error)
            if verdict in (Verdict.RETRY, Verdict.CONFIG):
                await asyncio.sleep(backoff(failures))

    def _unreachable(self, tries: int, error: str) -> None:
        """Abort when one event could not connect `UNREACHABLE_TRIES` times and nothing ever
        answered: a wrong host or a dead port, not an outage in the middle of a run."""
        if not self._answered and tries >= UNREACHABLE_TRIES:
            raise _unreachable_abort(self._url, error)

    def _config_refusal(self, status: int, error: str) -> None:
        """Count a non-row 4xx; the same status `CONFIG_REFUSALS` times in a row aborts."""
        last, count = self._refusals
        count = count + 1 if status == last else 1
        self._refusals = (status, count)
        if count >= CONFIG_REFUSALS:
            raise ConfigRefused(
                f"the API answered HTTP {status} to {CONFIG_REFUSALS} requests in a row at "
                f"{self._url} ({error}): the configuration is wrong (destination.base_url, path or "
                "store_id), not the rows; these events stay unsent, rerun after the fix"
            )

    def _pause(self, seconds: float, cause: str) -> None:
        """Hold every worker `seconds`, at most `max_pause`; a long pause is logged once."""
        cap = self.destination.max_pause
        clamped = seconds > cap
        if clamped:
            cause, seconds = f"{cause}, clamped to destination.max_pause {cap:g} s", cap
        end = self._limiter.pause(seconds)
        if not clamped and seconds < VISIBLE_PAUSE_S:
            return
        if end < self._pause_shown + min(seconds, VISIBLE_PAUSE_S):
            return  # the pause already shown: every worker's 429 says the same
        self._pause_shown = end
        until = datetime.now().astimezone() + timedelta(seconds=end - time.monotonic())
        self.stats.paused_until = until
        log.warning(
            "store %s: paused by the API until %s (%.0f s): %s",
            self.destination.store_id,
            f"{until:%H:%M:%S}",
            seconds,
            cause,
        )

    def _observe(self, response: httpx.Response, failures: int) -> Verdict:
        """Count an answer and let the limiter and the credentials learn from it."""
        stats, limiter = self.stats, self._limiter
        stats.count(response.status_code)
        self._answered = True
        verdict = classify(response.status_code)
        if verdict is not Verdict.CONFIG:
            self._refusals = (0, 0)
        if verdict is Verdict.THROTTLED:
            stats.http_429 += 1
            limiter.throttled()
            wait = throttle_reset(response.headers)
            self._pause(wait or backoff(failures + 1), pause_cause(response))
        elif verdict is not Verdict.AUTH:
            self._credentials.accepted()
            spent = quota_spent(response.headers)
            if spent is None:
                limiter.clean()
            else:
                self._pause(spent, pause_cause(response))
        return verdict


def _unreachable_abort(url: httpx.URL, error: str) -> Unreachable:
    """The abort of a run whose API could not be connected to: the host and the cause."""
    return Unreachable(
        f"the API at {url.scheme}://{url.netloc.decode()} cannot be reached ({error}); "
        "nothing was sent: check destination.base_url and the network, then rerun"
    )


def _answer_error(response: httpx.Response) -> str:
    """`HTTP 404: <the API's message>`, the status said once."""
    message = api_message(response)
    return message if message.startswith("HTTP ") else f"HTTP {response.status_code}: {message}"


async def _to_the_end(awaitable: Awaitable[Any]) -> None:
    """Await `awaitable` even if cancelled meanwhile: a finished request's outcome is kept."""
    task = asyncio.ensure_future(awaitable)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
