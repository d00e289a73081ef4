"""Row rules (SPEC §5): normalise every mapped column at once, reject what cannot be sent.

Each rule yields one boolean column (True = the row passes) computed over whole columns
with pandas/pyarrow string kernels; a pandera schema then checks that every row passes
them all, and its report lists every failing row of the chunk at once (each rule's own
column says which rules a row broke). Sentences for the quarantine
file are built only for the failing rows. Library calls that cannot be vectorised
(phonenumbers, email-validator) run once per DISTINCT value, and only for values a
conservative vectorised fast path cannot settle.

Decisions where SPEC is silent:
- snake_case: trim, split camelCase ("orderShipped" -> order_shipped), spaces ->
  "_", lower-case; anything else (hyphens, punctuation) is rejected, never guessed.
  A bad CONSTANT source/event_name rejects every row with the same reason.
- occurred_at: ISO 8601 strings (with/without offset, date-only) and datetime
  dtypes; naive values are in `event.timezone` (a local time that does not exist or
  is ambiguous there is rejected). Epoch numbers (int/float columns) are rejected:
  seconds and milliseconds cannot be told apart safely; convert them in the query.
- external_id: strings are trimmed; integers become their decimal string; whole
  floats (an int column that held a NaN) too ("123.0" -> "123"); other floats and
  booleans are rejected. An empty string counts as absent.
- phone_number: every value is parsed as phonenumbers does (with `default_region`)
  and kept only if it is a possible number, in its E.164 form, at most 15 digits; a
  column-wise fast path settles the values whose answer it can prove
  (etl/identifiers.py), so "+4402079460958" becomes +442079460958, as parse makes it.
- email: email-validator's verdict; plain addresses are settled by regexes and plain
  local parts by asking it once per domain (etl/emails.py), the rest once per distinct
  value. The local part is kept, the domain lower-cased.
- An invalid email or phone rejects the row even when external_id is present.
- properties: nested lists/objects and infinite numbers (JSON has no inf; orjson would
  send null) are rejected; NaN/None/NA are left for the transform to omit.
- `event.id.column` values (rule `id`): non-empty strings <= 255 (integers as decimal
  strings); a row whose id is missing is rejected.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as arrow
import pyarrow.compute as pc

from etl import emails, identifiers, wire
from etl.columns import arrow_array, arrow_series, snake_case
from etl.declared import ARTICLE, cast_columns
from etl.definition import ColumnRef, EventSpec
from etl.quarantine import REJECT_REASON, REJECT_RULE

_PASSED = "passes_every_rule"

#: Rule names from SPEC §5, in the order that picks REJECT_RULE for multi-rule rows.
RULES = (
    "type",
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
#: An offset after a time ("2024-03-01" ends in "-01", which is not one).
_AWARE = r"^\d{4}-\d{2}-\d{2}[T ].*(?:Z|z|[+-]\d{2}(?::?\d{2})?)$"
_ISO_START = r"^\d{4}-\d{2}-\d{2}(?:$|[T ])"

_TEXT = arrow.large_string()

#: Failing row positions -> one sentence per row.
Reasons = Callable[[np.ndarray], pd.Series]


@dataclass(frozen=True)
class Split:
    """A chunk divided into sendable rows and quarantined rows."""

    valid: pd.DataFrame  # normalised, keeping the chunk's index labels
    rejects: pd.DataFrame  # original rows plus REJECT_RULE and REJECT_REASON


@dataclass(frozen=True)
class _Check:
    """One rule's verdict on every row, and how to word it for the failing ones."""

    ok: np.ndarray
    reasons: Reasons


def _text(values: pd.Series) -> pd.Series:
    """Trimmed text of any column, blanks as missing."""
    text = values.astype("string").str.strip()
    return text.where(text.ne(""))


def _quote(values: pd.Series) -> pd.Series:
    return "'" + values.astype("string").fillna("") + "'"


def _mask(values: pd.Series) -> np.ndarray:
    """A nullable boolean Series as a plain array, missing counted as False."""
    return values.fillna(False).to_numpy(dtype=bool)


def _sentences(template: str, values: pd.Series) -> Reasons:
    """Reasons that quote each failing row's value into `template` ({} marks the spot)."""
    before, after = template.split("{}")
    return lambda positions: before + _quote(values.iloc[positions].reset_index(drop=True)) + after


def _per_distinct(text: pd.Series, function: Callable[[str], Any]) -> pd.Series:
    """Apply `function` once per distinct non-null value of `text`."""
    present = text.dropna()
    mapping = {value: function(value) for value in pd.unique(present)}
    return present.map(mapping).reindex(text.index)


