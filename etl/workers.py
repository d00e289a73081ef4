"""One worker's share of a pipeline's leased work (SPEC §11): the feed, the guard, the keeper.

With `workers:` in the definition and a PostgreSQL state, every `etl run` process of
the pipeline is a worker. The *reader* (whoever holds the reader lease) validates,
transforms and diffs the source as a single run does, and enqueues the new or changed
events with their bodies into state (`etl.state.queue`); every worker drains the
partitions it holds from there and records outcomes fenced by the lease's epoch. If
the reader dies, another takes its lease after expiry and reads again: diffing skips
what was delivered and the queue ignores what is already pending, so that is
idempotent. The run ends when the source is read and nothing is pending anywhere.

Each lease held has a local deadline on CLOCK_MONOTONIC, taken *before* the database
call that set its expiry, at `DEADLINE_SHARE` of the lease: before the database can
give the partition to anyone else, this worker has stopped. The deadline is checked
before every request (`may_send`): a worker frozen (SIGSTOP) longer than that wakes up
with every deadline passed, sends nothing more, and the run aborts with `LeaseLost`
(exit 3). Its late outcomes are refused by the epoch check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa

from etl.definition import Workers
from etl.errors import LeaseLost
from etl.events import Event, EventBatch, Outcome
from etl.state.errors import state_errors
from etl.state.leases import Lease, LeaseBoard, Progress
from etl.state.queue import LEASE, WorkQueue
from etl.state.scope import Scope
from etl.state.store import GroupWriter, outcome_row

log = logging.getLogger("etl.workers")
T = TypeVar("T")
#: The share of the lease a worker sends for after the renewal that set it.
DEADLINE_SHARE = 0.8
#: Events read from a partition's queue at a time.
PAGE = 200
#: How long an idle feed waits before it looks for work again.
IDLE_S = 0.25
#: An idle feed asks the keeper for a cycle (new partitions to take) at most this often.
WAKE_S = 1.0
#: The reader waits while this many events are pending: the queue is a buffer, not a copy
#: of the source (a backfill's bodies would otherwise all sit in the state database).
MAX_PENDING = 100_000


@dataclass
class _Held:
    """A partition this worker holds: its lease, local deadline, and what it took of it."""

    lease: Lease
    deadline: float
    after: int = 0  # the highest queue seq taken
    buffer: deque[Event] = field(default_factory=deque)
    in_flight: int = 0
    releasing: bool = False  # over the fair share: take nothing more, give back when idle


class LeasedWork:
    """A worker's leases on one pipeline; `async with` joins the round and leaves it."""

    def __init__(self, url: str, scope: Scope, run_id: int, settings: Workers) -> None:
        self.url = url
        self.scope = scope
        self.run_id = run_id
        self.lease_s = settings.lease
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.engine = sa.create_engine(url, pool_size=4, pool_pre_ping=True, hide_parameters=True)
        self.board = LeaseBoard(
            self.engine, scope.pipeline, scope.base_url, self.worker, self.lease_s
        )
        self.queue = WorkQueue(
            self.engine, scope.pipeline, scope.base_url, self.worker, settings.shards
        )
        self.held: dict[tuple[str, int], _Held] = {}
        self.reader: _Held | None = None
        self.refused = 0  # outcomes the epoch check refused
        self.progress: Progress | None = None
        self.lost: asyncio.Future[None] | None = None
        self._in_flight: dict[tuple[str, str], _Held] = {}
        self._wake = asyncio.Event()
        self._last_cycle = -math.inf  # monotonic start of the keeper's latest cycle
        self._writer: GroupWriter | None = None
        self._keeper: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LeasedWork:
        self.lost = asyncio.get_running_loop().create_future()
        round_ = await self._db("join", self.board.join)
        log.info(
            "%s: worker %s joined round %d (lease %g s)",
            self.scope.pipeline,
            self.worker,
            round_,
            self.lease_s,
        )
        self._writer = GroupWriter(self._write)
        self._keeper = asyncio.create_task(self._keep())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        if self._writer is not None:
            self._writer.stop()  # commits what is pending first
        try:
            await asyncio.to_thread(self.board.leave)
        except sa.exc.SQLAlchemyError as exc:  # the leases expire by themselves
            log.warning(
                "%s: could not give the leases back: %s",
                self.scope.pipeline,
                str(exc).splitlines()[0],
            )
        finally:
            self.engine.dispose()

    # -- the reader ---------------------------------------------------------------
    async def read(self, batches: AsyncIterator[EventBatch]) -> bool:
        """Read the source into the queue once this worker can take the reader lease, unless
        another worker has read it to the end first; True when this worker did."""
        while True:
            progress = await self._db("read", self.board.progress)
            if progress.read_done:
                return False
            lease = await self._db("lease", self.board.acquire_reader)
            if lease is not None:
                break
            await asyncio.sleep(self.lease_s / 3)
        reader = self.reader = _Held(lease, self._deadline(time.monotonic()))
        async for batch in batches:
            if self.reader is not reader or not self._check(reader):
                return False
            pairs = [(event.store or self.scope.store_id, event) for event in batch.events()]
            if not await self._db("write", self.queue.enqueue, lease, pairs):
                self._lose("the reader's lease was taken over")
                return False
            self._wake.set()
            await self._backlog_drains(reader)
        self.reader = None  # no more renewals: finishing checks the epoch itself
        done = await self._db("write", self.board.finish_read, lease)
        if not done:
            self._lose("the reader's lease was taken over")
        self._wake.set()
        return done

    async def _backlog_drains(self, reader: _Held) -> None:
        """Wait while `MAX_PENDING` events are pending (the keeper renews the lease)."""
        while sum((await self._db("read", self.board.progress)).work.values()) >= MAX_PENDING:
            if self.reader is not reader:
                return
            await asyncio.sleep(self.lease_s / 3)

    # -- the feed -----------------------------------------------------------------
    async def events(self) -> AsyncIterator[Event]:
        """Events of the partitions held, until the round is finished (read, none pending)."""
        while self.lost is None or not self.lost.done():
            event = self._next()
            if event is not None:
                yield event
                continue
            if not any(h.buffer for h in self.held.values()) and await self._refill():
                continue
            progress = self.progress = await self._db("read", self.board.progress)
            if progress.finished:
                return
            if time.monotonic() - self._last_cycle >= WAKE_S:
                self._wake.set()
            await asyncio.sleep(IDLE_S)

    def _next(self) -> Event | None:
        for held in sorted(self.held.values(), key=lambda h: h.in_flight):
            if held.buffer and not held.releasing:
                event = held.buffer.popleft()
                held.in_flight += 1
                self._in_flight[(held.lease.store, event.id)] = held
                return event
        return None

    async def _refill(self) -> bool:
        found = False
        for held in list(self.held.values()):
            if held.releasing:
                continue
            page = await self._db("read", self.queue.take, held.lease, held.after, PAGE)
            if page and self.held.get(held.lease.partition) is held:
                held.after = page[-1][0]
                held.buffer.extend(event for _, event in page)
                found = True
        return found

    def may_send(self, event: Event) -> bool:
        """Whether `event` may be sent now: its partition is still held within its deadline."""
        key = (event.store or self.scope.store_id, event.id)
        held = self._in_flight.get(key)
        if held is not None and self.held.get(held.lease.partition) is held and self._check(held):
            return True
        if held is not None:  # never sent, no outcome: the partition's next holder sends it
            del self._in_flight[key]
            held.in_flight -= 1
        return False

    async def record(self, outcome: Outcome, scope: Scope) -> None:
        """Record an outcome fenced by its lease's epoch (refused if the lease was lost)."""
        held = self._in_flight.pop((outcome.event.store or self.scope.store_id, outcome.event.id))
        held.in_flight -= 1
        assert self._writer is not None
        await self._writer.submit({**outcome_row(scope, self.run_id, outcome), LEASE: held.lease})

    def _write(self, rows: list[dict[str, Any]]) -> None:
        with state_errors(self.url, "write"):
            refused = self.queue.record(rows)
        if refused:
            self.refused += refused
            log.warning(
                "%s: %d outcomes refused: their partition has a newer holder",
                self.scope.pipeline,
                refused,
            )

    # -- the keeper ---------------------------------------------------------------
    async def _keep(self) -> None:
        """Every third of the lease (sooner when the feed is idle): heartbeat, renew, take a
        fair share of the partitions with work, give back the excess."""
        while True:
            try:
                await self._cycle()
            except sa.exc.SQLAlchemyError as exc:  # retried; the deadlines stop us if it lasts
                log.warning(
                    "%s: could not renew leases: %s", self.scope.pipeline, str(exc).splitlines()[0]
                )
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.lease_s / 3)

    async def _cycle(self) -> None:
        for held in [*self.held.values(), *([self.reader] if self.reader else [])]:
            self._check(held)
        started = self._last_cycle = time.monotonic()
        await asyncio.to_thread(self.board.heartbeat)
        reader = self.reader  # the reader may take or finish its lease meanwhile
        mine = [h.lease for h in self.held.values()] + ([reader.lease] if reader else [])
        renewed = set(await asyncio.to_thread(self.board.renew, mine))
        deadline = self._deadline(started)
        if reader is not None and self.reader is reader:
            if reader.lease not in renewed:
                self._lose("the reader's lease was taken over")
                return
            reader.deadline = deadline
        for key, held in list(self.held.items()):
            if held.lease in renewed:
                held.deadline = deadline
            else:  # a newer holder: stop sending for it at once
                log.warning("%s: lost partition %s/%d", self.scope.pipeline, *key)
                del self.held[key]
        progress = self.progress = await asyncio.to_thread(self.board.progress)
        await self._rebalance(progress)

    async def _rebalance(self, progress: Progress) -> None:
        idle = [
            h
            for key, h in self.held.items()
            if h.in_flight == 0 and not h.buffer and (h.releasing or key not in progress.work)
        ]
        if idle:
            await asyncio.to_thread(self.board.release, [h.lease for h in idle])
            for held in idle:
                del self.held[held.lease.partition]
        share = math.ceil(len(progress.work) / max(progress.live_workers, 1))
        working = [h for key, h in self.held.items() if key in progress.work and not h.releasing]
        for held in sorted(working, key=lambda h: h.in_flight)[: max(len(working) - share, 0)]:
            held.releasing = True
            held.buffer.clear()  # not sent here: the next holder takes them from the queue
        started = time.monotonic()
        taken = await asyncio.to_thread(self.board.acquire, share - len(working))
        for lease in taken:
            self.held[lease.partition] = _Held(lease, self._deadline(started))

    async def _db(self, doing: str, function: Callable[..., T], *args: Any) -> T:
        """A call of the lease board or queue in a thread; its errors as `StateError`."""

        def call() -> T:
            with state_errors(self.url, doing):
                return function(*args)

        return await asyncio.to_thread(call)

    # -- deadlines ----------------------------------------------------------------
    def _deadline(self, started: float) -> float:
        return started + self.lease_s * DEADLINE_SHARE

    def _check(self, held: _Held) -> bool:
        """True while `held` is within its deadline; past it, this worker stops for good."""
        if time.monotonic() < held.deadline:
            return True
        self._lose(
            f"its leases ran out ({self.lease_s:g} s) before they could be renewed: "
            "the process was stopped or cut off from the state database for longer"
        )
        return False

    def _lose(self, why: str) -> None:
        """Stop sending anything (every lease is given up) and fail the run with `LeaseLost`."""
        self.held.clear()
        self.reader = None
        if self.lost is not None and not self.lost.done():
            self.lost.set_exception(
                LeaseLost(
                    f"worker {self.worker} stopped: {why}; it sends nothing more and its "
                    "partitions went to the other workers (rerun to rejoin)"
                )
            )
