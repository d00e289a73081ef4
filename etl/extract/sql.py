"""SQL sources: any SQLAlchemy URL, streamed with a server-side cursor in chunks.

The user's query is wrapped, so only the requested columns travel and the incremental
window is applied by the database as bound parameters (never formatted into the SQL):

    SELECT "a", "b" FROM (<query>) AS src WHERE "cursor" > :after AND "cursor" <= :until

Rows keep the query's order. Each column's dtype (see `etl.extract`) is decided once and
kept for the whole result: from the driver's type code where it names the type
(PostgreSQL, MySQL/MariaDB, DuckDB and drivers that report type names), else from the
column's first non-null value (SQLite, whose columns are typed per value). Dialects are
normalised so the same data gives the same frame everywhere:

    DECIMAL/NUMERIC        object of decimal.Decimal (exact; sent as the exact JSON number)
    integers, any width    Int64 (MySQL TINYINT(1) "booleans" are integers there)
    TIMESTAMP / DATETIME   datetime64[us]; WITH TIME ZONE values converted to UTC, so the
                           session's time zone never changes a frame
    SQLite text times      stay text (SQLite has no timestamp type; the validator parses
                           them, and a text watermark compares as text)

A read can be cancelled from another thread (`cancel()`, what SIGTERM calls): PostgreSQL
drivers cancel the running statement server-side, MySQL/MariaDB get `KILL QUERY` from a
second connection, so a stopped run does not wait for a long query to finish (SPEC §7).

A column whose type the driver does not name and that is NULL throughout the first chunk
is typed by one probing query for its first non-null value; only where even that fails
(a dialect without LIMIT) is it object (all None) until its first value, which leaves ids
unchanged, since a null encodes the same whatever the dtype.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from etl.definition import SourceSpec
from etl.errors import SourceError
from etl.extract import Window

#: Dialects whose running statement another thread can stop (`SqlExtractor.cancel`).
_CANCELLABLE = ("postgresql", "mysql", "mariadb")
#: A cancel is sent again this often while the read goes on, for at most CANCEL_FOR_S.
CANCEL_EVERY_S = 0.5
CANCEL_FOR_S = 10.0
#: PostgreSQL type OIDs (the same for every driver) -> type name.
_POSTGRES_TYPES = {
    16: "bool",
    20: "int8",
    21: "int2",
    23: "int4",
    700: "float4",
    701: "float8",
    1700: "numeric",
    18: "char",
    19: "name",
    25: "text",
    1042: "bpchar",
    1043: "varchar",
    1082: "date",
    1114: "timestamp",
    1184: "timestamptz",
}
#: MySQL/MariaDB field type codes (the protocol's, the same for every driver) -> type name.
_MYSQL_TYPES = {
    0: "decimal",
    1: "tinyint",
    2: "smallint",
    3: "int",
    4: "float",
    5: "double",
    7: "timestamp",
    8: "bigint",
    9: "mediumint",
    10: "date",
    12: "datetime",
    13: "year",
    15: "varchar",
    246: "newdecimal",
    253: "var_string",
    254: "string",
}


class SqlExtractor:
    """A query on a SQLAlchemy URL, read in chunks of `chunk_size` rows."""

    def __init__(self, source: SourceSpec) -> None:
        assert source.url is not None and source.query is not None
        self.source = source
        self._url = source.url.get_secret_value()
        self.query = source.query.strip().rstrip(";").strip()
        self._reading: sa.Connection | None = None  # the connection `chunks` is reading from
        self._rows: int | None = None

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        try:
            return sa.engine.make_url(self._url).render_as_string(hide_password=True)
        except sa.exc.ArgumentError:
            return "(an unparsable database URL)"

    def columns(self) -> list[str]:
        """The query's column names, from a zero-row query."""
        with self._connection() as connection:
            sql = f"SELECT * FROM {self._wrapped()} WHERE 1=0"
            result = self._execute(connection, sql, {})
            names = list(result.keys())
            result.close()
        return names

    def chunks(self, columns: list[str], window: Window | None) -> Iterator[pd.DataFrame]:
        """Frames of at most chunk_size rows of `columns`, the window applied by the database."""
        size = self.source.chunk_size
        with self._connection() as connection:
            self._reading = connection
            if self.source.count:
                self._rows = self._count(connection, window)
            streaming = connection.execution_options(stream_results=True, yield_per=size)
            result = self._execute(streaming, *self.select(connection.dialect, columns, window))
            kinds = [
                _kind_of_code(connection.dialect.name, entry[1])
                for entry in result.cursor.description or []
            ]
            start, finished = 0, False
            try:
                for rows in result.partitions(size):
                    if start == 0:
                        self._decide_kinds(connection, columns, kinds, rows)
                    frame = _frame(rows, columns, kinds, start)
                    start += len(rows)
                    yield frame
                finished = True
            except sa.exc.SQLAlchemyError as exc:
                raise SourceError(self._message("reading the query's rows failed", exc)) from None
            finally:
                self._reading = None
                if finished:
                    result.close()
                else:
                    _abandon(result, connection)

    def cancel(self) -> None:
        """Stop the statement `chunks` is waiting on (called from another thread); the read
        then ends with SourceError. Dialects without a known way are left to finish.

        A cancel that reaches the server between two statements is lost (a cursor's
        FETCH may start just after it), so it is sent again every `CANCEL_EVERY_S` from a
        daemon thread until the read has stopped, for at most `CANCEL_FOR_S`.
        """
        connection = self._reading
        if connection is None or connection.dialect.name not in _CANCELLABLE:
            return
        _cancel_statement(connection)

        def again() -> None:
            deadline = time.monotonic() + CANCEL_FOR_S
            while time.monotonic() < deadline:
                time.sleep(CANCEL_EVERY_S)
                if self._reading is not connection:
                    return
                _cancel_statement(connection)

        threading.Thread(target=again, name="etl-sql-cancel", daemon=True).start()

    def estimated_rows(self) -> int | None:
        """`SELECT count(*)` of the windowed query, when `source.count: true` asked for it."""
        return self._rows

    def _count(self, connection: sa.Connection, window: Window | None) -> int:
        """One count of the rows `chunks` is about to stream (the same window, bound)."""
        sql, params = self.select(connection.dialect, [], window, count=True)
        return int(self._execute(connection, sql, params).scalar())

    def select(
        self, dialect: sa.Dialect, columns: list[str], window: Window | None, *, count: bool = False
    ) -> tuple[str, dict[str, Any]]:
        """The wrapped query (or its `count(*)`) and its bound parameters."""
        quote = dialect.identifier_preparer.quote
        projection = "count(*)" if count else ", ".join(f"src.{quote(name)}" for name in columns)
        sql = f"SELECT {projection} FROM {self._wrapped()}"
        conditions, params = [], {}
        if window is not None:
            cursor = f"src.{quote(window.cursor)}"
            if window.after is not None:
                conditions.append(f"{cursor} > :after")
                params["after"] = window.after
            if window.until is not None:
                conditions.append(f"{cursor} <= :until")
                params["until"] = window.until
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        return sql, params

    def _decide_kinds(
        self, connection: sa.Connection, columns: list[str], kinds: list[str | None], rows: Any
    ) -> None:
        """Kinds the driver did not name: from the first chunk, else from one probing query.

        The probe (`... WHERE col IS NOT NULL LIMIT 1`, on a second connection) keeps a
        column that starts with a run of NULLs from changing dtype at its first value.
        """
        for position, name in enumerate(columns):
            if kinds[position] is not None:
                continue
            first = next((row[position] for row in rows if row[position] is not None), None)
            if first is None:
                first = self._first_value(connection, name)
            kinds[position] = None if first is None else _kind_of_value(first)

    def _first_value(self, connection: sa.Connection, column: str) -> Any:
        name = f"src.{connection.dialect.identifier_preparer.quote(column)}"
        sql = f"SELECT {name} FROM {self._wrapped()} WHERE {name} IS NOT NULL LIMIT 1"
        try:
            with connection.engine.connect() as probe:
                return probe.execute(sa.text(sql)).scalar()
        except sa.exc.SQLAlchemyError:  # a dialect without LIMIT: decide at the first value
            return None

    def _wrapped(self) -> str:
        """The user's query as the derived table `src`; on its own lines, so a trailing
        `-- comment` in it cannot swallow the wrapper."""
        return f"(\n{_escape(self.query)}\n) AS src"

    # -- connections and errors ----------------------------------------------------------
    def _connection(self) -> Any:
        try:
            engine = sa.create_engine(self._url)
        except (sa.exc.SQLAlchemyError, ImportError) as exc:
            raise SourceError(self._message("cannot use this URL", exc)) from None
        try:
            return _DisposingConnection(engine, engine.connect())
        except (sa.exc.SQLAlchemyError, ImportError) as exc:
            engine.dispose()
            raise SourceError(self._message("cannot connect", exc)) from None

    def _execute(self, connection: sa.Connection, sql: str, params: dict[str, Any]) -> Any:
        try:
            return connection.execute(sa.text(sql), params)
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(self._message("the query failed", exc)) from None

    def _message(self, what: str, exc: BaseException) -> str:
        """One line naming the database (no password) and the driver's own first line."""
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        text = f"source.url {self.safe_url}: {what}: {detail[0] if detail else type(exc).__name__}"
        password = _password(self._url)
        return text.replace(password, "***") if password else text


