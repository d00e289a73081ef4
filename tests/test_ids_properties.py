"""Hypothesis: ids do not depend on chunking, row order or dtype; bodies never hold a null.

The transformer builds ids and bodies column-wise; `event_id` and orjson over Python
values are the per-row reference every column-wise result must equal.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import orjson
import pandas as pd
import pyarrow as arrow
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from specs import event_spec

from etl.definition import EventSpec, SourceSpec
from etl.extract import open_extractor
from etl.transform import Transformer, event_id
from etl.validate import Validator

EVENT = event_spec(properties={"p": "p"})
ROWS = st.lists(
    st.tuples(
        st.integers(0, 10**12),
        st.integers(0, 10**9),
        st.one_of(st.none(), st.floats(allow_nan=True), st.text()),
    ),
    min_size=1,
    max_size=30,
)
KEYED = event_spec(id={"key": ["k"]})
#: Key values of every kind a source can give; one column mixes them all.
KEYS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_infinity=False),
    st.text(max_size=12),
)


def _events(event: EventSpec, frame: pd.DataFrame) -> list:
    return Transformer(event, "store").to_events(Validator(event).split(frame).valid)


def _ids(rows: list[tuple]) -> list[str]:
    frame = pd.DataFrame(
        {
            "cid": pd.array([r[0] for r in rows], dtype="Int64"),
            "ts": pd.to_datetime([r[1] for r in rows], unit="s", utc=True),
            "p": pd.Series([r[2] for r in rows], dtype=object),
        }
    )
    events = _events(EVENT, frame)
    for event in events:
        body = orjson.loads(event.body)
        assert None not in body["customer"].values()
        assert None not in body.get("properties", {}).values()
    return [e.id for e in events]


@settings(max_examples=30, deadline=None)
@given(ROWS, st.integers(1, 5))
def test_ids_stable_under_chunking_and_order(rows: list[tuple], size: int) -> None:
    whole = _ids(rows)
    chunked = [i for start in range(0, len(rows), size) for i in _ids(rows[start : start + size])]
    assert chunked == whole
    assert sorted(_ids(rows[::-1])) == sorted(whole)


def _keyed(keys: pd.Series) -> list[str]:
    frame = pd.DataFrame({"k": keys, "cid": "c", "ts": "2024-03-01T12:30:00Z"}, index=keys.index)
    return [e.id for e in _events(KEYED, frame)]


@settings(max_examples=60, deadline=None)
@given(st.lists(KEYS, min_size=1, max_size=20))
def test_column_ids_equal_the_reference_for_any_values(keys: list) -> None:
    ids = _keyed(pd.Series(keys, dtype=object))
    assert ids == [event_id("store", "app", "e", [key]) for key in keys]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), min_size=1, max_size=20))
def test_integer_ids_equal_across_dtypes(keys: list) -> None:
    reference = [event_id("store", "app", "e", [key]) for key in keys]
    assert _keyed(pd.Series(keys, dtype="Int64")) == reference
    assert _keyed(pd.Series(keys, dtype=object)) == reference
    if None not in keys:
        assert _keyed(pd.Series(keys, dtype="int64")) == reference


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=12)), min_size=1, max_size=20))
def test_string_ids_equal_across_dtypes(keys: list) -> None:
    reference = [event_id("store", "app", "e", [key]) for key in keys]
    for dtype in ("str", "string", object):
        assert _keyed(pd.Series(keys, dtype=dtype)) == reference


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (pd.Series([1, 2]), pd.Series(["1", "2"])),
        (pd.Series([1, 2]), pd.Series([1.0, 2.0])),
        (pd.Series([True]), pd.Series([1])),
    ],
    ids=["int-vs-str", "int-vs-float", "bool-vs-int"],
)
def test_ids_differ_across_types(left: pd.Series, right: pd.Series) -> None:
    assert not set(_keyed(left)) & set(_keyed(right))


@settings(max_examples=60, deadline=None)
@given(st.lists(VALUES, min_size=1, max_size=20), st.sampled_from(["object", "typed"]))
def test_bodies_equal_orjson_of_the_values_without_nulls(values: list, how: str) -> None:
    series = pd.Series(values, dtype=object)
    if how == "typed":
        series = series.infer_objects()
    frame = pd.DataFrame({"p": series, "cid": "c", "ts": "2024-03-01T12:30:00Z"})
    events = _events(EVENT, frame)
    assert len(events) == len(values)
    for event, value in zip(events, series.tolist(), strict=True):  # as pandas holds them
        body = orjson.loads(event.body)
        assert not _has_null(body)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            assert "properties" not in body
            continue
        sent = body["properties"]["p"]
        assert sent == value and type(sent) is type(value)


def _has_null(node: object) -> bool:
    if isinstance(node, dict):
        return any(_has_null(v) for v in node.values())
    return node is None


def test_csv_parquet_and_sqlite_give_the_same_events(tmp_path: Path) -> None:
    """The same rows through every file/SQL extractor and chunk size: identical events.
    (Values a CSV cannot tell apart from others, like "" from a missing cell, are left out.)"""
    rows = pd.DataFrame(
        {
            "order_id": ["o-1", "o-2", "o-3", "o-4", "o-5"],
            "cid": ["c-1", "c-2", "007", "c-4", "c-5"],
            "ts": [
                "2024-03-01T12:30:00Z",
                "2024-03-01",
                "2024-03-02T08:00:00+02:00",
                "2024-03-03",
                "2024-03-03",
            ],
            "total": [10.0, 10.25, None, 3.5, 0.1],
            "items": [1, 2, 3, 4, 5],
            "note": ["Zoë", 'say "hi"', None, "a,b", "李雷"],
        }
    )
    rows.to_csv(tmp_path / "rows.csv", index=False)
    pq.write_table(arrow.Table.from_pandas(rows, preserve_index=False), tmp_path / "rows.parquet")
    with sqlite3.connect(tmp_path / "rows.sqlite") as connection:
        rows.to_sql("rows", connection, index=False)
    event = event_spec(
        id={"key": ["order_id", "items"]},
        properties={"total": "total", "items": "items", "note": "note"},
    )
    sources = [
        {"type": "csv", "path": str(tmp_path / "rows.csv")},
        {"type": "parquet", "path": str(tmp_path / "rows.parquet")},
        {
            "type": "sql",
            "url": f"sqlite:///{tmp_path / 'rows.sqlite'}",
            "query": "SELECT * FROM rows",
        },
    ]
    seen = []
    for source in sources:
        for size in (2, 5):
            spec = SourceSpec.model_validate({**source, "chunk_size": size})
            chunks = open_extractor(spec).chunks(list(rows.columns), None)
            seen.append([(e.id, e.body) for chunk in chunks for e in _events(event, chunk)])
    assert len(seen[0]) == 5
    assert all(events == seen[0] for events in seen)
