"""Row rules (SPEC §5): normalise every mapped column at once, reject what cannot be sent.

Each rule derives one column of reasons (None = the row passes) with pandas
vectorised operations; a pandera schema then checks those derived columns lazily,
so one chunk reports every failing row and rule at once. Library calls that cannot
be vectorised (phonenumbers, email-validator) run once per DISTINCT value.

Decisions where SPEC is silent:
- snake_case: trim, split camelCase ("orderShipped" -> order_shipped), spaces ->
  "_", lower-case; anything else (hyphens, punctuation) is rejected, never guessed.
  A bad CONSTANT source/event_name rejects every row with the same reason.
- occurred_at: ISO 8601 strings (with/without offset, date-only) and datetime
  dtypes; naive values are in `event.timezone`. Epoch numbers are rejected
  (seconds or milliseconds cannot be told apart safely).
- external_id: strings are trimmed; integers become their decimal string; whole
  floats (an int column that held a NaN) too ("123.0" -> "123"); other floats and
  booleans are rejected. An empty string counts as absent.
- An invalid email or phone rejects the row even when external_id is present.
- `event.id.column` values: non-empty strings <= 255 (integers as decimal strings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import email_validator
import pandas as pd
import pandera.pandas as pa
import phonenumbers

from etl.definition import ColumnRef, EventSpec

REJECT_RULE = "reject_rule"
REJECT_REASON = "reject_reason"

#: Rule names from SPEC §5, in the order that picks REJECT_RULE for multi-rule rows.
RULES = (
    "source",
    "event_name",
    "occurred_at",
    "customer_identity",
    "external_id",
    "phone_number",
    "email",
    "properties",
    "id",
)
MAX_LENGTH = 255
SNAKE = r"^[a-z0-9]+(_[a-z0-9]+)*$"
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_OFFSET = r"(?:Z|z|[+-]\d{2}(?::?\d{2})?)$"
_ISO_START = r"^\d{4}-\d{2}-\d{2}(?:$|[T ])"
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")


@dataclass(frozen=True)
class Split:
    """A chunk divided into sendable rows and quarantined rows."""

    valid: pd.DataFrame  # normalised, keeping the chunk's index labels
    rejects: pd.DataFrame  # original rows plus REJECT_RULE and REJECT_REASON


def snake_case(text: str) -> str:
    """The normalised form of a source or event name (may still fail SNAKE)."""
    return "_".join(_CAMEL.sub(" ", text.strip()).lower().split())


def _snake_series(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.str.replace(_CAMEL.pattern, " ", regex=True).str.lower().str.split().str.join("_")


def _present(values: pd.Series) -> pd.Series:
    """True where a value is non-null and, if text, non-blank."""
    if pd.api.types.is_string_dtype(values.dtype) or values.dtype == object:
        return values.notna() & values.astype("string").str.strip().ne("").fillna(False)
    return values.notna()


def _quote(values: pd.Series) -> pd.Series:
    return "'" + values.astype("string").fillna("") + "'"


def _name_rule(field: str, spec: str | ColumnRef, chunk: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    if isinstance(spec, ColumnRef):
        raw = chunk[spec.column]
    else:
        raw = pd.Series(spec, index=chunk.index, dtype="string")
    normal = _snake_series(raw)
    ok = normal.str.fullmatch(SNAKE).fillna(False) & normal.str.len().le(MAX_LENGTH).fillna(False)
    reason = (field + " " + _quote(raw) + " is not a snake_case name of at most 255 characters").where(~ok)
    return normal, reason


def _occurred_at(raw: pd.Series, timezone: str) -> pd.Series:
    """UTC tz-aware timestamps; NaT where the value is missing or not ISO 8601."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        return raw.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    result = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    if pd.api.types.is_numeric_dtype(raw.dtype) or pd.api.types.is_bool_dtype(raw.dtype):
        return result
    text = raw.map(lambda v: v.isoformat() if hasattr(v, "isoformat") else v, na_action="ignore")
    text = text.where(text.map(type, na_action="ignore").eq(str)).astype("string").str.strip()
    iso = text.str.contains(_ISO_START, regex=True).fillna(False)
    aware = iso & text.str.contains(_OFFSET, regex=True).fillna(False)
    naive = iso & ~aware
    if aware.any():
        parsed = pd.to_datetime(text[aware], format="ISO8601", utc=True, errors="coerce")
        result[aware] = parsed.astype(result.dtype)
    if naive.any():
        parsed = pd.to_datetime(text[naive], format="ISO8601", errors="coerce")
        local = parsed.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
        result[naive] = local.dt.tz_convert("UTC").astype(result.dtype)
    return result


