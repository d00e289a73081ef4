"""The column helpers every stage shares (etl/columns.py): the scalar converter above all,
which makes a cursor compare and a value encode alike whatever column type it came from."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest

from etl.columns import is_missing, python_scalar, python_values, snake_case


@pytest.mark.parametrize(
    "value",
    [None, pd.NA, pd.NaT, float("nan"), np.float32("nan"), Decimal("NaN")],
    ids=["none", "na", "nat", "nan", "numpy-nan", "decimal-nan"],
)
def test_every_kind_of_null_is_missing_and_becomes_none(value: Any) -> None:
    assert is_missing(value)
    assert python_scalar(value) is None


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        pytest.param(np.int64(7), 7, id="numpy-int"),
        pytest.param(np.float64(2.5), 2.5, id="numpy-float"),
        pytest.param(np.bool_(True), True, id="numpy-bool"),
        pytest.param(Decimal("1.50"), Decimal("1.50"), id="decimal"),
        pytest.param("x", "x", id="str"),
    ],
)
def test_numpy_scalars_become_python_values(value: Any, plain: Any) -> None:
    converted = python_scalar(value)
    assert converted == plain and type(converted) is type(plain)


def test_a_timestamp_stays_a_timestamp_with_its_nanoseconds() -> None:
    stamp = pd.Timestamp("2024-03-01T10:00:00.000000001Z")
    assert python_scalar(stamp) is stamp  # a datetime already; to_pydatetime would cut the ns


def test_a_columns_values_in_order_with_nulls_as_none() -> None:
    times = pd.Series(pd.to_datetime(["2024-03-01T10:00:00Z", None], utc=True))
    assert python_values(times) == [datetime(2024, 3, 1, 10, tzinfo=UTC), None]
    assert python_values(pd.Series([1, None, 3], dtype="Int64")) == [1, None, 3]
    assert python_values(pd.Series([1.5, float("nan")])) == [1.5, None]


def test_snake_case_splits_camel_case_and_spaces() -> None:
    assert snake_case("  Order ShippedAt ") == "order_shipped_at"
