"""Valid rows -> wire events (SPEC §4): deterministic ids and orjson bodies.

Event id = uuid5(NAMESPACE, canonical([store_id, source, event_name, *key values])).

`canonical` encodes each value as  TAG LENGTH ":" PAYLOAD  (LENGTH = decimal byte
length of the UTF-8 PAYLOAD) and concatenates them:

    null (None, NaN, NA, NaT)  n0:
    bool                       b1:1 / b1:0
    int                        i<len>:<decimal>
    float (not NaN)            f<len>:<repr(float)>      (1.0 is NOT int 1)
    str                        s<len>:<utf-8 text>
    datetime / Timestamp       t<len>:YYYY-MM-DDTHH:MM:SS[.ffffff]Z  (the UTC instant;
                               naive values are taken as already UTC)
    date                       d<len>:YYYY-MM-DD

numpy/pandas scalars encode as their Python equivalents, so a column gives the same
ids whether it is Int64, int64 or object. Customer identifiers and occurred_at are
encoded in their NORMALISED form (E.164, trimmed email with lower-case domain, UTC).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd

from etl import wire
from etl.definition import ColumnRef, EventSpec
from etl.events import Event
from etl.validate import snake_case

#: Fixed forever: changing it changes every event id.
NAMESPACE = uuid.UUID("6f0d3a52-6c1e-5a4b-9d2e-3b7c1e0f4a11")
_NS = NAMESPACE.bytes


def _utc_text(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{value.microsecond:06d}" if value.microsecond else "") + "Z"


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def _encode(value: Any) -> bytes:
    if _is_null(value):
        return b"n0:"
    if isinstance(value, (bool, np.bool_)):
        tag, text = b"b", "1" if value else "0"
    elif isinstance(value, (int, np.integer)):
        tag, text = b"i", str(int(value))
    elif isinstance(value, (float, np.floating)):
        tag, text = b"f", repr(float(value))
    elif isinstance(value, str):
        tag, text = b"s", value
    elif isinstance(value, dt.datetime):
        tag, text = b"t", _utc_text(value)
    elif isinstance(value, dt.date):
        tag, text = b"d", value.isoformat()
    else:
        raise TypeError(f"cannot encode a {type(value).__name__} in an event id")
    data = text.encode("utf-8")
    return tag + str(len(data)).encode() + b":" + data


def canonical(values: Sequence[Any]) -> bytes:
    """The documented, type-tagged encoding of id key values (see module docstring)."""
    return b"".join(_encode(value) for value in values)


def _uuid5(name: bytes) -> str:
    digest = bytearray(hashlib.sha1(_NS + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(digest)))


def event_id(store_id: str, source: str, event_name: str, key_values: Sequence[Any]) -> str:
    """The id of one row (reference implementation)."""
    return _uuid5(canonical([store_id, source, event_name, *key_values]))


def _wire_values(values: pd.Series) -> list[Any]:
    """A column as JSON-native Python values (None for nulls, ISO text for times)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values.dtype):
        return _utc_column(values)
    out = values.astype(object).tolist()
    return [_native(v) for v in out]


def _utc_column(values: pd.Series) -> list[Any]:
    """Vectorised `_utc_text` for a datetime column (None for NaT)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC")
    base = values.dt.strftime("%Y-%m-%dT%H:%M:%S")
    micro = values.dt.microsecond
    text = base.where(micro.eq(0), base + "." + micro.astype("Int64").astype("string").str.zfill(6)) + "Z"
    return text.astype(object).where(values.notna(), None).tolist()


def _key_column(values: pd.Series) -> list[bytes]:
    """The canonical bytes of every value of one key column."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values.dtype):
        return [
            b"n0:" if v is None else b"t" + str(len(v)).encode() + b":" + v.encode() for v in _utc_column(values)
        ]
    return [_encode(v) for v in values.astype(object).tolist()]


def _native(value: Any) -> Any:
    if _is_null(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dt.datetime):
        return _utc_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


class Transformer:
    """Turns validated, normalised rows into Events for one event definition."""

    def __init__(self, event: EventSpec, store_id: str, cursor: str | None = None) -> None:
        self.event = event
        self.store_id = store_id
        self.cursor = cursor
        self.identifiers = event.customer.identifier_columns()

    def _name(self, spec: str | ColumnRef, valid: pd.DataFrame) -> list[Any]:
        if isinstance(spec, ColumnRef):
            return valid[spec.column].astype(object).tolist()
        return [snake_case(spec)] * len(valid)

    def to_events(self, valid: pd.DataFrame) -> list[Event]:
        """One Event per row of `valid`, in row order."""
        event = self.event
        sources = self._name(event.source, valid)
        names = self._name(event.event_name, valid)
        when = _wire_values(valid[event.occurred_at])
        if event.id.column:
            ids = valid[event.id.column].astype(object).tolist()
        else:
            keys = [_key_column(valid[c]) for c in event.id_key_columns()]
            prefix = _encode(self.store_id)
            ids = [
                _uuid5(prefix + _encode(s) + _encode(n) + b"".join(row))
                for s, n, row in zip(sources, names, zip(*keys, strict=True) if keys else [()] * len(valid), strict=True)
            ]
        idents = {name: _wire_values(valid[c]) for name, c in self.identifiers.items()}
        cprops = {n: _wire_values(valid[c]) for n, c in event.customer.properties.items()}
        props = {n: _wire_values(valid[c]) for n, c in event.properties.items()}
        cursors = _wire_cursor(valid, self.cursor)
        events = []
        for i in range(len(valid)):
            customer = {n: v[i] for n, v in idents.items() if v[i] is not None}
            cp = {n: v[i] for n, v in cprops.items() if v[i] is not None}
            if cp:
                customer[wire.PROPERTIES] = cp
            body: dict[str, Any] = {
                wire.SOURCE: sources[i],
                wire.EVENT_NAME: names[i],
                wire.OCCURRED_AT: when[i],
                wire.ID: ids[i],
                wire.CUSTOMER: customer,
            }
            p = {n: v[i] for n, v in props.items() if v[i] is not None}
            if p:
                body[wire.PROPERTIES] = p
            data = orjson.dumps(body)
            events.append(Event(ids[i], data, hashlib.blake2b(data, digest_size=16).hexdigest(), cursors[i]))
        return events


def _wire_cursor(valid: pd.DataFrame, cursor: str | None) -> list[Any]:
    if cursor is None:
        return [None] * len(valid)
    return [None if _is_null(v) else (v.item() if isinstance(v, np.generic) else v) for v in valid[cursor].astype(object).tolist()]
