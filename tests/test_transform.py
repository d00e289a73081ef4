"""Ids and payloads (SPEC §4) on real DataFrames, through Validator then Transformer."""

from __future__ import annotations

import uuid

import orjson
import pandas as pd
import pytest

from etl.definition import EventSpec
from etl.transform import NAMESPACE, Transformer, canonical, event_id
from etl.validate import Validator

EVENT = EventSpec.model_validate(
    {
        "source": "Shopify Backfill",
        "event_name": "order_shipped",
        "occurred_at": "ts",
        "customer": {"external_id": "cid", "email": "email", "properties": {"first_name": "fn"}},
        "properties": {"total": "total"},
    }
)


def _events(frame: pd.DataFrame) -> list:
    return Transformer(EVENT, "store").to_events(Validator(EVENT).split(frame).valid)


def test_uuid5_matches_stdlib() -> None:
    expected = uuid.uuid5(NAMESPACE, canonical(["s", "a", "b", 1, "x"]).decode())
    assert event_id("s", "a", "b", [1, "x"]) == str(expected)


@pytest.mark.parametrize(
    ("left", "right"),
    [(1, "1"), (1, 1.0), (True, 1), (None, "")],
    ids=["int-vs-str", "int-vs-float", "bool-vs-int", "null-vs-empty"],
)
def test_canonical_tags_keep_types_apart(left: object, right: object) -> None:
    assert canonical([left]) != canonical([right])


@pytest.mark.parametrize("dtype", ["Int64", "int64", "object"], ids=["Int64", "int64", "object"])
def test_same_ids_for_any_integer_dtype(dtype: str) -> None:
    frame = pd.DataFrame(
        {"cid": pd.Series([7, 8], dtype=dtype), "email": ["a@b.com", "c@d.com"],
         "ts": ["2024-03-01T12:30:00Z", "2024-03-01"], "fn": ["Ann", None], "total": [12.5, float("nan")]}
    )
    ids = [e.id for e in _events(frame)]
    assert ids == [
        event_id("store", "shopify_backfill", "order_shipped", ["7", "a@b.com", pd.Timestamp("2024-03-01T12:30:00Z")]),
        event_id("store", "shopify_backfill", "order_shipped", ["8", "c@d.com", pd.Timestamp("2024-03-01T00:00:00Z")]),
    ]


def test_payload_exact_and_without_nulls() -> None:
    frame = pd.DataFrame(
        {"cid": pd.array([None], dtype="Int64"), "email": ["Ann+x@EXAMPLE.com "],
         "ts": ["2024-03-01T13:30:00+01:00"], "fn": [None], "total": [float("nan")]}
    )
    (event,) = _events(frame)
    assert orjson.loads(event.body) == {
        "source": "shopify_backfill",
        "event_name": "order_shipped",
        "occurred_at": "2024-03-01T12:30:00Z",
        "id": event.id,
        "customer": {"email": "Ann+x@example.com"},
    }
