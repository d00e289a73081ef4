"""Valid rows -> wire events (SPEC §4): deterministic ids and orjson-equivalent bodies.

Event id = uuid5(NAMESPACE, canonical([store_id, source, event_name, *key values])).

`canonical` encodes each value as  TAG LENGTH ":" PAYLOAD  (LENGTH = decimal byte
length of the UTF-8 PAYLOAD) and concatenates them:

    null (None, NaN, NA, NaT)  n0:
    bool                       b1:1 / b1:0
    int                        i<len>:<decimal>
    float (not NaN)            f<len>:<repr(float)>      (1.0 is NOT int 1)
    decimal (not NaN)          m<len>:<exact digits>     (no exponent, no trailing zeros
                               after the point: Decimal("12.50") -> m4:12.5)
    str                        s<len>:<utf-8 text>
    datetime / Timestamp       t<len>:YYYY-MM-DDTHH:MM:SS[.ffffff]Z  (the UTC instant;
                               naive values are taken as already UTC)
    date                       d<len>:YYYY-MM-DD

numpy/pandas scalars encode as their Python equivalents, so a column gives the same
ids whether it is Int64, int64 or object. Customer identifiers and occurred_at are
encoded in their NORMALISED form (E.164, trimmed email with lower-case domain, UTC).

Speed: `canonical` and `event_id` are the per-value reference; `Transformer` builds the
same bytes column-wise with Arrow string kernels (typed columns) and falls back to the
reference per value only for object columns that mix types. Bodies are assembled the
same way from per-column JSON fragments (strings needing escapes go through orjson), and
leave as an `EventBatch` of Arrow columns; the ids' SHA-1 runs column-wise too
(`etl.sha1`), so no step costs Python time per row.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as arrow
import pyarrow.compute as pc

from etl import sha1, wire
from etl.columns import arrow_array, is_missing, python_scalar, python_values, snake_case
from etl.declared import decimal_text
from etl.definition import ColumnRef, EventSpec
from etl.events import Event, EventBatch

#: Fixed forever: changing it changes every event id.
NAMESPACE = uuid.UUID("6f0d3a52-6c1e-5a4b-9d2e-3b7c1e0f4a11")
_NS = NAMESPACE.bytes
_TEXT = arrow.large_string()
#: (first digit, end digit, position) of the five groups of a UUID's 32 hex digits in its text.
_UUID_GROUPS = ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24))
#: Microseconds per tick of each datetime unit (as a fraction for sub-microsecond units).
_MICROS = {"s": (1_000_000, 1), "ms": (1_000, 1), "us": (1, 1), "ns": (1, 1_000)}
_NEEDS_ESCAPE = r'["\\\x00-\x1f]'


def _utc_text(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{value.microsecond:06d}" if value.microsecond else "") + "Z"


def _encode(value: Any) -> bytes:
    if is_missing(value):
        return b"n0:"
    if isinstance(value, (bool, np.bool_)):
        tag, text = b"b", "1" if value else "0"
    elif isinstance(value, (int, np.integer)):
        tag, text = b"i", str(int(value))
    elif isinstance(value, (float, np.floating)):
        tag, text = b"f", repr(float(value))
    elif isinstance(value, decimal.Decimal):
        tag, text = b"m", decimal_text(value)
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


def _wire_value(value: Any) -> Any:
    """One value as orjson serialises it on the wire (None for nulls)."""
    value = python_scalar(value)
    if isinstance(value, dt.datetime):
        return _utc_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):  # the exact number, as JSON spells it
        return orjson.Fragment(decimal_text(value))
    return value


# -- columns as Arrow arrays ---------------------------------------------------------------
def _is_time(values: pd.Series) -> bool:
    return isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(
        values.dtype
    )


#: Object columns whose non-null values are all of one kind, and their Arrow type.
_OBJECT_KINDS = {
    "string": _TEXT,
    "empty": _TEXT,
    "integer": arrow.int64(),
    "boolean": arrow.bool_(),
    "floating": arrow.float64(),
}


def _typed(values: pd.Series) -> arrow.Array | None:
    """The column as an Arrow string/int/float/bool array (nulls where missing), or None
    when it is an object column mixing types, whose values must be encoded one by one
    (Arrow would silently turn [1, 2.5] into floats and change the ids)."""
    if values.dtype == object:
        target = _OBJECT_KINDS.get(pd.api.types.infer_dtype(values, skipna=True))
        if target is None:
            return None
        try:
            return arrow_array(values, target)
        except (arrow.ArrowInvalid, OverflowError):
            return None
    try:
        array = arrow_array(values)
    except (arrow.ArrowInvalid, arrow.ArrowTypeError):
        return None
    kind = array.type
    if arrow.types.is_string(kind) or arrow.types.is_large_string(kind):
        return array.cast(_TEXT)
    if arrow.types.is_floating(kind):
        return array.cast(arrow.float64())
    if arrow.types.is_integer(kind) or arrow.types.is_boolean(kind):
        return array
    return None


def _utc_strings(values: pd.Series) -> arrow.Array:
    """A datetime column as `_utc_text` spells each value (null for NaT)."""
    times = pd.DatetimeIndex(values)  # aware or naive, its int64 ticks count from the UTC epoch
    multiply, divide = _MICROS[times.unit]
    seconds, fraction = np.divmod(times.asi8 * multiply // divide, 1_000_000)
    missing = times.isna()
    stamp = arrow.array(seconds.astype("datetime64[s]"), mask=missing)
    text = pc.utf8_replace_slice(stamp.cast(arrow.string()).cast(_TEXT), 10, 11, "T")
    if fraction.any():
        digits = pc.utf8_lpad(arrow.array(fraction).cast(_TEXT), 6, "0")
        text = pc.if_else(arrow.array(fraction != 0), _join(text, ".", digits), text)
    return _join(text, "Z")


#: Pieces concatenated element-wise: Arrow text arrays (null = missing) and constants.
Parts = list[arrow.Array | str]


def _join(*parts: arrow.Array | str) -> arrow.Array:
    """Element-wise concatenation of arrays and constants (null where any array is null)."""
    merged: Parts = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    scalars = (arrow.scalar(p, _TEXT) if isinstance(p, str) else p for p in merged)
    return pc.binary_join_element_wise(*scalars, arrow.scalar("", _TEXT))


def _from_python(texts: Sequence[str | None]) -> arrow.Array:
    return arrow.array(texts, type=_TEXT)


def _has_nulls(parts: Parts) -> bool:
    return any(isinstance(p, arrow.Array) and p.null_count for p in parts)


# -- id key encoding -------------------------------------------------------------------------
def _key_column(values: pd.Series) -> arrow.Array:
    """The canonical encoding (as text) of every value of one key column."""
    if _is_time(values):
        text = _utc_strings(values)
        return pc.fill_null(_join("t", pc.utf8_length(text).cast(_TEXT), ":", text), "n0:")
    array = _typed(values)
    if array is None or arrow.types.is_floating(array.type):
        return _from_python([_encode(v).decode() for v in values.astype(object).tolist()])
    if arrow.types.is_boolean(array.type):
        encoded = pc.if_else(array, arrow.scalar("b1:1", _TEXT), arrow.scalar("b1:0", _TEXT))
    elif arrow.types.is_integer(array.type):
        digits = array.cast(_TEXT)
        encoded = _join("i", pc.utf8_length(digits).cast(_TEXT), ":", digits)
    else:
        encoded = _join("s", pc.binary_length(array).cast(_TEXT), ":", array)
    return pc.fill_null(encoded, "n0:")


def _uuid_texts(constant: str, names: arrow.Array) -> arrow.Array:
    """uuid5(NAMESPACE, constant + name) of every name (canonical text), formatted
    column-wise; `constant` is the part every row's name starts with."""
    rows = len(names)
    raw = sha1.digests(_NS + constant.encode(), names)[:, :16].copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x50
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    digits = np.frombuffer(raw.tobytes().hex().encode("ascii"), dtype=np.uint8).reshape(rows, 32)
    text = np.full((rows, 36), ord("-"), dtype=np.uint8)
    for start, stop, at in _UUID_GROUPS:
        text[:, at : at + stop - start] = digits[:, start:stop]
    offsets = np.arange(0, 36 * (rows + 1), 36, dtype=np.int64)
    return arrow.Array.from_buffers(
        _TEXT, rows, [None, arrow.py_buffer(offsets), arrow.py_buffer(text)]
    )


