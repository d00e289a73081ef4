"""One store's queue of events, bounded in memory, spilling to a local file (SPEC §10).

The reader must run ahead of any one store: a source sorted by store would otherwise
keep store A's senders busy while every other store waits for the reader to reach its
rows. So the reader never waits on a store: it puts each event in its store's `Feed`,
which holds at most `depth` events in memory and appends the rest, `SPILL_BATCH` at a
time, to a spool file read back in order when the memory part runs dry. Memory is then
bounded by stores x (depth + SPILL_BATCH) events, whatever the source's size or order.

The spool is scratch, not state: a `kill -9` loses it, and the rerun reads the source
again (the watermark did not move, and diffing skips what was delivered).
"""

from __future__ import annotations

import asyncio
import pickle
from collections import deque
from pathlib import Path

from etl.events import Event

#: Events appended to the spool file at a time (and the most held while waiting to be).
SPILL_BATCH = 64

_Record = tuple[str, bytes, object, str | None]


class Feed:
    """An async iterator of one store's events: memory first, then the spool, then new ones."""

    def __init__(self, depth: int, spool: Path) -> None:
        self._depth = depth
        self._memory: deque[Event] = deque()
        self._spilling: list[Event] = []  # newer than everything on disk, not written yet
        self._path = spool
        self._on_disk = 0  # batches written and not read back yet
        self._offset = 0  # where the next unread batch starts
        self._ready = asyncio.Event()
        self._closed = False
        self.spilled = 0  # events that went through the file, for the summary

    def put(self, event: Event) -> None:
        """Take an event without ever waiting: in memory while there is room, else to disk."""
        if not self._on_disk and not self._spilling and len(self._memory) < self._depth:
            self._memory.append(event)
        else:
            self._spilling.append(event)
            self.spilled += 1
            if len(self._spilling) >= SPILL_BATCH:
                self._write()
        self._ready.set()

    def close(self) -> None:
        """No more events will come: the iterator ends once the held ones are taken."""
        self._closed = True
        self._ready.set()

    def discard(self) -> int:
        """Drop every held event (an aborted store); return how many there were."""
        dropped = len(self._memory) + len(self._spilling) + self._on_disk * SPILL_BATCH
        self._memory.clear()
        self._spilling.clear()
        self._on_disk = self._offset = 0
        self._path.unlink(missing_ok=True)
        self._closed = True
        self._ready.set()
        return dropped

    @property
    def held(self) -> int:
        """Events waiting in memory (not on disk): the queue depth for the metrics."""
        return len(self._memory) + len(self._spilling)

    def __aiter__(self) -> Feed:
        return self

    async def __anext__(self) -> Event:
        while True:
            if not self._memory:
                self._refill()
            if self._memory:
                return self._memory.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()

    def _refill(self) -> None:
        """Move the oldest spilled events back into memory, in order."""
        if self._on_disk:
            with self._path.open("rb") as file:
                file.seek(self._offset)
                records: list[_Record] = pickle.load(file)
                self._offset = file.tell()
            self._on_disk -= 1
            self._memory.extend(Event(i, b, None, c, s) for i, b, c, s in records)
            if not self._on_disk:
                self._path.unlink(missing_ok=True)
                self._offset = 0
        elif self._spilling:
            self._memory.extend(self._spilling)
            self._spilling.clear()

    def _write(self) -> None:
        records = [(e.id, e.body, e.cursor, e.store) for e in self._spilling]
        with self._path.open("ab") as file:
            pickle.dump(records, file, protocol=pickle.HIGHEST_PROTOCOL)
        self._on_disk += 1
        self._spilling.clear()