class _DisposingConnection:
    """A connection whose engine is disposed with it (one engine per read)."""

    def __init__(self, engine: sa.Engine, connection: sa.Connection) -> None:
        self.engine, self.connection = engine, connection

    def __enter__(self) -> sa.Connection:
        return self.connection

    def __exit__(self, *exc_info: Any) -> None:
        self.connection.close()
        self.engine.dispose()


def _cancel_statement(connection: sa.Connection) -> None:
    """Ask the server to stop `connection`'s running statement (PostgreSQL, MySQL/MariaDB)."""
    try:
        raw = connection.connection.dbapi_connection
        if raw is None:  # the connection is already closed
            return
        if connection.dialect.name == "postgresql":
            (getattr(raw, "cancel_safe", None) or raw.cancel)()  # psycopg 3.2+, else 3.x/2
        else:
            with connection.engine.connect() as killer:
                killer.execute(sa.text(f"KILL QUERY {int(raw.thread_id())}"))
    except Exception:  # best effort: the read may have just ended
        return


def _abandon(result: sa.CursorResult[Any], connection: sa.Connection) -> None:
    """Drop a half-read server-side cursor (--limit, an abort) without reading the rest.

    Closing a PyMySQL streaming cursor reads every remaining row first (a whole table on
    `--limit 100`); its result is told it is finished and the connection is dropped instead.
    """
    unbuffered = getattr(result.cursor, "_result", None)
    if unbuffered is not None and getattr(unbuffered, "unbuffered_active", False):
        unbuffered.unbuffered_active = False
    connection.invalidate()


