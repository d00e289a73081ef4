"""`etl init SOURCE`: a starter pipeline written from what a source holds (SPEC §2).

A new user's first definition is the hardest one: which column is the customer, which
timestamp is the event's, which one moves when a row changes. This module reads the
source's columns and a sample of its rows through the project's own extractors (so the
types are the ones a run sees), guesses each mapping from names and values, and writes
YAML whose every guess carries a comment saying why, for the user to check. What it
writes passes `etl validate` (exit 0 or 1, never a definition error).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import SecretStr

from etl.definition import SourceSpec
from etl.errors import DefinitionError

#: Rows sampled for the guesses.
SAMPLE_ROWS = 1000
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")
_CUSTOMER_ID = (
    "customer_id",
    "customer_external_id",
    "external_id",
    "user_id",
    "client_id",
    "member_id",
    "shopper_id",
    "account_id",
    "customer",
    "user",
)
_CURSOR = (
    "updated_at",
    "modified_at",
    "last_modified",
    "last_modified_at",
    "updated",
    "changed_at",
)
_EVENT_NAME = ("event_name", "event_type", "event", "type", "action")
_CUSTOMER_PROPERTIES = ("first_name", "last_name", "full_name", "name")


@dataclass
class Guess:
    """The mapping guessed for a source; `why` holds the comment of each guessed key."""

    columns: dict[str, str]  # column -> "type read, e.g. example"
    occurred_at: str
    external_id: str | None = None
    email: str | None = None
    phone_number: str | None = None
    default_region: str | None = None
    cursor: str | None = None
    event_name_column: str | None = None
    id_key: str | None = None
    customer_properties: list[str] = field(default_factory=list)
    properties: list[str] = field(default_factory=list)
    why: dict[str, str] = field(default_factory=dict)


def sample(source: SourceSpec) -> pd.DataFrame:
    """The first rows of the source, typed as a run reads them."""
    from etl.extract import open_extractor

    extractor = open_extractor(source)
    columns = extractor.columns()
    for frame in extractor.chunks(columns, None):
        return frame.head(SAMPLE_ROWS)
    return pd.DataFrame(columns=columns)


def guess(frame: pd.DataFrame) -> Guess:
    """Guess every mapping of SPEC §3 from column names, dtypes and sample values."""
    names = [str(column) for column in frame.columns]
    if not names:
        raise ValueError("the source has no columns")
    lower = {name.lower(): name for name in names}
    timestamps = [name for name in names if _is_timestamp(frame[name])]
    described = {name: _describe(frame[name], name in timestamps) for name in names}
    found = Guess(columns=described, occurred_at="")
    why = found.why

    found.cursor = next((lower[n] for n in _CURSOR if n in lower), None)
    if found.cursor:
        why["cursor"] = "named like an updated-at column: rows newer than the last run are sent"
    event_columns = [
        n for n in timestamps if n != found.cursor and not n.lower().startswith("created")
    ]
    event_columns += [n for n in timestamps if n != found.cursor and n not in event_columns]
    if event_columns:
        found.occurred_at = event_columns[0]
        why["occurred_at"] = "the first timestamp column that is not the updated-at cursor"
    else:
        found.occurred_at = found.cursor or names[0]
        why["occurred_at"] = "GUESS: no timestamp column found; put the event's time column here"

    found.email = next(
        (n for n in names if "email" in n.lower() or "e_mail" in n.lower()), None
    ) or next((n for n in names if _share(frame[n], lambda v: "@" in v) > 0.8), None)
    if found.email:
        why["email"] = "named like, or holding, email addresses"
    found.phone_number = next(
        (n for n in names if any(word in n.lower() for word in ("phone", "mobile", "msisdn"))), None
    )
    if found.phone_number:
        why["phone_number"] = "named like a phone number"
        if _share(frame[found.phone_number], lambda v: not v.strip().startswith("+")) > 0.2:
            found.default_region = "US"
            why["default_region"] = "GUESS: numbers without +: the country of national numbers"
    found.external_id = next((lower[n] for n in _CUSTOMER_ID if n in lower), None)
    if found.external_id:
        why["external_id"] = "named like the customer's id in your system"
    if not (found.external_id or found.email or found.phone_number):
        found.external_id = names[0]
        why["external_id"] = "GUESS: no customer column found; map external_id, email or phone"

    found.event_name_column = next((lower[n] for n in _EVENT_NAME if n in lower), None)
    if found.event_name_column:
        why["event_name"] = "a column naming the kind of event (normalised to snake_case)"

    used = {
        found.occurred_at,
        found.external_id,
        found.email,
        found.phone_number,
        found.cursor,
        found.event_name_column,
    }
    found.id_key = next(
        (
            n
            for n in names
            if n.lower().endswith("id")
            and n not in used
            and len(frame) > 1
            and frame[n].notna().all()
            and frame[n].is_unique
        ),
        None,
    )
    if found.id_key:
        why["id"] = (
            "unique in the sample: the id hashes it, so a rerun overwrites, never duplicates"
        )
    found.customer_properties = [
        n for n in names if n.lower() in _CUSTOMER_PROPERTIES and n not in used
    ]
    taken = used | set(found.customer_properties)
    found.properties = [n for n in names if n not in taken]
    return found


def render(found: Guess, source_lines: list[str], name: str) -> str:
    """The pipeline YAML, commented."""
    width = max(len(column) for column in found.columns)
    lines = [
        "# Written by `etl init`: check every guess (the comments), then `etl validate` this file.",
        "# Columns in the source (type read, example):",
        *(f"#   {column.ljust(width)}  {text}" for column, text in found.columns.items()),
        f"name: {name}",
        "source:",
        *source_lines,
        "  chunk_size: 50000",
    ]
    why = found.why
    if found.cursor:
        lines += [
            "  incremental:",
            _commented(f"    cursor: {_scalar(found.cursor)}", why["cursor"]),
        ]
    event_name = (
        f"{{column: {_scalar(found.event_name_column)}}}" if found.event_name_column else name
    )
    lines += [
        "event:",
        _commented(f"  source: {name}_import", "a constant naming where the events come from"),
        _commented(
            f"  event_name: {event_name}",
            why.get("event_name", "a constant: the kind of event, in snake_case"),
        ),
        _commented(f"  occurred_at: {_scalar(found.occurred_at)}", why["occurred_at"]),
        _commented("  timezone: UTC", "for timestamps without an offset"),
    ]
    if found.id_key:
        lines += ["  id:", _commented(f"    key: [{_scalar(found.id_key)}]", why["id"])]
    lines.append("  customer:")
    for key in ("external_id", "email", "phone_number", "default_region"):
        value = getattr(found, key)
        if value:
            lines.append(_commented(f"    {key}: {_scalar(value)}", why[key]))
    if found.customer_properties:
        lines.append(_commented("    properties:", "named like a customer attribute"))
        lines += [f"      {_property(c)}: {_scalar(c)}" for c in found.customer_properties]
    if found.properties:
        lines.append(
            _commented("  properties:", "every other column; remove what should not be sent")
        )
        lines += [f"    {_property(c)}: {_scalar(c)}" for c in found.properties]
    lines += [
        _commented("destination:", "the defaults point at `etl sandbox`"),
        "  store_id: ${YOTPO_STORE_ID:-demo-store}",
        _commented("  token: ${YOTPO_TOKEN:-sandbox-token}", "or secret: ${YOTPO_API_SECRET}"),
        _commented(
            "  base_url: ${YOTPO_BASE_URL:-http://127.0.0.1:8787}", "live: https://api.yotpo.com"
        ),
        "  rate_limit: 5",
        "  concurrency: 8",
    ]
    return "\n".join(lines) + "\n"


def scaffold(
    source: str,
    output: Path,
    *,
    table: str | None = None,
    query: str | None = None,
    name: str | None = None,
) -> str:
    """The starter pipeline's text for `source` (a file path or glob, or a SQL URL)."""
    folder = output.resolve().parent
    if "://" in source:
        if (table is None) == (query is None):
            raise _usage("a SQL source needs --table or --query (one of them)")
        if table is not None and not _IDENTIFIER.match(table):
            raise _usage(f"--table {table!r} is not a table name")
        sql = query if query is not None else f"SELECT * FROM {table}"
        spec = SourceSpec(type="sql", url=SecretStr(_url_from_cwd(source)), query=sql)
        url_line = (
            f"  url: {json.dumps(_url_for(source, folder))}"
            if not _has_password(source)
            else _commented("  url: ${WAREHOUSE_URL}", "set it: the URL has a password")
        )
        source_lines = ["  type: sql", url_line, f"  query: {json.dumps(sql)}"]
        default_name = table or "query"
    else:
        if table or query:
            raise _usage("--table and --query go with a SQL URL")
        kind: Literal["csv", "parquet"] = (
            "parquet" if source.lower().endswith((".parquet", ".pq")) else "csv"
        )
        spec = SourceSpec(type=kind, path=os.path.abspath(source))
        relative = os.path.relpath(os.path.abspath(source), folder)
        source_lines = [f"  type: {kind}", f"  path: {_scalar(relative)}"]
        default_name = Path(source).stem
    pipeline_name = name or re.sub(r"[^a-z0-9_]+", "_", default_name.lower()).strip("_") or "events"
    return render(guess(sample(spec)), source_lines, pipeline_name)