def _id_text(raw: pd.Series, allow_whole_floats: bool) -> tuple[pd.Series, pd.Series]:
    """(decimal/trimmed strings, ok-mask) for id-like columns of any dtype."""
    if pd.api.types.is_bool_dtype(raw.dtype):
        return pd.Series(pd.NA, index=raw.index, dtype="string"), raw.isna()
    if pd.api.types.is_integer_dtype(raw.dtype):
        return raw.astype("Int64").astype("string"), pd.Series(True, index=raw.index)
    if pd.api.types.is_float_dtype(raw.dtype):
        whole = (raw == raw.round()).fillna(False) & raw.abs().lt(2**53).fillna(False)
        text = raw.where(whole).astype("Float64").astype("Int64").astype("string")
        return text, (whole if allow_whole_floats else pd.Series(False, index=raw.index)) | raw.isna()
    if pd.api.types.is_string_dtype(raw.dtype) and raw.dtype != object:
        return raw.astype("string").str.strip(), pd.Series(True, index=raw.index)
    kinds = raw.map(_id_kind, na_action="ignore")
    text = raw.map(_id_value, na_action="ignore").astype("string").str.strip()
    ok = raw.isna() | kinds.eq("ok") | (kinds.eq("float") & allow_whole_floats)
    return text, ok.astype(bool)


def _id_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bad"
    if isinstance(value, str) or (isinstance(value, int)):
        return "ok"
    if isinstance(value, float) and value.is_integer():
        return "float"
    try:
        import numpy as np

        if isinstance(value, np.integer):
            return "ok"
    except ImportError:  # pragma: no cover
        pass
    return "bad"


def _id_value(value: Any) -> str | None:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    return str(int(value)) if _id_kind(value) == "ok" else None


