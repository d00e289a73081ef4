"""The values that flow between stages: an Event ready to send, and its Outcome.

Kept apart from every stage so that transform (which makes events), load (which
sends them) and state (which records outcomes) depend on these types and not on
each other.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Status(enum.StrEnum):
    """What became of an event; the state store keeps the latest per event id."""

    DELIVERED = "delivered"  # the API answered 2xx
    REJECTED = "rejected"  # the API refused it with a non-retriable 4xx (its message kept)
    FAILED = "failed"  # retries exhausted; sent again first thing next run


@dataclass(slots=True)
class Event:
    """One request body, ready to post; treat it as read-only.

    Not `frozen`: a frozen dataclass sets every field through `object.__setattr__`,
    which tripled the cost of making the millions of these a backfill creates.
    """

    id: str  # the UUIDv5 (or source-provided) event id, also inside `body`
    body: bytes  # the orjson-encoded wire payload, exactly what is posted
    payload_hash: str  # hex digest of `body`; equal hashes mean nothing changed
    cursor: Any = None  # the row's incremental cursor value, for the watermark


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one event's trip through the loader."""

    event: Event
    status: Status
    attempts: int  # HTTP requests made for this event in this run
    error: str | None = None  # the API's message or the last transport error; never a secret
