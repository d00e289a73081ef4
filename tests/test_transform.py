"""Ids and payloads (SPEC §4) on real DataFrames, through Validator then Transformer."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import uuid
from decimal import Decimal

import orjson
import pandas as pd
import pytest
from specs import event_spec

from etl.definition import EventSpec
from etl.events import EventBatch
from etl.quarantine import REJECT_REASON
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
        {
            "cid": pd.Series([7, 8], dtype=dtype),
            "email": ["a@b.com", "c@d.com"],
            "ts": ["2024-03-01T12:30:00Z", "2024-03-01"],
            "fn": ["Ann", None],
            "total": [12.5, float("nan")],
        }
    )
    ids = [e.id for e in _events(frame)]
    assert ids == [
        event_id(
            "store",
            "shopify_backfill",
            "order_shipped",
            ["7", "a@b.com", pd.Timestamp("2024-03-01T12:30:00Z")],
        ),
        event_id(
            "store",
            "shopify_backfill",
            "order_shipped",
            ["8", "c@d.com", pd.Timestamp("2024-03-01T00:00:00Z")],
        ),
    ]


def test_payload_exact_and_without_nulls() -> None:
    frame = pd.DataFrame(
        {
            "cid": pd.array([None], dtype="Int64"),
            "email": ["Ann+x@EXAMPLE.com "],
            "ts": ["2024-03-01T13:30:00+01:00"],
            "fn": [None],
            "total": [float("nan")],
        }
    )
    (event,) = _events(frame)
    assert orjson.loads(event.body) == {
        "source": "shopify_backfill",
        "event_name": "order_shipped",
        "occurred_at": "2024-03-01T12:30:00Z",
        "id": event.id,
        "customer": {"email": "Ann+x@example.com"},
    }


TYPED = EventSpec.model_validate(
    {
        "source": "app",
        "event_name": {"column": "name"},
        "occurred_at": "ts",
        "customer": {"external_id": "cid", "properties": {"first_name": "fn", "vip": "vip"}},
        "properties": {
            "count": "count",
            "total": "total",
            "ratio": "ratio",
            "gift": "gift",
            "day": "day",
            "at": "at",
            "naive_at": "naive_at",
            "note": "note",
            "missing": "missing",
            "absent": "absent",
            "price": "price",
        },
    }
)


def _typed_frame(**changes: object) -> pd.DataFrame:
    row = {
        "name": "Order Shipped",
        "ts": "2024-03-01T12:30:00+02:00",
        "cid": "c-1",
        "fn": "Zoë 李雷 🎉",
        "vip": True,
        "count": 3,
        "total": 10.0,
        "ratio": 0.1,
        "gift": False,
        "day": dt.date(2024, 3, 1),
        "at": pd.Timestamp("2024-03-01T12:30:00.5+02:00"),
        "naive_at": pd.Timestamp("2024-03-01T12:30:00"),
        "note": 'say "hi"\\\n\tand \x01',
        "missing": float("nan"),
        "absent": None,
        "price": Decimal("12.50"),
    }
    return pd.DataFrame([{**row, **changes}])


def test_payload_types_exact_bytes() -> None:
    frame = _typed_frame()
    (event,) = Transformer(TYPED, "store").to_events(Validator(TYPED).split(frame).valid)
    expected = {
        "source": "app",
        "event_name": "order_shipped",
        "occurred_at": "2024-03-01T10:30:00Z",
        "id": event_id(
            "store", "app", "order_shipped", ["c-1", pd.Timestamp("2024-03-01T10:30:00Z")]
        ),
        "customer": {
            "external_id": "c-1",
            "properties": {"first_name": "Zoë 李雷 🎉", "vip": True},
        },
        "properties": {
            "count": 3,
            "total": 10.0,
            "ratio": 0.1,
            "gift": False,
            "day": "2024-03-01",
            "at": "2024-03-01T10:30:00.500000Z",
            "naive_at": "2024-03-01T12:30:00Z",
            "note": 'say "hi"\\\n\tand \x01',
            "price": 12.5,
        },
    }
    assert event.id == expected["id"]
    assert event.body == orjson.dumps(expected)
    assert event.payload_hash == hashlib.blake2b(event.body, digest_size=16).hexdigest()


def test_payload_columns_typed_by_pandas() -> None:
    frame = pd.concat(
        [_typed_frame(), _typed_frame(count=None, total=float("nan"), fn=None, vip=None)]
    )
    frame = frame.astype({"count": "Int64", "total": "float64", "vip": "boolean"}).reset_index(
        drop=True
    )
    first, second = Transformer(TYPED, "store").to_events(Validator(TYPED).split(frame).valid)
    assert orjson.loads(first.body)["properties"]["count"] == 3
    assert b'"total":10.0' in first.body
    body = orjson.loads(second.body)
    assert "count" not in body["properties"] and "total" not in body["properties"]
    assert body["customer"] == {"external_id": "c-1"}


@pytest.mark.parametrize(
    "value",
    [1e16, 1e-7, -0.0, 123456789.125, 5e-324, 1.7976931348623157e308, 2.0**53],
    ids=["1e16", "1e-7", "minus-zero", "fraction", "tiny", "huge", "2^53"],
)
def test_float_payloads_round_trip(value: float) -> None:
    (event,) = Transformer(TYPED, "store").to_events(
        Validator(TYPED).split(_typed_frame(total=value)).valid
    )
    total = orjson.loads(event.body)["properties"]["total"]
    assert (
        isinstance(total, float)
        and total == value
        and math.copysign(1, total) == math.copysign(1, value)
    )


def test_id_column_is_the_event_id_escaped_in_json() -> None:
    event = event_spec(id={"column": "ref"})
    frame = pd.DataFrame(
        {"ref": ['ord "1"', 42], "cid": ["c", "c"], "ts": ["2024-03-01", "2024-03-01"]}
    )
    events = Transformer(event, "store").to_events(Validator(event).split(frame).valid)
    assert [e.id for e in events] == ['ord "1"', "42"]
    assert [orjson.loads(e.body)["id"] for e in events] == ['ord "1"', "42"]


def test_cursor_values_are_plain_python() -> None:
    frame = pd.DataFrame(
        {
            "cid": ["a", "b"],
            "email": [None, None],
            "ts": ["2024-03-01", "2024-03-02"],
            "fn": [None, None],
            "total": [1.0, 2.0],
            "seq": pd.array([5, None], dtype="Int64"),
        }
    )
    valid = Validator(EVENT).split(frame).valid
    events = Transformer(EVENT, "store").to_batch(valid, frame["seq"].loc[valid.index]).events()
    assert [e.cursor for e in events] == [5, None]
    assert type(events[0].cursor) is int


def test_decimal_nan_is_omitted_and_infinity_rejected() -> None:
    frame = pd.concat(
        [_typed_frame(price=Decimal("NaN")), _typed_frame(price=Decimal("-Infinity"))]
    )
    split = Validator(TYPED).split(frame.reset_index(drop=True))
    assert split.rejects[REJECT_REASON].tolist() == ["property 'price' is not a finite number"]
    (event,) = Transformer(TYPED, "store").to_events(split.valid)
    assert "price" not in orjson.loads(event.body)["properties"]


def test_the_readme_worked_example_of_an_id() -> None:
    assert canonical(["s-1", "shopify_backfill", "order_shipped", "o-17"]) == (
        b"s3:s-1s16:shopify_backfills13:order_shippeds4:o-17"
    )
    assert event_id("s-1", "shopify_backfill", "order_shipped", ["o-17"]) == (
        "abe9c465-eb75-5602-a766-3713da7a0bed"
    )


def test_event_batch_lines_take_and_objects_agree() -> None:
    frame = pd.DataFrame(
        {
            "cid": ["a", "b", "c", "d"],
            "email": ["a@b.com", "c@d.com", "e@f.com", "g@h.com"],
            "ts": ["2024-03-01T12:30:00Z"] * 4,
            "fn": ["Ann", None, "Bo", "Cy"],
            "total": [1.5, 2.0, float("nan"), 4.0],
        }
    )
    batch = Transformer(EVENT, "store").to_batch(Validator(EVENT).split(frame).valid)
    events = batch.events()
    assert b"".join(batch.jsonl()) == b"".join(event.body + b"\n" for event in events)
    picked = batch.take([3, 1])
    assert picked.events() == [events[3], events[1]]
    assert b"".join(picked.jsonl()) == events[3].body + b"\n" + events[1].body + b"\n"
    sliced = EventBatch(batch.ids.slice(1, 2), batch.bodies.slice(1, 2))  # Arrow offset != 0
    assert b"".join(sliced.jsonl()) == events[1].body + b"\n" + events[2].body + b"\n"
    assert b"".join(EventBatch.of([]).jsonl()) == b""
    assert EventBatch.of(events).events() == events
    pieces = [bytes(piece) for piece in batch.jsonl(rows=3)]  # 4 bodies: pieces of 3 and 1
    assert pieces == [b"".join(event.body + b"\n" for event in events[:3]), events[3].body + b"\n"]
