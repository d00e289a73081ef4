"""Declared column types (`source.columns`, SPEC §3, §9): cast a column, find what does not fit.

A declaration says what a column IS, whatever the source made of it: a CSV column is
read as text and cast here (inference is skipped), a Parquet or SQL column is cast from
its stored type (an SQLite 0/1 column declared `boolean` becomes the same booleans as a
CSV true/false column, so both give the same ids and bodies). A present value that does
not fit makes the row a reject under rule `type` (the validator words it: "order_total
'twelve' is not a float"); a null stays null.

The result has the dtypes every extractor produces (see `etl.extract`):

    string     object (str)          integer   Int64        float  float64
    boolean    boolean               timestamp datetime64[us, UTC]   date   object (date)

What fits, by declared type (text is trimmed first, except for `string`):

    integer    text of digits with an optional sign; whole floats and decimals
    float      text of a decimal number (optionally with an exponent); any number
    boolean    true/false, t/f, yes/no, 1/0 in any case; the integers and floats 0 and 1
    timestamp  ISO 8601 text (naive values are in `event.timezone`); datetimes; dates
    date       YYYY-MM-DD text; dates; datetimes at midnight
    string     anything but nested values: numbers as their decimal text (floats as
               Python writes them, decimals exactly), booleans as true/false,
               timestamps as UTC ISO 8601, dates as YYYY-MM-DD, binary as UTF-8 text
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_INTEGER = r"^[+-]?[0-9]+$"
_FLOAT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_TRUE = frozenset({"true", "t", "yes", "1"})
_FALSE = frozenset({"false", "f", "no", "0"})
#: "a float", "an integer": how a reason names each type.
ARTICLE = {
    "string": "a",
    "integer": "an",
    "float": "a",
    "boolean": "a",
    "timestamp": "a",
    "date": "a",
}

_INT64 = {pa.int64(): pd.Int64Dtype()}
#: (the cast column, positions' mask of present values that do not fit)
Cast = tuple[pd.Series, np.ndarray]


def cast_columns(
    chunk: pd.DataFrame, declared: Mapping[str, str], timezone: str
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """`chunk` with every declared column cast, and each declared column's misfit mask."""
    cast: dict[str, pd.Series] = {}
    misfits: dict[str, np.ndarray] = {}
    for column, kind in declared.items():
        if column in chunk.columns:
            cast[column], misfits[column] = cast_column(chunk[column], kind, timezone)
    return (chunk.assign(**cast) if cast else chunk), misfits


def cast_column(values: pd.Series, kind: str, timezone: str) -> Cast:
    """One column as `kind`; nulls where a value is missing or does not fit (see module doc)."""
    missing = values.isna().to_numpy(dtype=bool)
    if _is_text(values):
        text = values.astype(object).where(~missing, None)
        if kind != "string":
            text = pd.Series(pc.utf8_trim_whitespace(pa.array(text, pa.string())), dtype=object)
            text.index = values.index
            missing = missing | text.isna().to_numpy(dtype=bool) | (text == "").to_numpy(bool)
            text = text.where(~missing, None)
        result = _FROM_TEXT[kind](text, missing, timezone)
    else:
        result = _from_typed(values, kind, missing, timezone)
    result.index = values.index
    return result, ~missing & result.isna().to_numpy(dtype=bool)


def _is_text(values: pd.Series) -> bool:
    if pd.api.types.is_string_dtype(values.dtype) and values.dtype != object:
        return True
    return values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) in (
        "string",
        "empty",
    )


# -- from text (CSV columns, SQL text columns) -------------------------------------------
def _text_matching(text: pd.Series, pattern: str) -> pa.Array:
    """The text as an Arrow array, null where it does not match `pattern`."""
    array = pa.array(text, pa.string())
    fits = pc.fill_null(pc.match_substring_regex(array, pattern), False)
    unsigned = pc.replace_substring_regex(array, r"^\+", "")
    return pc.if_else(fits, unsigned, pa.scalar(None, pa.string()))


def _text_to_integer(text: pd.Series, missing: np.ndarray, timezone: str) -> pd.Series:
    digits = _text_matching(text, _INTEGER)
    result: pd.Series
    try:
        result = pc.cast(digits, pa.int64()).to_pandas(types_mapper=_INT64.get)
    except pa.ArrowInvalid:  # beyond int64: value by value
        result = pd.Series(pd.array([_int(v) for v in digits.to_pylist()], dtype="Int64"))
    floats = _text_to_float(text.where(result.isna().to_numpy(), None), missing, timezone)
    filled: pd.Series = result.fillna(_whole(floats))
    return filled


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    number = int(text)
    return number if -(2**63) <= number < 2**63 else None


def _text_to_float(text: pd.Series, missing: np.ndarray, timezone: str) -> pd.Series:
    numbers = pc.cast(_text_matching(text, _FLOAT), pa.float64())
    return pd.Series(numbers.to_numpy(zero_copy_only=False), dtype="float64")


def _text_to_boolean(text: pd.Series, missing: np.ndarray, timezone: str) -> pd.Series:
    lowered = pc.utf8_lower(pa.array(text, pa.string()))
    truth = pc.if_else(
        pc.is_in(lowered, pa.array(sorted(_TRUE))),
        True,
        pc.if_else(pc.is_in(lowered, pa.array(sorted(_FALSE))), False, pa.scalar(None, pa.bool_())),
    )
    return pd.Series(truth.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get))


