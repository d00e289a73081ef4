"""A limiter whose slots come from a coordinator shared by every worker of a store.

Same interface and the same even spacing as `etl.load.limiter.Limiter`: each
acquisition reserves the store's next slot in ONE atomic step on the coordinator
(PostgreSQL row lock, or a Redis Lua script), on the coordinator's clock, so the
workers' own clocks never matter:

    slot = max(previous slot + 1 / pace, paused_until, now - SLACK_S,
               oldest of the last floor(rate) slots + 1 s + MARGIN_S)

and the worker sleeps until it. A pause (429, Retry-After, RateLimit-Remaining 0)
is pushed into the shared `paused_until` with the next reservation, so every worker
of the store holds. The pace (AIMD on 429s) stays per process: each process spaces
its own reservations by its own pace, so one that was throttled slows down alone.

Each process holds at most one reservation at a time (a FIFO lock, as in the
in-process limiter): a pause that arrives from another process while it sleeps
lets at most that one request through per process.

Fail closed: while the coordinator cannot be reached nothing is sent; the
reservation is retried with back-off, the outage logged once (and its end), the
wait counted as paused; after PATIENCE_S without it the run aborts (exit 3).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from etl.errors import AbortError
from etl.load.limiter import EARLY_S, WINDOW_MAX, Limiter

log = logging.getLogger(__name__)

#: Extra room on the 1 s window: wider than in-process, for the jitter of waking up
#: in several processes (achieved rate W / (1 + MARGIN_S), i.e. >= 0.98 of the limit).
MARGIN_S = 0.020
#: How far behind "now" the next slot may start: keeps the pace from drifting low.
SLACK_S = 0.005
#: A slot woken up to later than this is given back unused (a busy process, a GIL held
#: by the source's parsing): the window only holds if sends happen at their slots.
LATE_S = 0.010
#: How long sending may wait for an unreachable coordinator before the run aborts.
PATIENCE_S = 300.0
#: Back-off between reservations while the coordinator is unreachable: 0.25 s doubling to 5 s.
RETRY_FIRST_S, RETRY_MAX_S = 0.25, 5.0


class BudgetUnavailable(AbortError):
    """The shared rate budget's coordinator stayed unreachable: nothing more is sent."""


class CoordinatorDown(Exception):
    """The coordinator could not be reached or answered with an error (a driver's message)."""


@dataclass(frozen=True)
class Grant:
    """A reserved slot, in the coordinator's clock (seconds since the epoch)."""

    slot: float
    now: float
    paused_until: float


class Coordinator(Protocol):
    """Where a store's slots are handed out; one atomic reservation per call."""

    #: Where, for messages (host and database, never a password).
    where: str

    def reserve(self, spacing: float, window: int, pause_s: float) -> Grant:
        """Reserve the next slot; raise CoordinatorDown when unreachable."""
        ...

    def now(self) -> float:
        """The coordinator's clock; raise CoordinatorDown when unreachable."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class ClockOffset:
    """The coordinator's clock minus ours, from the quickest of the recent round trips.

    As NTP does: the coordinator read its clock somewhere inside the round trip, so the
    shortest trip bounds the error best; only the last SAMPLES trips count, so a slow
    drift of either clock is followed.
    """

    SAMPLES = 16

    def __init__(self) -> None:
        self._trips: deque[tuple[float, float]] = deque(maxlen=self.SAMPLES)
        self.value = 0.0

    def sample(self, sent: float, answered: float, their_now: float) -> None:
        """One round trip: sent and answered in our clock, their clock read in between."""
        self._trips.append((answered - sent, their_now - (sent + answered) / 2))
        self.value = min(self._trips)[1]


class SharedLimiter(Limiter):
    """`Limiter` whose slots, pauses and 1 s window live in a shared coordinator."""

    def __init__(
        self,
        rate: float,
        coordinator: Coordinator,
        patience_s: float = PATIENCE_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(rate, clock, sleep)
        self.coordinator = coordinator
        self.patience_s = patience_s
        window = math.floor(rate)
        self.window = window if 1 <= window <= WINDOW_MAX else 0
        #: Reservations made, and the seconds each took (for the benchmark).
        self.reservations = 0
        self.reserve_s = 0.0
        self.missed = 0
        self._offset = ClockOffset()

    async def acquire(self) -> tuple[float, float]:
        """Wait for this request's shared slot; return (seconds paced, seconds paused)."""
        paced = paused = 0.0
        async with self._lock:
            while True:
                asked_pause = self._paused_until
                grant, down_s = await self._reserve()
                paused += down_s
                wait = grant.slot - grant.now
                if wait <= EARLY_S:
                    break
                in_pause = max(0.0, min(grant.slot, grant.paused_until) - grant.now)
                paused += in_pause
                paced += wait - in_pause
                # Sleep until the slot in OUR clock: the answer's own way back, and the
                # hop out of the thread, would otherwise make every send late by a varying bit.
                target = grant.slot - self._offset.value
                await self._sleep(max(0.0, target - self._clock()))
                late = self._clock() - target
                if late > LATE_S:
                    self.missed += 1  # woke too late: sent now it could crowd a later 1 s window
                    continue
                if self._paused_until <= asked_pause:
                    break
                # This process was told to pause while it slept: give the slot up, ask again.
        return paced, paused

    async def _reserve(self) -> tuple[Grant, float]:
        """One reservation, retried while the coordinator is down; also the seconds it was."""
        started = self._clock()
        delay = RETRY_FIRST_S
        while True:
            pause_s = max(0.0, self._paused_until - self._clock())
            try:
                if not self.reservations:  # the first trip also connects: a poor clock sample
                    await self._warm_up()
                began = self._clock()
                grant = await asyncio.to_thread(
                    self.coordinator.reserve, 1.0 / self.pace, self.window, pause_s
                )
                ended = self._clock()
            except CoordinatorDown as exc:
                down = self._clock() - started
                if delay == RETRY_FIRST_S:  # the first failure of this outage
                    log.warning(
                        "rate budget at %s unreachable (%s); nothing is sent until it is back",
                        self.coordinator.where,
                        exc,
                    )
                if down + delay > self.patience_s:
                    raise BudgetUnavailable(
                        f"the shared rate budget at {self.coordinator.where} was unreachable for "
                        f"{down:.0f} s ({exc}); nothing more is sent, rerun when it is back"
                    ) from None
                await self._sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)
                continue
            self.reservations += 1
            self.reserve_s += ended - began
            self._offset.sample(began, ended, grant.now)
            down = self._clock() - started if delay != RETRY_FIRST_S else 0.0
            if down:
                log.warning("rate budget at %s is back after %.1f s", self.coordinator.where, down)
            return grant, down

    async def _warm_up(self, trips: int = 3) -> None:
        for _ in range(trips):
            began = self._clock()
            their_now = await asyncio.to_thread(self.coordinator.now)
            self._offset.sample(began, self._clock(), their_now)

    def close(self) -> None:
        """Release the coordinator's connections."""
        self.coordinator.close()