def _password(url: str) -> str | None:
    try:
        return sa.engine.make_url(url).password
    except sa.exc.ArgumentError:
        return None


def _escape(query: str) -> str:
    """The user's SQL with colons escaped, so `text()` sees only our bind parameters."""
    return query.replace(":", "\\:")


# -- dtypes ------------------------------------------------------------------------------
def _kind_of_code(dialect: str, code: Any) -> str | None:
    """The column kind a driver's type code names, or None when it does not say."""
    if code is None:
        return None
    if isinstance(code, int) and not isinstance(code, bool):
        tables = {"postgresql": _POSTGRES_TYPES, "mysql": _MYSQL_TYPES, "mariadb": _MYSQL_TYPES}
        name = tables.get(dialect, {}).get(code)
        return _kind_of_name(name) if name else None
    return _kind_of_name(str(code))


_KINDS_BY_NAME = {
    "int": {
        "int",
        "int2",
        "int4",
        "int8",
        "int64",
        "integer",
        "tinyint",
        "smallint",
        "mediumint",
        "bigint",
        "hugeint",
        "utinyint",
        "usmallint",
        "uinteger",
        "ubigint",
        "year",
    },
    "float": {"float", "float4", "float8", "float64", "double", "double precision", "real"},
    "decimal": {"numeric", "decimal", "newdecimal", "bignumeric"},
    "bool": {"bool", "boolean"},
    "str": {
        "text",
        "varchar",
        "char",
        "bpchar",
        "name",
        "string",
        "var_string",
        "nvarchar",
        "nchar",
        "character",
        "character varying",
    },
    "date": {"date"},
    "datetime": {
        "timestamp",
        "datetime",
        "timestamp without time zone",
        "timestamp_ntz",
        "timestamp_s",
        "timestamp_ms",
        "timestamp_ns",
    },
    "datetime_tz": {"timestamptz", "timestamp with time zone", "timestamp_tz", "timestamp_ltz"},
}
_KIND_OF_NAME = {name: kind for kind, names in _KINDS_BY_NAME.items() for name in names}