# -- JSON ------------------------------------------------------------------------------------
def _may_need_escapes(array: arrow.Array) -> bool:
    """False when no byte of the array's text is a quote, a backslash or a control
    character: one numpy pass over the data buffer, instead of a regex per value."""
    data = array.buffers()[2]
    if data is None:
        return False
    raw = np.frombuffer(data, dtype=np.uint8)
    return bool(((raw < 0x20) | (raw == ord('"')) | (raw == ord("\\"))).any())


def _escaped(array: arrow.Array) -> arrow.Array:
    """The inside of JSON string literals: values with quotes, backslashes or control
    characters escaped by orjson, every other value as it is."""
    if not _may_need_escapes(array):
        return array
    escape = pc.fill_null(pc.match_substring_regex(array, _NEEDS_ESCAPE), False)
    if not pc.any(escape).as_py():
        return array
    inner = [orjson.dumps(v).decode()[1:-1] for v in array.filter(escape).to_pylist()]
    return pc.replace_with_mask(array, escape, _from_python(inner))


def _json(values: pd.Series) -> Parts:
    """Parts spelling every value of a column as JSON (arrays null where the value is missing)."""
    if _is_time(values):
        return ['"', _utc_strings(values), '"']
    array = _typed(values)
    if array is None:
        natives = map(_wire_value, values.astype(object).tolist())
        return [_from_python([None if v is None else orjson.dumps(v).decode() for v in natives])]
    kind = array.type
    if arrow.types.is_boolean(kind):
        return [pc.if_else(array, arrow.scalar("true", _TEXT), arrow.scalar("false", _TEXT))]
    if arrow.types.is_integer(kind):
        return [array.cast(_TEXT)]
    if arrow.types.is_floating(kind):
        text = array.cast(_TEXT)  # shortest round-trip digits, but "1" for 1.0 (not "1e+16")
        numbers = array.to_numpy(zero_copy_only=False)
        if not (np.isfinite(numbers) & (numbers == np.trunc(numbers))).any():
            return [text]
        return [pc.if_else(pc.match_substring_regex(text, r"^-?\d+$"), _join(text, ".0"), text)]
    return ['"', _escaped(array), '"']