@lru_cache(maxsize=65536)
def _email(value: str) -> tuple[str | None, str | None]:
    """(normalised address, None) or (None, why it is invalid)."""
    try:
        info = email_validator.validate_email(value, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        return None, str(exc).rstrip(".")
    local = value.rsplit("@", 1)[0]
    return f"{local}@{info.domain.lower()}", None


@lru_cache(maxsize=65536)
def _phone(value: str, region: str | None) -> str | None:
    """The E.164 form, or None when the number cannot be one."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164 if _E164.match(e164) else None


def _per_distinct(text: pd.Series, function: Any) -> pd.Series:
    """Apply `function` once per distinct non-null value of `text`."""
    present = text.dropna()
    distinct = pd.unique(present)
    mapping = {value: function(value) for value in distinct}
    return present.map(mapping).reindex(text.index)


_NESTED = (list, dict, tuple, set)


def _nested(value: Any) -> bool:
    return isinstance(value, _NESTED) or type(value).__name__ == "ndarray"


class Validator:
    """Checks and normalises chunks for one event definition (SPEC §5)."""

    def __init__(self, event: EventSpec) -> None:
        self.event = event
        self.identifiers = event.customer.identifier_columns()
        self.properties = {
            **{f"customer.{n}": c for n, c in event.customer.properties.items()},
            **event.properties,
        }
        self.schema = pa.DataFrameSchema(
            {rule: pa.Column(object, pa.Check(lambda s: s.isna(), error=rule), nullable=True) for rule in RULES},
            coerce=False,
        )

    def split(self, chunk: pd.DataFrame) -> Split:
        """Divide `chunk` into normalised valid rows and annotated original rejects."""
        normal, reasons = self._derive(chunk)
        failing = self._failing(reasons)
        valid = normal.loc[~normal.index.isin(failing)]
        bad = reasons.loc[reasons.index.isin(failing)]
        rejects = chunk.loc[bad.index].copy()
        rejects[REJECT_RULE] = bad.notna().idxmax(axis=1).astype(object) if len(bad) else []
        rejects[REJECT_REASON] = bad.apply(lambda row: "; ".join(row.dropna()), axis=1) if len(bad) else []
        return Split(valid=valid, rejects=rejects)

    def _failing(self, reasons: pd.DataFrame) -> pd.Index:
        try:
            self.schema.validate(reasons, lazy=True)
        except pa.errors.SchemaErrors as errors:
            return pd.Index(errors.failure_cases["index"].dropna().unique())
        return pd.Index([])

    def _derive(self, chunk: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        event = self.event
        normal = chunk.copy()
        reasons = pd.DataFrame({rule: pd.Series(None, index=chunk.index, dtype=object) for rule in RULES})
        for field, spec in (("source", event.source), ("event_name", event.event_name)):
            values, reasons[field] = _name_rule(field, spec, chunk)
            if isinstance(spec, ColumnRef):
                normal[spec.column] = values
        raw = chunk[event.occurred_at]
        when = _occurred_at(raw, event.timezone)
        normal[event.occurred_at] = when
        reasons["occurred_at"] = (
            "occurred_at " + _quote(raw) + " is not an ISO 8601 timestamp"
        ).where(when.isna())
        self._identity(chunk, normal, reasons)
        self._properties(chunk, reasons)
        if event.id.column:
            text, ok = _id_text(chunk[event.id.column], allow_whole_floats=True)
            good = ok & text.notna() & text.str.len().between(1, MAX_LENGTH).fillna(False)
            normal[event.id.column] = text
            reasons["id"] = ("id " + _quote(text) + " is not a non-empty string of at most 255 characters").where(~good)
        return normal, reasons.astype(object).where(reasons.notna(), None)

    def _identity(self, chunk: pd.DataFrame, normal: pd.DataFrame, reasons: pd.DataFrame) -> None:
        index = chunk.index
        none = pd.Series(False, index=index)
        have = {name: _present(chunk[column]) for name, column in self.identifiers.items()}
        ext, email, phone = (have.get(n, none) for n in ("external_id", "email", "phone_number"))
        reasons["customer_identity"] = pd.Series(None, index=index, dtype=object)
        reasons.loc[~ext & email & phone, "customer_identity"] = "has both email and phone_number but no external_id"
        reasons.loc[~ext & ~email & ~phone, "customer_identity"] = "has no external_id, email or phone_number"
        if "external_id" in self.identifiers:
            column = self.identifiers["external_id"]
            text, ok = _id_text(chunk[column], allow_whole_floats=True)
            text = text.where(text.ne("")).astype("string")
            good = ok & text.str.len().le(MAX_LENGTH).fillna(True)
            normal[column] = text
            reasons["external_id"] = (
                "external_id " + _quote(chunk[column].astype(str)) + " is not a string of at most 255 characters"
            ).where(~good)
        if "phone_number" in self.identifiers:
            column = self.identifiers["phone_number"]
            text = chunk[column].astype("string").str.strip()
            text = text.where(text.ne(""))
            region = self.event.customer.default_region
            e164 = _per_distinct(text, lambda v: _phone(v, region))
            normal[column] = e164.astype("string")
            reasons["phone_number"] = ("phone_number " + _quote(text) + " is not E.164").where(
                text.notna() & e164.isna()
            )
        if "email" in self.identifiers:
            column = self.identifiers["email"]
            text = chunk[column].astype("string").str.strip()
            text = text.where(text.ne(""))
            result = _per_distinct(text, _email)
            address = result.map(lambda r: r[0], na_action="ignore")
            why = result.map(lambda r: r[1], na_action="ignore")
            normal[column] = address.astype("string")
            reasons["email"] = ("email " + _quote(text) + " is not a valid address: " + why.astype("string")).where(
                why.notna()
            )

    def _properties(self, chunk: pd.DataFrame, reasons: pd.DataFrame) -> None:
        found = pd.Series(None, index=chunk.index, dtype=object)
        for name, column in self.properties.items():
            values = chunk[column]
            if values.dtype != object:
                continue
            nested = values.map(_nested, na_action="ignore").fillna(False).astype(bool)
            text = f"property {name!r} is a nested list or object"
            found = found.where(~nested | found.notna(), text).where(~nested | found.isna(), found + "; " + text)
        reasons["properties"] = found
