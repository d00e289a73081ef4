"""The values that flow between stages: a chunk's events (EventBatch), one Event ready
to send, and its Outcome.

Kept apart from every stage so that transform (which makes events), load (which
sends them) and state (which records outcomes) depend on these types and not on
each other.
"""

from __future__ import annotations

import enum
import gc
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class Status(enum.StrEnum):
    """What became of an event; the state store keeps the latest per event id."""

    DELIVERED = "delivered"  # the API answered 2xx
    REJECTED = "rejected"  # the API refused it with a non-retriable 4xx (its message kept)
    FAILED = "failed"  # retries exhausted; sent again first thing next run


def body_hash(body: bytes) -> str:
    """The payload hash the state store compares: equal hashes mean nothing changed."""
    return hashlib.blake2b(body, digest_size=16).hexdigest()


class Event:
    """One request body, ready to post; treat it as read-only.

    A plain slotted class rather than a dataclass: the millions of these a backfill
    creates must be cheap to make, and `payload_hash` is worked out on first use (only
    the state store reads it, so a dry run without state never pays for the hashing).
    """

    __slots__ = ("_payload_hash", "body", "cursor", "id", "store")

    def __init__(
        self,
        id: str,
        body: bytes,
        payload_hash: str | None = None,
        cursor: Any = None,
        store: str | None = None,
    ) -> None:
        self.id = id  # the UUIDv5 (or source-provided) event id, also inside `body`
        self.body = body  # the orjson-encoded wire payload, exactly what is posted
        self._payload_hash = payload_hash
        self.cursor = cursor  # the row's incremental cursor value, for the watermark
        self.store = store  # the row's store when the rows name their stores (SPEC §10)

    @property
    def payload_hash(self) -> str:
        """`body_hash(body)`, unless the event was made with a known hash (read from state)."""
        if self._payload_hash is None:
            self._payload_hash = body_hash(self.body)
        return self._payload_hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        mine = (self.id, self.body, self.payload_hash, self.cursor)
        return mine == (other.id, other.body, other.payload_hash, other.cursor)

    def __repr__(self) -> str:
        return f"Event(id={self.id!r}, body=<{len(self.body)} bytes>, cursor={self.cursor!r})"


#: Bodies per piece of a dry run's output (about 2 MB on realistic bodies).
JSONL_ROWS = 4096


@dataclass(frozen=True)
class EventBatch:
    """A chunk's events column by column, as the transform builds them.

    Event objects are made only where one is needed (a real run's senders, a diff
    against state): a dry run writes the bodies straight from the Arrow buffer, and
    making a million objects and their bytes was a third of its time.
    """

    ids: pa.Array  # large_string
    bodies: pa.Array  # large_binary
    cursors: Sequence[Any] | None = None  # one per event, when the source is incremental
    stores: Sequence[str] | None = None  # one per event, when the rows name their stores

    @classmethod
    def of(cls, events: Sequence[Event]) -> EventBatch:
        """A batch of events that already exist (the failed ones read back from state)."""
        stores = [event.store for event in events]
        return cls(
            pa.array([event.id for event in events], pa.large_string()),
            pa.array([event.body for event in events], pa.large_binary()),
            [event.cursor for event in events],
            stores if any(store is not None for store in stores) else None,  # type: ignore[arg-type]
        )

    def __len__(self) -> int:
        return len(self.ids)

    def events(self) -> list[Event]:
        """Every event as an object, in order."""
        ids, bodies = self.ids.to_pylist(), self.bodies.to_pylist()
        cursors = self.cursors if self.cursors is not None else repeat(None)
        stores = self.stores if self.stores is not None else repeat(None)
        with _collector_paused():
            return list(map(Event, ids, bodies, repeat(None), cursors, stores))

    def take(self, rows: Sequence[int]) -> EventBatch:
        """The events at these positions, in that order."""
        indices = pa.array(rows, pa.int64())
        cursors = [self.cursors[row] for row in rows] if self.cursors is not None else None
        stores = [self.stores[row] for row in rows] if self.stores is not None else None
        return EventBatch(self.ids.take(indices), self.bodies.take(indices), cursors, stores)

    def jsonl(self, rows: int = JSONL_ROWS) -> Iterator[memoryview]:
        """The bodies one per line, each ending in a newline: what a dry run writes, in
        pieces of at most `rows` bodies, so the copy that adds the newlines is a small
        buffer and not a second copy of the whole chunk (18 MB a 50,000-row chunk)."""
        binary = pa.large_binary()
        for start in range(0, len(self.bodies), rows):
            lines = pc.binary_join_element_wise(
                self.bodies.slice(start, rows), pa.scalar(b"\n", binary), pa.scalar(b"", binary)
            )
            _, offsets, data = lines.buffers()
            if data is None:
                continue
            bounds = np.frombuffer(offsets, dtype=np.int64)
            yield memoryview(data)[bounds[lines.offset] : bounds[lines.offset + len(lines)]]


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while a chunk's Events are made: they hold no
    cycles, yet 50,000 new objects set off collections that walk every live object."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one event's trip through the loader."""

    event: Event
    status: Status
    attempts: int  # HTTP requests made for this event in this run
    error: str | None = None  # the API's message or the last transport error; never a secret