def _object(fields: dict[str, Parts]) -> Parts | None:
    """Parts spelling a JSON object per row of the fields present in that row; a single
    array, null where no field is present, when some are missing; None if none ever is."""
    fields = {
        n: p
        for n, p in fields.items()
        if not any(isinstance(a, arrow.Array) and a.null_count == len(a) for a in p)
    }
    if not fields:
        return None
    if not any(_has_nulls(p) for p in fields.values()):
        parts: Parts = ["{"]
        for number, (name, value) in enumerate(fields.items()):
            parts += [("," if number else "") + f'"{name}":', *value]
        return [*parts, "}"]
    # A pair that may be missing is one array, null where its value is missing; the
    # others join in as their parts. A comma comes only after a pair present in that row,
    # and missing pairs join as "" (null_handling="skip" would drop all-null rows in
    # Arrow 26).
    rows = len(next(a for p in fields.values() for a in p if isinstance(a, arrow.Array)))
    seen = np.zeros(rows, dtype=bool)
    pieces: Parts = ["{"]
    for name, value in fields.items():
        key = _after(seen, ",", f'"{name}":')
        if _has_nulls(value):
            pieces.append(_join(key, *value))
            seen |= _present(value)
        else:
            pieces += [key, *value]
            seen[:] = True
    pieces.append("}")
    scalars = (arrow.scalar(p, _TEXT) if isinstance(p, str) else p for p in pieces)
    joined = pc.binary_join_element_wise(*scalars, arrow.scalar("", _TEXT), null_handling="replace")
    return [_null_where_not(joined, seen)]


def _present(parts: Parts) -> np.ndarray:
    """Where every array of `parts` has a value."""
    arrays = [
        p.is_valid().to_numpy(zero_copy_only=False) for p in parts if isinstance(p, arrow.Array)
    ]
    present: np.ndarray = np.logical_and.reduce(arrays)
    return present


def _after(seen: np.ndarray, comma: str, text: str) -> arrow.Array | str:
    """`text`, with `comma` before it in the rows where `seen`."""
    if not seen.any():
        return text
    if seen.all():
        return comma + text
    return pc.if_else(
        arrow.array(seen), arrow.scalar(comma + text, _TEXT), arrow.scalar(text, _TEXT)
    )