def _name_check(
    field: str, spec: str | ColumnRef, chunk: pd.DataFrame
) -> tuple[pd.Series | None, _Check]:
    template = field + " {} is not a snake_case name of at most 255 characters"
    if not isinstance(spec, ColumnRef):
        normal = snake_case(spec)
        fits = re.fullmatch(SNAKE, normal) is not None and len(normal) <= MAX_LENGTH
        reason = template.replace("{}", f"'{spec}'")
        return None, _Check(
            np.full(len(chunk), fits), lambda positions: pd.Series([reason] * len(positions))
        )
    raw = chunk[spec.column]
    names = _per_distinct(raw.astype("string"), snake_case).astype("string")
    ok = _mask(names.str.fullmatch(SNAKE) & names.str.len().le(MAX_LENGTH))
    return names, _Check(ok, _sentences(template, raw))


# -- occurred_at ------------------------------------------------------------------------
def parse_timestamps(raw: pd.Series, timezone: str) -> pd.Series:
    """UTC tz-aware timestamps; NaT where the value is missing or not ISO 8601 (naive
    values are in `timezone`). occurred_at and columns declared `timestamp` use it."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        utc: pd.Series = raw.dt.tz_convert("UTC")
        return utc
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        return _localise(raw, timezone)
    if pd.api.types.is_numeric_dtype(raw.dtype) or pd.api.types.is_bool_dtype(raw.dtype):
        return pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    fast = _parse_fast(raw, timezone)
    return fast if fast is not None else _parse_each(raw, timezone)


def _localise(naive: pd.Series, timezone: str) -> pd.Series:
    local = naive.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
    utc: pd.Series = local.dt.tz_convert("UTC")
    return utc


def _parse_fast(raw: pd.Series, timezone: str) -> pd.Series | None:
    """A text column parsed by Arrow's ISO 8601 reader, aware and naive values apart (a
    part Arrow refuses is parsed by pandas, as `_parse_each` does); missing and non-ISO
    values are NaT. None when the column is not all text (the careful path)."""
    try:
        text = pc.utf8_trim_whitespace(arrow_array(raw))
    except (arrow.ArrowInvalid, arrow.ArrowTypeError, arrow.ArrowNotImplementedError):
        return None
    iso = pc.fill_null(pc.match_substring_regex(text, _ISO_START), False)
    aware = pc.and_(iso, pc.fill_null(pc.match_substring_regex(text, _AWARE), False))
    micros = np.full(len(raw), np.iinfo(np.int64).min, dtype=np.int64)  # NaT
    for part, utc in ((aware, True), (pc.and_(iso, pc.invert(aware)), False)):
        where = part.to_numpy(zero_copy_only=False)
        if not where.any():
            continue
        values = text.filter(part)
        try:
            kind = arrow.timestamp("us", tz="UTC" if utc else None)
            parsed = arrow_series(pc.cast(values, kind), raw.index[where])
        except arrow.ArrowInvalid:
            parsed = pd.to_datetime(
                arrow_series(values, raw.index[where]), format="ISO8601", utc=utc, errors="coerce"
            )
        instants = pd.DatetimeIndex(parsed if utc else _localise(parsed, timezone))
        micros[where] = instants.as_unit("us").asi8
    utc_micros: pd.Series = pd.Series(micros.view("M8[us]"), index=raw.index).dt.tz_localize("UTC")
    return utc_micros


def _parse_each(raw: pd.Series, timezone: str) -> pd.Series:
    """Mixed columns: aware and naive strings parsed apart; Python datetimes as such."""
    result = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    text = raw.astype(object).map(
        lambda v: v.isoformat() if hasattr(v, "isoformat") else v, na_action="ignore"
    )
    # pandas-stubs type Series.eq's operand as a scalar or array, not a class like `str`.
    is_text = text.map(type, na_action="ignore").eq(str)  # type: ignore[arg-type]
    text = text.where(is_text).astype("string").str.strip()
    iso = text.str.contains(_ISO_START, regex=True).fillna(False)
    aware = iso & text.str.contains(_AWARE, regex=True).fillna(False)
    naive = iso & ~aware
    if aware.any():
        parsed = pd.to_datetime(text[aware], format="ISO8601", utc=True, errors="coerce")
        result[aware] = parsed.astype(result.dtype)
    if naive.any():
        parsed = pd.to_datetime(text[naive], format="ISO8601", errors="coerce")
        result[naive] = _localise(parsed, timezone).astype(result.dtype)
    return result


# -- identifiers ------------------------------------------------------------------------
def _id_text(raw: pd.Series, allow_whole_floats: bool) -> tuple[pd.Series, pd.Series]:
    """(decimal/trimmed strings, ok-mask) for id-like columns of any dtype."""
    if pd.api.types.is_bool_dtype(raw.dtype):
        return pd.Series(pd.NA, index=raw.index, dtype="string"), raw.isna()
    if pd.api.types.is_integer_dtype(raw.dtype):
        return raw.astype("Int64").astype("string"), pd.Series(True, index=raw.index)
    if pd.api.types.is_float_dtype(raw.dtype):
        whole = (raw == raw.round()).fillna(False) & raw.abs().lt(2**53).fillna(False)
        text = raw.where(whole).astype("Float64").astype("Int64").astype("string")
        return text, (
            whole if allow_whole_floats else pd.Series(False, index=raw.index)
        ) | raw.isna()
    if pd.api.types.is_string_dtype(raw.dtype) and (
        raw.dtype != object or pd.api.types.infer_dtype(raw, skipna=True) in ("string", "empty")
    ):
        return raw.astype("string").str.strip(), pd.Series(True, index=raw.index)
    kinds = raw.map(_id_kind, na_action="ignore")
    text = raw.map(_id_value, na_action="ignore").astype("string").str.strip()
    ok = raw.isna() | kinds.eq("ok") | (kinds.eq("float") & allow_whole_floats)
    return text, ok.astype(bool)


def _id_kind(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "bad"
    if isinstance(value, (str, int, np.integer)):
        return "ok"
    if isinstance(value, float) and value.is_integer():
        return "float"
    return "bad"


def _id_value(value: Any) -> str | None:
    kind = _id_kind(value)
    if kind == "float":
        return str(int(value))
    if kind == "ok":
        return value if isinstance(value, str) else str(int(value))
    return None


def _identity_check(have: dict[str, np.ndarray], rows: int) -> _Check:
    """external_id, or else exactly one of email / phone_number (SPEC §5)."""
    none = np.zeros(rows, dtype=bool)
    ext, email, phone = (have.get(n, none) for n in wire.CUSTOMER_IDENTIFIERS)
    both = ~ext & email & phone
    neither = ~ext & ~email & ~phone

    def reasons(positions: np.ndarray) -> pd.Series:
        return pd.Series(
            np.where(
                both[positions],
                "has both email and phone_number but no external_id",
                "has no external_id, email or phone_number",
            )
        )

    return _Check(~(both | neither), reasons)


def _external_id_check(raw: pd.Series) -> tuple[pd.Series, _Check, np.ndarray]:
    """(normalised text, check, present): a value of the wrong kind is present but fails."""
    text, ok = _id_text(raw, allow_whole_floats=True)
    text = text.where(text.ne("")).astype("string")
    present = _mask(raw.notna() & (text.notna() | ~ok))
    check = _Check(
        _mask(ok & text.str.len().le(MAX_LENGTH).fillna(True)),
        _sentences("external_id {} is not a string of at most 255 characters", raw),
    )
    return text, check, present


def _phone_check(text: pd.Series, region: str | None) -> tuple[pd.Series, _Check]:
    """What phonenumbers makes of each value (fast where provable: etl/identifiers.py)."""
    e164 = arrow_series(identifiers.e164(arrow_array(text, _TEXT), region), text.index)
    failed = text.notna().to_numpy() & e164.isna().to_numpy()
    return e164.astype("string"), _Check(~failed, _sentences("phone_number {} is not E.164", text))


def _email_check(text: pd.Series) -> tuple[pd.Series, _Check]:
    """email-validator's verdict on every value (fast where provable: etl/emails.py)."""
    address, why = emails.addresses(text)
    quoted = _sentences("email {} is not a valid address: ", text)
    return address, _Check(
        why.isna().to_numpy(), lambda p: quoted(p) + why.iloc[p].reset_index(drop=True)
    )


