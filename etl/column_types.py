"""What each mapped column is read as and sent as (SPEC §5, §6): the type table and type drift.

The API's segments compare by type, so a number column that goes out as text (a literal
`NaN` in a CSV once did that) silently matches nothing. `etl validate` prints, for every
mapped column, the type it was read as (declared in `source.columns` or inferred from the
source), the JSON type it is sent as, and its null count; `--report-json` carries the same
as `columns`. The same observations feed type drift: the state store remembers the JSON
type of every property and the type of every id key column, and a run compares against
them (`type_changes`; an undeclared key column whose type changed stops the run, since
every id would change).

Types are named as `source.columns` names them (string, integer, float, boolean,
timestamp, date) plus `decimal` (exact numbers) and `binary`; JSON types are `number`,
`string`, `boolean`, and `string (timestamp)` / `string (date)` for ISO 8601 text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from etl.declared import ARTICLE
from etl.definition import ColumnRef, Pipeline

#: What pandas' infer_dtype calls an object column's values -> our type name.
_INFERRED = {
    "string": "string",
    "integer": "integer",
    "floating": "float",
    "mixed-integer-float": "float",
    "decimal": "decimal",
    "boolean": "boolean",
    "datetime": "timestamp",
    "datetime64": "timestamp",
    "date": "date",
    "bytes": "binary",
    "timedelta": "duration",
    "timedelta64": "duration",
}
_JSON = {
    "string": "string",
    "integer": "number",
    "float": "number",
    "decimal": "number",
    "boolean": "boolean",
    "timestamp": "string (timestamp)",
    "date": "string (date)",
}


def type_of(values: pd.Series) -> str | None:
    """The type name of a column's values; None when it holds no value to tell by."""
    dtype = values.dtype
    if pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(values, skipna=True)
        return None if inferred == "empty" else _INFERRED.get(inferred, "mixed")
    if not values.notna().any():  # cheap for typed columns (a mask or NaN scan)
        return None
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        return "timestamp"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "duration"
    return "string" if pd.api.types.is_string_dtype(dtype) else "mixed"


def json_type(kind: str) -> str:
    """The JSON type a value of type `kind` is sent as."""
    return _JSON.get(kind, kind)


@dataclass(frozen=True)
class ColumnReport:
    """One row of the type table."""

    column: str
    read_as: str
    declared: bool
    sent_as: str  # a JSON type; "not sent" for a column only hashed into ids or filtered on
    nulls: int

    def to_json(self) -> dict[str, Any]:
        """The `columns` entry of `--report-json`."""
        return {
            "column": self.column,
            "read_as": self.read_as,
            "declared": self.declared,
            "sent_as": self.sent_as,
            "nulls": self.nulls,
        }


@dataclass
class TypeCounts:
    """What `ColumnTypes` counted over some chunks, as plain data: a preparing process
    (`etl.runner.processes`) hands this back with each chunk, and the run adds it up."""

    read: dict[str, Counter[str]]
    json: dict[str, Counter[str]]
    hashed: dict[str, str]
    nulls: Counter[str]
    settled: dict[str, str]


