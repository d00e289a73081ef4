"""One store's send pace: evenly spaced slots, never a burst, paused by the API's headers.

aiolimiter's AsyncLimiter is not used: it is a leaky bucket that lets `max_rate`
requests through at once at start-up and after any idle spell. The API's bucket
(and the sandbox's) holds only max(1, int(rate)) tokens, so such a burst at the
exact rate limit is already a 429 risk, and a burst on top of requests admitted
just before is a certain one. Here every request gets its own slot:

    slot = max(previous slot + 1 / pace, paused_until,
               oldest of the last floor(rate) sends + 1 s + MARGIN_S)

The last term guarantees that no trailing 1 s window ever holds more than
floor(rate) sends, whatever the rounding of the spacing. `pace` starts at the
configured rate and adapts (AIMD): a 429 halves it (floor FLOOR_RATE) and every
clean answer lets it creep back up by CREEP_PER_S per second, never above the
configured rate, so an API that allows less than configured converges with few
429s. Slots are handed out one at a time under a FIFO lock; the worker holding
the lock recomputes its slot after every sleep, so a pause that arrives while it
waits moves it too.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

#: Extra room on the 1 s window, for the jitter between our clock and the API's.
MARGIN_S = 0.010
#: How much of a late wake-up still counts as on time (keeps the pace from drifting low).
SLACK_S = 0.005
#: A slot this close is taken at once: a shorter sleep only costs a turn of the event loop,
#: which at high rates would serialise every worker behind the lock.
EARLY_S = 0.001
#: The lowest pace AIMD may fall to, requests/s.
FLOOR_RATE = 0.2
#: Multiplicative decrease on a 429 (at most once per DECREASE_EVERY_S).
DECREASE = 0.5
DECREASE_EVERY_S = 1.0
#: Increase: this fraction of the pace per second of clean answers (+5 %/s).
CREEP_PER_S = 0.05
#: Above this rate the 1 s window bookkeeping is pointless (spacing is sub-millisecond).
WINDOW_MAX = 1000


class Limiter:
    """Hands out send slots at `rate` per second to any number of concurrent workers.

    limiter = Limiter(5.0)
    waited, paused = await limiter.acquire()   # before every request
    limiter.pause(1.0)                         # a 429 said Retry-After: 1
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.pace = rate
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._last = -math.inf
        self._paused_until = -math.inf
        self._decreased_at = -math.inf
        self._clean_at = clock()
        window = math.floor(rate)
        self._window: deque[float] | None = (
            deque(maxlen=window) if 1 <= window <= WINDOW_MAX else None
        )

    async def acquire(self) -> tuple[float, float]:
        """Wait for this request's slot; return (seconds paced, seconds paused) spent waiting."""
        paced = paused = 0.0
        async with self._lock:
            while True:
                now = self._clock()
                slot = self._next_slot()
                if slot <= now + EARLY_S:
                    break
                # The part of this wait spent inside a pause is the API's doing, not ours.
                in_pause = max(0.0, min(slot, self._paused_until) - now)
                paused += in_pause
                paced += slot - now - in_pause
                await self._sleep(slot - now)
            # Spacing counts from the ideal slot, so sleep overshoot does not add up; after an
            # idle spell it counts from (almost) now, so idleness is never saved up as a burst.
            self._last = slot if slot >= now - SLACK_S else now
            if self._window is not None:
                self._window.append(now)
        return paced, paused

    def _next_slot(self) -> float:
        slot = max(self._last + 1.0 / self.pace, self._paused_until)
        window = self._window
        if window is not None and len(window) == window.maxlen:
            slot = max(slot, window[0] + 1.0 + MARGIN_S)
        return slot

    def pause(self, seconds: float) -> float:
        """Hold every slot until `seconds` from now (a pause already longer stays); the end."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)
        return self._paused_until

    def throttled(self) -> None:
        """The API answered 429: slow down (once per DECREASE_EVERY_S, whatever the burst)."""
        now = self._clock()
        if now - self._decreased_at >= DECREASE_EVERY_S:
            self.pace = max(min(FLOOR_RATE, self.rate), self.pace * DECREASE)
            self._decreased_at = now
        self._clean_at = now

    def clean(self) -> None:
        """A request passed without a rate-limit complaint: creep back towards the rate."""
        now = self._clock()
        elapsed = min(1.0, now - self._clean_at)
        self._clean_at = now
        if self.pace < self.rate:
            self.pace = min(self.rate, self.pace * (1.0 + CREEP_PER_S * elapsed))

    def close(self) -> None:
        """Nothing to release in-process (a shared budget closes its connections here)."""