_NESTED = (list, dict, tuple, set, np.ndarray)
#: What pandas calls object columns holding one kind of flat value (nothing to check).
_FLAT_KINDS = {"string", "empty", "integer", "boolean", "date", "datetime"}


def _property_problem(value: Any) -> str | None:
    """Why one value of an object column cannot be a property value (None: it can)."""
    if isinstance(value, _NESTED):
        return "is a nested list or object"
    if isinstance(value, (float, Decimal)) and math.isinf(value):
        return "is not a finite number"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "is binary, which JSON cannot carry"
    if isinstance(value, dt.timedelta):
        return "is a duration, which JSON cannot carry"
    return None


def _type_check(
    chunk: pd.DataFrame, misfits: dict[str, np.ndarray], declared: Mapping[str, str]
) -> _Check:
    """Rule `type`: every declared column's value fits its type ("total 'x' is not a float")."""
    ok = np.ones(len(chunk), dtype=bool)
    for bad in misfits.values():
        ok &= ~bad

    def reasons(positions: np.ndarray) -> pd.Series:
        sentences = pd.Series([""] * len(positions), dtype=object)
        for column, bad in misfits.items():
            kind = declared[column]
            where = bad[positions]
            if where.any():
                quoted = _quote(chunk[column].iloc[positions[where]].astype(object).map(str))
                text = f"{column} " + quoted + f" is not {ARTICLE[kind]} {kind}"
                # pandas-stubs take no list of values for a boolean mask; pandas does.
                sentences[where] = [  # type: ignore[call-overload]
                    t if not s else f"{s}; {t}"
                    for s, t in zip(sentences[where], text.to_numpy(dtype=object), strict=True)
                ]
        return sentences

    return _Check(ok, reasons)