def _null_where_not(texts: arrow.Array, valid: np.ndarray) -> arrow.Array:
    """`texts` (which has no nulls) made null where not `valid`, its bytes left in place."""
    if valid.all():
        return texts
    _, offsets, data = texts.buffers()
    bits = np.concatenate([np.zeros(texts.offset, dtype=bool), valid])
    validity = arrow.py_buffer(np.packbits(bits, bitorder="little"))
    return arrow.Array.from_buffers(
        _TEXT, len(texts), [validity, offsets, data], offset=texts.offset
    )


def _member(name: str, value: Parts | None) -> Parts:
    """`,"name":value`, left out where (or wherever) the value is missing."""
    if value is None:
        return []
    if _has_nulls(value):
        return [pc.fill_null(_join(f',"{name}":', *value), "")]
    return [f',"{name}":', *value]


class Transformer:
    """Turns validated, normalised rows into Events for one event definition."""

    def __init__(self, event: EventSpec, store_id: str, store_column: str | None = None) -> None:
        self.event = event
        self.store_id = store_id
        self.store_column = store_column  # each row's store (SPEC §10), hashed like a constant
        self.identifiers = event.customer.identifier_columns()

    def _ids(self, valid: pd.DataFrame) -> tuple[arrow.Array, Parts]:
        """Every row's id, and its JSON parts."""
        if self.event.id.column:
            ids = arrow_array(valid[self.event.id.column], _TEXT)
            return ids, ['"', _escaped(ids), '"']
        store = self.store_column
        parts: Parts = [_key_column(valid[store]) if store else _encode(self.store_id).decode()]
        parts += [_name_key(spec, valid) for spec in (self.event.source, self.event.event_name)]
        parts += [_key_column(valid[column]) for column in self.event.id_key_columns()]
        constant = ""
        while parts and isinstance(parts[0], str):
            constant += parts.pop(0)
        names = _join(*parts) if parts else arrow.array([""] * len(valid), _TEXT)
        ids = _uuid_texts(constant, names)
        return ids, ['"', ids, '"']

    def to_batch(self, valid: pd.DataFrame, cursors: pd.Series | None = None) -> EventBatch:
        """The events of every row of `valid`, in row order.

        `cursors` are the rows' incremental cursor values as the source gave them, not as
        validation normalised them (a text `shipped_at` that is also `occurred_at` becomes
        a UTC timestamp in `valid`): the watermark is compared with the source's own
        values on the next run (SPEC §6), and a normalised one would not compare right.
        """
        if not len(valid):
            return EventBatch.of([])
        event = self.event
        ids, id_json = self._ids(valid)
        customer = {n: _json(valid[c]) for n, c in self.identifiers.items()}
        customer_properties = _object(
            {n: _json(valid[c]) for n, c in event.customer.properties.items()}
        )
        if customer_properties is not None:
            customer[wire.PROPERTIES] = customer_properties
        body = _join(
            f'{{"{wire.SOURCE}":',
            *_name_json(event.source, valid),
            f',"{wire.EVENT_NAME}":',
            *_name_json(event.event_name, valid),
            f',"{wire.OCCURRED_AT}":',
            *_json(valid[event.occurred_at]),
            f',"{wire.ID}":',
            *id_json,
            f',"{wire.CUSTOMER}":',
            *(_object(customer) or ["{}"]),
            *_member(
                wire.PROPERTIES, _object({n: _json(valid[c]) for n, c in event.properties.items()})
            ),
            "}",
        )
        stores = valid[self.store_column].astype(str).tolist() if self.store_column else None
        marks = python_values(cursors) if cursors is not None else None
        return EventBatch(ids, body.cast(arrow.large_binary()), marks, stores)

    def to_events(self, valid: pd.DataFrame) -> list[Event]:
        """One Event per row of `valid`, in row order."""
        return self.to_batch(valid).events()


def _name_key(spec: str | ColumnRef, valid: pd.DataFrame) -> arrow.Array | str:
    """The canonical encoding of a normalised source/event_name (a constant or a column)."""
    if isinstance(spec, ColumnRef):
        return _key_column(valid[spec.column])
    return _encode(snake_case(spec)).decode()


def _name_json(spec: str | ColumnRef, valid: pd.DataFrame) -> Parts:
    """The JSON of a normalised source/event_name (a constant or a column)."""
    if isinstance(spec, ColumnRef):
        return _json(valid[spec.column])
    return [orjson.dumps(snake_case(spec)).decode()]