def _text_to_timestamp(text: pd.Series, missing: np.ndarray, timezone: str) -> pd.Series:
    from etl.validate import parse_timestamps  # the validator's parser: one reading of ISO 8601

    return parse_timestamps(text, timezone).reset_index(drop=True)


def _text_to_date(text: pd.Series, missing: np.ndarray, timezone: str) -> pd.Series:
    iso = pa.array(text, pa.string())
    strict = pc.if_else(pc.fill_null(pc.match_substring_regex(iso, _DATE), False), iso, None)
    days = pd.to_datetime(pd.Series(strict, dtype=object), format="%Y-%m-%d", errors="coerce")
    return _dates(days)


def _text_to_string(text: pd.Series, missing: np.ndarray, timezone: str) -> pd.Series:
    return text.reset_index(drop=True)


_FROM_TEXT: dict[str, Callable[[pd.Series, np.ndarray, str], pd.Series]] = {
    "integer": _text_to_integer,
    "float": _text_to_float,
    "boolean": _text_to_boolean,
    "timestamp": _text_to_timestamp,
    "date": _text_to_date,
    "string": _text_to_string,
}


# -- from typed columns (Parquet, SQL, inferred CSV) -------------------------------------
def _from_typed(values: pd.Series, kind: str, missing: np.ndarray, timezone: str) -> pd.Series:
    plain = values.reset_index(drop=True)
    dtype = values.dtype
    if kind == "timestamp" and _is_time(dtype):
        if isinstance(dtype, pd.DatetimeTZDtype):
            utc: pd.Series = plain.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
            return utc
        from etl.validate import parse_timestamps

        return parse_timestamps(plain, timezone)
    if kind == "float" and _is_number(dtype):
        return plain.astype("float64")
    if kind == "integer" and _is_number(dtype) and pd.api.types.is_integer_dtype(dtype):
        return plain.astype("Int64")
    if kind == "integer" and pd.api.types.is_float_dtype(dtype):
        return _whole(plain)
    if kind == "boolean" and pd.api.types.is_bool_dtype(dtype):
        return plain.astype("boolean")
    if kind == "boolean" and _is_number(dtype):
        return plain.map({1: True, 0: False}).astype("boolean")
    convert = _PER_VALUE[kind]
    objects = plain.astype(object)
    items = [None if gone else convert(v) for v, gone in zip(objects, missing, strict=True)]
    if kind == "timestamp":  # ISO text, parsed as text columns are (naive in `timezone`)
        from etl.validate import parse_timestamps

        return parse_timestamps(pd.Series(items, dtype=object), timezone)
    return pd.Series(items, dtype=_DTYPES.get(kind, object))


_DTYPES = {"integer": "Int64", "float": "float64", "boolean": "boolean"}


def _is_time(dtype: Any) -> bool:
    return isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype)


def _is_number(dtype: Any) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _whole(floats: pd.Series) -> pd.Series:
    """Whole floats within 2**53 (where a float is exact) as Int64; null otherwise."""
    fits = ((floats == np.trunc(floats)) & (floats.abs() < 2**53)).fillna(False)
    return floats.where(fits).astype("Float64").astype("Int64")


# -- value by value (object columns mixing types, decimals, dates) -----------------------
def _value_to_integer(value: Any) -> int | None:
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating, Decimal)):
        return int(value) if math.isfinite(value) and value == int(value) else None
    if isinstance(value, str):
        floats = _value_to_float(value)
        return _value_to_integer(floats) if floats is not None else None
    return None


def _value_to_float(value: Any) -> float | None:
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating, Decimal)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(Decimal(value.strip())) if value.strip() else None
        except InvalidOperation:
            return None
    return None


def _value_to_boolean(value: Any) -> bool | None:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating, Decimal)):
        return True if value == 1 else False if value == 0 else None
    if isinstance(value, str):
        lowered = value.strip().lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else None
    return None


def _value_to_timestamp(value: Any) -> str | None:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value if isinstance(value, str) else None


def _value_to_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date() if value.time() == dt.time(0) else None
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()) if len(value.strip()) == 10 else None
        except ValueError:
            return None
    return None


def _value_to_string(value: Any) -> str | None:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value)) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, dt.datetime):  # the UTC instant, as events spell timestamps
        utc = value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
        return utc.isoformat() + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):  # a Parquet/SQL binary column of UTF-8 text
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def decimal_text(value: Decimal) -> str:
    """A decimal's exact value as the shortest plain decimal text (no exponent, no
    trailing fraction zeros): `Decimal("1234567.890")` -> "1234567.89", 100.00 -> "100".
    One spelling per value, so a NUMERIC(10,2) and a decimal128(38,4) of the same number
    give the same id and body."""
    text = format(value, "f")  # not normalize(): it rounds to the context's 28 digits
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


_PER_VALUE: dict[str, Callable[[Any], Any]] = {
    "integer": _value_to_integer,
    "float": _value_to_float,
    "boolean": _value_to_boolean,
    "timestamp": _value_to_timestamp,
    "date": _value_to_date,
    "string": _value_to_string,
}


def _dates(days: pd.Series) -> pd.Series:
    """Parsed days as `datetime.date` objects (None where NaT)."""
    return pd.Series([None if pd.isna(d) else d.date() for d in days], dtype=object)
