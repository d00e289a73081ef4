"""Declared column types (`source.columns`): casts from text and from typed columns, misfits."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from specs import event_spec

from etl.declared import cast_column, decimal_text
from etl.quarantine import REJECT_REASON, REJECT_RULE
from etl.validate import Validator

TEXT = pd.Series(
    ["12", " 7 ", "+3", "12.0", "12.5", "twelve", None, "1e3", "99999999999999999999"], dtype=object
)


@pytest.mark.parametrize(
    ("kind", "values", "misfits"),
    [
        (
            "integer",
            [12, 7, 3, 12, None, None, None, 1000, None],
            [False, False, False, False, True, True, False, False, True],
        ),
        (
            "float",
            [12.0, 7.0, 3.0, 12.0, 12.5, None, None, 1000.0, 1e20],
            [False, False, False, False, False, True, False, False, False],
        ),
        (
            "string",
            ["12", " 7 ", "+3", "12.0", "12.5", "twelve", None, "1e3", "99999999999999999999"],
            [False] * 9,
        ),
    ],
)
def test_text_is_cast_and_what_does_not_fit_is_marked(
    kind: str, values: list[object], misfits: list[bool]
) -> None:
    cast, bad = cast_column(TEXT, kind, "UTC")
    assert [None if pd.isna(v) else v for v in cast.tolist()] == values
    assert bad.tolist() == misfits


def test_booleans_from_text_and_from_sqlite_integers_are_the_same_column() -> None:
    text, bad_text = cast_column(
        pd.Series(["true", "FALSE", None, "yes", "maybe"]), "boolean", "UTC"
    )
    ints, bad_ints = cast_column(
        pd.Series(pd.array([1, 0, None, 1, 2], dtype="Int64")), "boolean", "UTC"
    )
    assert text.dtype == ints.dtype == "boolean"
    assert text.tolist() == ints.tolist() == [True, False, pd.NA, True, pd.NA]
    assert bad_text.tolist() == bad_ints.tolist() == [False, False, False, False, True]


def test_timestamps_naive_in_the_event_time_zone_and_dates_strict() -> None:
    stamps, bad = cast_column(
        pd.Series(["2024-03-01T10:00:00", "2024-03-01T10:00:00+02:00", "soon"]),
        "timestamp",
        "Europe/Paris",
    )
    assert stamps.tolist()[:2] == [
        pd.Timestamp("2024-03-01T09:00:00Z"),
        pd.Timestamp("2024-03-01T08:00:00Z"),
    ]
    assert bad.tolist() == [False, False, True]
    days, bad = cast_column(pd.Series(["2024-03-01", "2024-3-1", None]), "date", "UTC")
    assert days.tolist() == [dt.date(2024, 3, 1), None, None]
    assert bad.tolist() == [False, True, False]


def test_typed_columns_cast_to_strings_and_integers() -> None:
    values = pd.Series(
        [Decimal("10.50"), 3, 2.5, True, dt.datetime(2024, 3, 1, 12, 30), None], dtype=object
    )
    text, bad = cast_column(values, "string", "UTC")
    assert text.tolist() == ["10.5", "3", "2.5", "true", "2024-03-01T12:30:00Z", None]
    assert not bad.any()
    floats, bad = cast_column(pd.Series([2.0, 2.5, np.nan]), "integer", "UTC")
    assert floats.tolist() == [2, pd.NA, pd.NA] and bad.tolist() == [False, True, False]


def test_decimal_text_is_exact_and_one_spelling_per_value() -> None:
    assert decimal_text(Decimal("99999999999999.99")) == "99999999999999.99"
    assert decimal_text(Decimal("1234567.890")) == "1234567.89"
    assert decimal_text(Decimal("1E+2")) == "100"
    assert decimal_text(Decimal("-0.00")) == "0"
    assert decimal_text(Decimal("12345678901234567890123456789012.345678")) == (
        "12345678901234567890123456789012.345678"  # beyond the 28 digits of the context
    )


def test_a_value_that_does_not_fit_rejects_its_row_under_rule_type_and_the_rest_flow() -> None:
    validator = Validator(
        event_spec(properties={"total": "order_total", "n": "n"}),
        {"order_total": "float", "n": "integer"},
    )
    chunk = pd.DataFrame(
        {
            "ts": ["2024-03-01T12:30:00Z"] * 3,
            "cid": ["c-1", "c-2", "c-3"],
            "order_total": ["12.5", "twelve", "NaN?"],
            "n": ["1", "2", "x"],
        }
    )
    split = validator.split(chunk)
    assert split.valid["order_total"].tolist() == [12.5]
    assert split.valid["n"].tolist() == [1]
    assert split.rejects[REJECT_RULE].tolist() == ["type", "type"]
    assert split.rejects[REJECT_REASON].tolist() == [
        "order_total 'twelve' is not a float",
        "order_total 'NaN?' is not a float; n 'x' is not an integer",
    ]
    assert split.rejects["order_total"].tolist() == ["twelve", "NaN?"]  # as the source had it
