"""Many stores from one source (SPEC §10): one `Loader` per store, one shared HTTP client.

Each store gets the whole of what isolates it: its own `Loader` (limiter, 429 pauses,
adaptive pace, token renewal, consecutive-failure and config-4xx aborts) fed by its own
`Feed`. A store that aborts (a refused token, an outage) stops alone: its held events
are dropped unsent (pending for the next run) and the others finish; the run then
raises `StoresAborted` (exit 3), naming each aborted store and why. The reader never
waits on one store (the feeds spill to disk), so a source sorted by store keeps every
store with work sending at its own limit.

All stores share one client and its keep-alive pool (`concurrency` connections per
store): the lean transport takes a connection off a per-origin stack, so the cost of a
request does not grow with the pool (measured in benchmarks/many_stores.py).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from etl.definition import Destination
from etl.errors import AbortError, StoresAborted
from etl.events import Event
from etl.load.loader import Guard, Loader, LoadStats, OnOutcome, _own_client
from etl.load.spool import Feed
from etl.store_credentials import StoreCredentials

log = logging.getLogger("etl.load")
#: Events per store held in memory ahead of its senders (beyond: the spool file).
DEPTH_PER_WORKER = 4
#: The reader yields to the senders after this many events, so none starves meanwhile.
YIELD_EVERY = 256
#: Connections the shared pool may hold when the number of stores is not known up front.
DEFAULT_POOL = 4096
#: Aborted stores named in the run's error line (all are in the report).
NAMED_ABORTS = 5


@dataclass
class _Lane:
    """One store: its destination, feed, counters, task and (once aborted) why."""

    destination: Destination
    feed: Feed
    stats: LoadStats = field(default_factory=LoadStats)
    task: asyncio.Task[None] | None = None
    error: str | None = None
    dropped: int = 0  # events not sent because the store aborted


class FanOut:
    """Sends each event to its own store's loader; `deliver` is the whole of a run's load."""

    def __init__(
        self,
        destination: Destination,
        credentials: StoreCredentials,
        client: httpx.AsyncClient | None = None,
        stats: LoadStats | None = None,
        state_url: str | None = None,
        guard: Guard | None = None,
    ) -> None:
        self.destination = destination
        self._guard = guard
        self._state_url = state_url  # each store's limiter may be shared through it (SPEC §11)
        self._credentials = credentials
        self._total = stats if stats is not None else LoadStats()
        self._own_client = client is None
        stores = len(credentials.allow_list) if credentials.allow_list else DEFAULT_POOL
        self._client = client or _own_client(destination, destination.concurrency * stores)
        self._lanes: dict[str, _Lane] = {}
        self._spool = tempfile.TemporaryDirectory(prefix="etl-spool-")

    async def __aenter__(self) -> FanOut:
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the shared client (when made here) and remove the spool folder."""
        if self._own_client:
            await self._client.aclose()
        self._spool.cleanup()

    @property
    def stats(self) -> LoadStats:
        """Every store's counters added up (refreshed on each read)."""
        total = self._total
        lanes = [lane.stats for lane in self._lanes.values()]
        for name in (
            "requests",
            "retries",
            "http_429",
            "token_refreshes",
            "limiter_wait_s",
            "pause_429_s",
        ):
            setattr(total, name, sum(getattr(stats, name) for stats in lanes))
        total.status_counts = {}
        for stats in lanes:
            for status, count in stats.status_counts.items():
                total.status_counts[status] = total.status_counts.get(status, 0) + count
        errors = [stats.last_error for stats in lanes if stats.last_error]
        total.last_error = errors[-1] if errors else None
        pauses = [stats.paused_until for stats in lanes if stats.paused_until]
        total.paused_until = max(pauses) if pauses else None
        return total

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per store: requests, 429s, events spilled to disk, and why it aborted (if it did)."""
        return {
            store: {
                "requests": lane.stats.requests,
                "http_429": lane.stats.http_429,
                "spilled": lane.feed.spilled,
                "aborted": lane.error,
                "unsent": lane.dropped,
            }
            for store, lane in sorted(self._lanes.items())
        }

    async def deliver(self, events: AsyncIterable[Event], on_outcome: OnOutcome) -> None:
        """Route every event to its store; return when every store is done or aborted.

        Raises StoresAborted when any store aborted (after the others finished).
        """
        try:
            count = 0
            async for event in events:
                lane = self._lane(event.store or "", on_outcome)
                if lane.error is not None:
                    lane.dropped += 1
                else:
                    lane.feed.put(event)
                count += 1
                if count % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            for lane in self._lanes.values():
                lane.feed.close()
            await asyncio.gather(*(lane.task for lane in self._lanes.values() if lane.task))
        finally:
            tasks = [lane.task for lane in self._lanes.values() if lane.task]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        aborted = {store: lane.error for store, lane in self._lanes.items() if lane.error}
        if aborted:
            first = list(aborted.items())[:NAMED_ABORTS]
            named = "; ".join(f"{store}: {error}" for store, error in first)
            more = len(aborted) - NAMED_ABORTS
            raise StoresAborted(
                f"{len(aborted)} of {len(self._lanes)} stores aborted ({named}"
                + (f"; and {more} more" if more > 0 else "")
                + "); the other stores finished, "
                "the aborted stores' events stay unsent: rerun after the fix",
                aborted,
            )

    def _lane(self, store: str, on_outcome: OnOutcome) -> _Lane:
        lane = self._lanes.get(store)
        if lane is None:
            lane = self._lanes[store] = self._open(store)
            lane.task = asyncio.create_task(self._drive(store, lane, on_outcome))
        return lane

    def _open(self, store: str) -> _Lane:
        found = self._credentials.lookup(store)
        if isinstance(found, str):  # the router rejected such rows; here only by mistake
            raise AbortError(f"store {store!r}: {found}")
        destination = self.destination.model_copy(
            update={
                "store_id": store,
                "token": SecretStr(found.token) if found.token else None,
                "secret": SecretStr(found.secret) if found.secret else None,
                "credentials": None,
                "token_file": None,
            }
        )
        depth = DEPTH_PER_WORKER * self.destination.concurrency
        return _Lane(destination, Feed(depth, Path(self._spool.name) / f"{len(self._lanes)}.spool"))

    async def _drive(self, store: str, lane: _Lane, on_outcome: OnOutcome) -> None:
        """One store's loader over its feed; an abort ends this store only."""
        try:
            async with Loader(
                lane.destination,
                client=self._client,
                stats=lane.stats,
                state_url=self._state_url,
                guard=self._guard,
            ) as loader:
                await loader.deliver(lane.feed, on_outcome)
        except AbortError as exc:
            lane.error = str(exc)
            lane.dropped += lane.feed.discard()
            log.error("store %s aborted: %s", store, exc)
