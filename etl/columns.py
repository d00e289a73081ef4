"""Column helpers both `validate` and `transform` use, so neither imports the other.

A name's normal form (SPEC §5 snake_case) and a pandas column as one Arrow array.
"""

from __future__ import annotations

import re

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