class Validator:
    """Checks and normalises chunks for one event definition (SPEC §5).

    `declared` is `source.columns`: those columns are cast first (`etl.declared`), and a
    value that does not fit rejects its row under rule `type`.
    """

    def __init__(self, event: EventSpec, declared: Mapping[str, str] | None = None) -> None:
        self.event = event
        self.declared = dict(declared or {})
        self.identifiers = event.customer.identifier_columns()
        self.properties = {
            **{f"customer.{n}": c for n, c in event.customer.properties.items()},
            **event.properties,
        }
        # One column (every rule passed) rather than one per rule: pandera's report costs
        # ~10 ms per failing column per chunk, and only the failing rows are read from it
        # (the reasons come from each rule's own check). With one check, the eager report
        # lists the same rows as the lazy one, in 10 ms a chunk instead of 70.
        self.schema = pa.DataFrameSchema(
            {_PASSED: pa.Column(bool, pa.Check(lambda ok: ok, error="SPEC §5 rules"))},
            coerce=False,
        )

    def split(self, chunk: pd.DataFrame) -> Split:
        """Divide `chunk` into normalised valid rows and annotated original rejects."""
        original = chunk
        chunk, misfits = cast_columns(chunk, self.declared, self.event.timezone)
        normal, checks = self._derive(chunk)
        if misfits:
            checks["type"] = _type_check(original, misfits, self.declared)
        failing = self._failing({rule: check.ok for rule, check in checks.items()}, len(chunk))
        keep = np.ones(len(chunk), dtype=bool)
        keep[failing] = False
        if len(failing):
            chunk_kept, normal = chunk.iloc[keep], {c: v.iloc[keep] for c, v in normal.items()}
        else:
            chunk_kept = chunk
        valid = chunk_kept.assign(**{column: values.array for column, values in normal.items()})
        return Split(valid=valid, rejects=self._rejects(original, checks, failing))

    def _failing(self, ok: dict[str, np.ndarray], rows: int) -> np.ndarray:
        """Positions of rows that fail any rule, as pandera reports them."""
        passed = np.logical_and.reduce([np.ones(rows, dtype=bool), *ok.values()])
        frame = pd.DataFrame({_PASSED: passed})
        try:
            self.schema.validate(frame)
        except pa.errors.SchemaError as error:
            return np.sort(error.failure_cases["index"].dropna().unique().astype(np.int64))
        return np.array([], dtype=np.int64)

    @staticmethod
    def _rejects(
        chunk: pd.DataFrame, checks: dict[str, _Check], failing: np.ndarray
    ) -> pd.DataFrame:
        """The failing rows as they came, with the first rule broken and every reason."""
        rule = np.full(len(failing), None, dtype=object)
        reason = np.full(len(failing), None, dtype=object)
        for name in RULES:
            check = checks.get(name)
            if check is None:
                continue
            where = ~check.ok[failing]
            if not where.any():
                continue
            text = check.reasons(failing[where]).to_numpy(dtype=object)
            rule[where & pd.isna(rule)] = name
            reason[where] = [
                t if r is None else f"{r}; {t}" for r, t in zip(reason[where], text, strict=True)
            ]
        rejects = chunk.iloc[failing].copy()
        rejects[REJECT_RULE] = rule
        rejects[REJECT_REASON] = reason
        return rejects

    def _derive(self, chunk: pd.DataFrame) -> tuple[dict[str, pd.Series], dict[str, _Check]]:
        """The normalised columns (by source column) and every rule's check."""
        event = self.event
        normal: dict[str, pd.Series] = {}
        checks: dict[str, _Check] = {}
        for field, spec in (("source", event.source), ("event_name", event.event_name)):
            names, checks[field] = _name_check(field, spec, chunk)
            if isinstance(spec, ColumnRef) and names is not None:
                normal[spec.column] = names
        raw = chunk[event.occurred_at]
        when = parse_timestamps(raw, event.timezone)
        normal[event.occurred_at] = when
        checks["occurred_at"] = _Check(
            when.notna().to_numpy(), _sentences("occurred_at {} is not an ISO 8601 timestamp", raw)
        )
        self._identity(chunk, normal, checks)
        checks["properties"] = self._properties(chunk)
        if event.id.column:
            checks["id"] = self._id_column(event.id.column, chunk, normal)
        return normal, checks

    def _identity(
        self, chunk: pd.DataFrame, normal: dict[str, pd.Series], checks: dict[str, _Check]
    ) -> None:
        """The identifier rules; each identifier column normalised in `normal`."""
        columns = self.identifiers
        have: dict[str, np.ndarray] = {}
        if wire.EXTERNAL_ID in columns:
            column = columns[wire.EXTERNAL_ID]
            normal[column], checks["external_id"], have[wire.EXTERNAL_ID] = _external_id_check(
                chunk[column]
            )
        if wire.PHONE_NUMBER in columns:
            text = _text(chunk[columns[wire.PHONE_NUMBER]])
            have[wire.PHONE_NUMBER] = text.notna().to_numpy()
            region = self.event.customer.default_region
            normal[columns[wire.PHONE_NUMBER]], checks["phone_number"] = _phone_check(text, region)
        if wire.EMAIL in columns:
            text = _text(chunk[columns[wire.EMAIL]])
            have[wire.EMAIL] = text.notna().to_numpy()
            normal[columns[wire.EMAIL]], checks["email"] = _email_check(text)
        checks["customer_identity"] = _identity_check(have, len(chunk))

    def _properties(self, chunk: pd.DataFrame) -> _Check:
        problems: dict[str, pd.Series] = {}
        for name, column in self.properties.items():
            values = chunk[column]
            if values.dtype == object:
                if pd.api.types.infer_dtype(values, skipna=True) in _FLAT_KINDS:
                    continue
                found = values.map(_property_problem, na_action="ignore")
            elif pd.api.types.is_timedelta64_dtype(values.dtype):
                found = pd.Series(None, index=values.index, dtype=object)
                found[values.notna()] = "is a duration, which JSON cannot carry"
            elif pd.api.types.is_float_dtype(values.dtype):
                infinite = np.isinf(values.to_numpy(dtype=float, na_value=np.nan))
                if not infinite.any():
                    continue
                found = pd.Series(None, index=values.index, dtype=object)
                found[infinite] = "is not a finite number"
            else:
                continue
            if found.notna().any():
                problems[name] = found
        if not problems:
            return _Check(np.ones(len(chunk), dtype=bool), lambda p: pd.Series([], dtype=object))
        table = pd.DataFrame(
            {f"property {name!r} ": found.to_numpy() for name, found in problems.items()}
        )
        ok = table.isna().all(axis=1).to_numpy()

        def reasons(positions: np.ndarray) -> pd.Series:
            rows = table.iloc[positions].itertuples(index=False, name=None)  # iterrows: 1 ms/row
            return pd.Series(
                [
                    "; ".join(
                        p + v for p, v in zip(table.columns, row, strict=True) if isinstance(v, str)
                    )
                    for row in rows
                ]
            )

        return _Check(ok, reasons)

    def _id_column(self, column: str, chunk: pd.DataFrame, normal: dict[str, pd.Series]) -> _Check:
        text, ok = _id_text(chunk[column], allow_whole_floats=True)
        normal[column] = text
        good = _mask(ok & text.str.len().between(1, MAX_LENGTH))

        def reasons(positions: np.ndarray) -> pd.Series:
            values = text.iloc[positions]
            return pd.Series(
                np.where(
                    values.isna().to_numpy(),
                    f"id column {column!r} is missing",
                    (
                        "id "
                        + _quote(values)
                        + " is not a non-empty string of at most 255 characters"
                    ).to_numpy(),
                )
            )

        return _Check(good, reasons)