def _has_password(url: str) -> bool:
    import sqlalchemy as sa

    try:
        return sa.make_url(url).password is not None
    except sa.exc.ArgumentError:
        return "@" in url


def _commented(line: str, comment: str) -> str:
    return f"{line.ljust(38)}  # {comment}"


def _is_timestamp(values: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(values):
        return True
    return _share(values, _parses_as_timestamp) > 0.8


def _parses_as_timestamp(text: str) -> bool:
    if not re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", text):
        return False
    return not pd.isna(pd.to_datetime(text, errors="coerce", utc=True))


def _share(values: pd.Series, test: Callable[[str], bool]) -> float:
    """The share of non-null text values for which `test` is true."""
    texts = [v for v in values.dropna().head(200) if isinstance(v, str)]
    if not texts:
        return 0.0
    return sum(1 for text in texts if test(text)) / len(texts)


def _describe(values: pd.Series, timestamp: bool) -> str:
    kind = "timestamp" if timestamp and values.dtype == object else str(values.dtype)
    example = next(iter(values.dropna().head(1)), None)
    shown = "(all empty)" if example is None else _short(str(example))
    return f"{kind}, e.g. {shown}"


def _short(text: str) -> str:
    """A sample value for a comment: one line, and never a whole email or phone number."""
    from etl.redact import mask_free_text

    text = mask_free_text(text.replace("\n", " "))
    return text if len(text) <= 40 else text[:37] + "..."


def _property(column: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", column).strip("_") or "value"


def _scalar(text: str) -> str:
    """A YAML scalar: plain when safe, else double-quoted (JSON is valid YAML)."""
    return (
        text
        if _PLAIN.match(text)
        and text.lower() not in ("true", "false", "null", "yes", "no", "on", "off", "~")
        else json.dumps(text)
    )


_FILE_URL = re.compile(
    r"^(?P<scheme>(sqlite|duckdb)(\+\w+)?:///)(?P<path>[^?/][^?]*)(?P<args>\?.*)?$"
)


def _url_from_cwd(url: str) -> str:
    """A relative file URL made absolute against the working directory (where the user is)."""
    match = _FILE_URL.match(url)
    if not match:
        return url
    return f"{match['scheme']}{os.path.abspath(match['path'])}{match['args'] or ''}"


def _url_for(url: str, folder: Path) -> str:
    """A relative file URL rewritten relative to the pipeline's folder (how definitions read it)."""
    match = _FILE_URL.match(url)
    if not match:
        return url
    relative = os.path.relpath(os.path.abspath(match["path"]), folder)
    return f"{match['scheme']}{relative}{match['args'] or ''}"


def _usage(problem: str) -> DefinitionError:
    return DefinitionError("etl init", [("(options)", problem)])