class ColumnTypes:
    """Collects, chunk by chunk, what every mapped column was read as and sent as."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.declared = pipeline.source.columns
        self.columns = pipeline.mapped_columns()
        self.sent = _sent_columns(pipeline)
        self.normalised = self.sent - set(_property_columns(pipeline).values())
        self.normalised |= set(pipeline.event.customer.identifier_columns().values())
        event = pipeline.event
        self.keys = () if event.id.column else event.id_key_columns()
        self.read: dict[str, Counter[str]] = {c: Counter() for c in self.columns}
        self.json: dict[str, Counter[str]] = {c: Counter() for c in self.columns}
        self.hashed: dict[str, str] = {}  # id key column -> the type its values were hashed as
        self.nulls: Counter[str] = Counter()
        # A file source holds one Arrow type per column for the whole run, so a column's
        # type, once seen, is settled; an SQL object column may mix types chunk by chunk.
        self.files = pipeline.source.type != "sql"
        self.settled: dict[str, str] = {}

    def observe(self, chunk: pd.DataFrame, valid: pd.DataFrame) -> None:
        """Count one chunk: `chunk` as extracted, `valid` its cast and normalised valid rows.

        Each column's values are inspected once: a column the validator does not rewrite
        (a property) is sent as it was read; only the normalised ones (identifiers,
        occurred_at, ...) are looked at again in `valid`."""
        for column in self.columns:
            nulls, inferred = _nulls_and_type(chunk[column], self.settled.get(column))
            if self.files and inferred is not None:
                self.settled[column] = inferred
            self.nulls[column] += nulls
            read = self.declared.get(column) or inferred
            if read is not None:
                self.read[column][read] += 1
            if not len(valid) or (column not in self.sent and column not in self.keys):
                continue
            kind = type_of(valid[column]) if column in self.normalised else read
            if kind is None:
                continue
            if column in self.sent:
                self.json[column][json_type(kind)] += 1
            if column in self.keys:
                self.hashed.setdefault(column, kind)

    def taken(self) -> TypeCounts:
        """What was counted since the last call; the counts start again from nothing, but
        the settled types are kept (they spare later chunks the inference)."""
        counts = TypeCounts(self.read, self.json, self.hashed, self.nulls, dict(self.settled))
        self.read = {c: Counter() for c in self.columns}
        self.json = {c: Counter() for c in self.columns}
        self.hashed, self.nulls = {}, Counter()
        return counts

    def add(self, counts: TypeCounts) -> None:
        """Count what another process counted, chunks added in source order (the first
        chunk's key types are the ones hashed)."""
        for column in self.columns:
            self.read[column].update(counts.read[column])
            self.json[column].update(counts.json[column])
        for column, kind in counts.hashed.items():
            self.hashed.setdefault(column, kind)
        self.nulls.update(counts.nulls)
        self.settled.update(counts.settled)

    def table(self) -> list[ColumnReport]:
        """The type table, in mapping order."""
        return [
            ColumnReport(
                column,
                _joined(self.read[column]) or "empty",
                column in self.declared,
                (_joined(self.json[column]) or "nothing (all null)")
                if column in self.sent
                else "not sent",
                self.nulls[column],
            )
            for column in self.columns
        ]

    def property_types(self) -> dict[str, str]:
        """Property name (customer properties as `customer.<name>`) -> the JSON type sent."""
        names = _property_columns(self.pipeline)
        return {
            name: _joined(self.json[column]) for name, column in names.items() if self.json[column]
        }


def _nulls_and_type(values: pd.Series, settled: str | None) -> tuple[int, str | None]:
    """(null count, type_of) of an extracted column (`settled`: its type, when known).

    Text columns hold None for null (see `etl.extract`), which one comparison counts;
    other object columns are counted by pandas (NaN, NA, NaT)."""
    if values.dtype != object:
        return int(values.isna().sum()), settled or type_of(values)
    inferred = settled or type_of(values)
    array = values.to_numpy()
    # numpy's stubs take no None operand; an object array compares with it elementwise.
    missing = (
        np.equal(array, None)  # type: ignore[call-overload]
        if inferred == "string"
        else pd.isna(array)
    )
    return int(np.count_nonzero(missing)), inferred


def _property_columns(pipeline: Pipeline) -> dict[str, str]:
    """Property name (customer properties as `customer.<name>`) -> its column."""
    event = pipeline.event
    return {
        **{f"customer.{n}": c for n, c in event.customer.properties.items()},
        **event.properties,
    }


def _joined(kinds: Counter[str]) -> str:
    return " | ".join(sorted(kinds))


def _sent_columns(pipeline: Pipeline) -> set[str]:
    """The columns whose values appear in the body (not those only hashed or filtered on)."""
    event = pipeline.event
    sent = {event.occurred_at, *event.customer.identifier_columns().values()}
    sent |= set(event.customer.properties.values()) | set(event.properties.values())
    sent |= {
        spec.column for spec in (event.source, event.event_name) if isinstance(spec, ColumnRef)
    }
    if event.id.column:
        sent.add(event.id.column)
    return sent


def type_changes(before: dict[str, str], now: dict[str, str]) -> list[dict[str, str]]:
    """The properties sent with another JSON type than the state last recorded."""
    return [
        {"property": name, "before": before[name], "after": kind}
        for name, kind in now.items()
        if name in before and before[name] != kind
    ]


def key_type_problem(
    before: dict[str, str], now: dict[str, str], declared: Mapping[str, str]
) -> str | None:
    """Why the run must stop: an undeclared id key column whose type changed (every id
    hashes its type, so all of them would change and the store would hold every event
    twice); None when the ids are stable."""
    for column, kind in now.items():
        old = before.get(column)
        if old is not None and old != kind and column not in declared:
            return (
                f"event.id.key: column {column!r} was hashed as {old} by earlier runs and is now "
                f"read as {kind}, which would give every event a new id; nothing was sent. "
                f"Declare it to keep the ids stable: source.columns: {{{column}: {old}}} "
                f"(values that are not {ARTICLE.get(old, 'a')} {old} are then rejected under "
                f"rule type)"
            )
    return None
