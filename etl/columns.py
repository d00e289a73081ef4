"""Column helpers both `validate` and `transform` (and the run) use, so no stage imports
another: a name's normal form (SPEC §5 snake_case), a pandas column as one Arrow array
and an Arrow result as a column, and a pandas/numpy scalar as the plain Python value it
stands for.
"""

from __future__ import annotations

import decimal
import math
import re
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as arrow

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake_case(text: str) -> str:
    """The normalised form of a source or event name (may still fail SNAKE)."""
    return "_".join(_CAMEL.sub(" ", text.strip()).lower().split())


def arrow_array(values: pd.Series, kind: arrow.DataType | None = None) -> arrow.Array:
    """A column as ONE Arrow array (pandas may hold it as several chunks); nulls where
    pandas sees missing values. Raises Arrow's errors when the values do not fit `kind`."""
    array = arrow.array(values, type=kind, from_pandas=True)
    return array.combine_chunks() if isinstance(array, arrow.ChunkedArray) else array


def arrow_series(values: arrow.Array, index: pd.Index) -> pd.Series:
    """An Arrow result as a Series on `index` (positional, never aligned on labels): the
    way back of `arrow_array`."""
    return pd.Series(values.to_pandas().array, index=index)


def is_missing(value: Any) -> bool:
    """Whether a scalar is a null: None, NA, NaT, a float NaN or a Decimal NaN."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, decimal.Decimal):
        return value.is_nan()
    return isinstance(value, float | np.floating) and math.isnan(value)


def python_scalar(value: Any) -> Any:
    """A pandas/numpy scalar as a plain Python value (None for a null), so that a cursor
    compares and a value encodes alike whichever column type it came from. Timestamps
    stay as they are: they are datetimes, and keep their nanoseconds."""
    if is_missing(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def python_values(values: pd.Series) -> list[Any]:
    """`python_scalar` of every value of a column, in order."""
    return [python_scalar(value) for value in values.tolist()]