def _kind_of_name(name: str) -> str | None:
    """`DECIMAL(10,2)` -> float, `VARCHAR` -> str, ...; None for types we do not map."""
    return _KIND_OF_NAME.get(name.lower().split("(")[0].strip())


def _kind_of_value(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, float):
        return "float"
    if isinstance(value, dt.datetime):
        return "datetime_tz" if value.tzinfo is not None else "datetime"
    if isinstance(value, dt.date):
        return "date"
    return "str" if isinstance(value, str) else "object"


def _frame(
    rows: Sequence[Any], columns: list[str], kinds: list[str | None], start: int
) -> pd.DataFrame:
    """One chunk of rows as a frame; `kinds` is filled in as columns reveal their type."""
    index = pd.RangeIndex(start, start + len(rows))
    data = {}
    for position, name in enumerate(columns):
        values = [row[position] for row in rows]
        if kinds[position] is None:
            first = next((value for value in values if value is not None), None)
            kinds[position] = None if first is None else _kind_of_value(first)
        try:
            data[name] = _series(values, kinds[position], index)
        except (TypeError, ValueError) as exc:
            expected = kinds[position]
            raise SourceError(
                f"source.query: column {name!r} mixes value types ({expected} expected): {exc}"
            ) from None
    return pd.DataFrame(data, index=index)


def _series(values: list[Any], kind: str | None, index: pd.Index) -> pd.Series:
    if kind == "int":
        return pd.Series(pd.array(values, dtype="Int64"), index=index)
    if kind == "float":
        floats = [math.nan if value is None else float(value) for value in values]
        return pd.Series(np.asarray(floats, dtype="float64"), index=index)
    if kind == "decimal":
        return pd.Series([_decimal(value) for value in values], index=index, dtype=object)
    if kind == "bool":
        return pd.Series(pd.array(values, dtype="boolean"), index=index)
    if kind == "datetime":
        return pd.Series(pd.to_datetime(values).as_unit("us"), index=index)
    if kind == "datetime_tz":
        return pd.Series(pd.to_datetime(values, utc=True).as_unit("us"), index=index)
    return pd.Series(values, index=index, dtype=object)


def _decimal(value: Any) -> Decimal | None:
    """A NUMERIC value as a Decimal, whatever the driver returned (SQLite gives floats)."""
    if value is None or isinstance(value, Decimal):
        return value
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
