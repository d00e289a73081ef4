"""The same rows from CSV, Parquet and SQL (SQLite, DuckDB, PostgreSQL, MariaDB) give the same
event ids and bodies (SPEC §4, §9), with null markers, declared types and exact decimals."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from etl.definition import parse_pipeline
from etl.extract import open_extractor
from etl.transform import Transformer, canonical, event_id
from etl.validate import Validator

ROWS = pd.DataFrame(
    {
        "order_id": ["o-1", "o-2", "o-3", "o-4", "o-5"],
        "customer_id": ["c-1", None, "c-3", "007", None],
        "email": ["Ann@Example.COM", "bob@example.com", None, None, "bad-email"],
        "shipped_at": [
            "2024-03-01T12:30:00Z",
            "2024-03-02T10:00:00+02:00",
            "2024-03-03T00:00:00Z",
            "2024-03-04T08:15:30.250000Z",
            "2024-03-05T00:00:00Z",
        ],
        "items": pd.array([2, None, 1, 40, 3], dtype="Int64"),
        "total": [10.0, 10.25, None, 1e6, 3.5],
        "updated_at": ["2024-05-01T00:00:00Z"] * 5,
    }
)


def definition(source: dict[str, Any], key: list[str] | None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "source": "shopify_backfill",
        "event_name": "order_shipped",
        "occurred_at": "shipped_at",
        "customer": {"external_id": "customer_id", "email": "email"},
        "properties": {"order_id": "order_id", "items": "items", "total": "total"},
    }
    if key:
        event["id"] = {"key": key}
    return {
        "name": "ids_across_sources",
        "source": {**source, "chunk_size": 2, "incremental": {"cursor": "updated_at"}},
        "event": event,
        "destination": {"store_id": "store-1", "token": "t"},
    }


def write_sources(folder: Path) -> dict[str, dict[str, Any]]:
    ROWS.to_csv(folder / "orders.csv", index=False)
    table = pa.Table.from_pandas(ROWS, preserve_index=False)
    # Parquet carries real timestamps: the id uses the normalised instant, not the text
    stamps = pd.to_datetime(ROWS["shipped_at"], utc=True, format="ISO8601")
    table = table.set_column(3, "shipped_at", pa.array(stamps, pa.timestamp("us", "UTC")))
    pq.write_table(table, folder / "orders.parquet")
    with sqlite3.connect(folder / "orders.sqlite") as connection:
        ROWS.astype({"items": object}).to_sql("orders", connection, index=False)
    return {
        "csv": {"type": "csv", "path": "orders.csv"},
        "parquet": {"type": "parquet", "path": "orders.parquet"},
        "sql": {"type": "sql", "url": "sqlite:///orders.sqlite", "query": "SELECT * FROM orders"},
    }


def events(folder: Path, source: dict[str, Any], key: list[str] | None) -> list[tuple[str, dict]]:
    file = folder / f"{source['type']}.yaml"
    file.write_text(yaml.safe_dump(definition(source, key)))
    pipeline = parse_pipeline(file)
    validator = Validator(pipeline.event)
    transformer = Transformer(pipeline.event, pipeline.destination.store_id, "updated_at")
    out = []
    for chunk in open_extractor(pipeline.source).chunks(pipeline.mapped_columns(), None):
        valid = validator.split(chunk).valid
        out.extend((e.id, orjson.loads(e.body)) for e in transformer.to_events(valid))
    return out


@pytest.mark.parametrize("key", [None, ["order_id", "items", "total", "customer_id"]])
def test_csv_parquet_and_sqlite_give_the_same_ids_and_bodies(
    tmp_path: Path, key: list[str] | None
) -> None:
    sources = write_sources(tmp_path)
    by_source = {name: events(tmp_path, source, key) for name, source in sources.items()}
    assert by_source["parquet"] == by_source["csv"]
    assert by_source["sql"] == by_source["csv"]
    bodies = [body for _, body in by_source["csv"]]
    # o-5 is rejected (bad email)
    assert [body["properties"]["order_id"] for body in bodies] == ["o-1", "o-2", "o-3", "o-4"]
    assert bodies[0]["properties"] == {"order_id": "o-1", "items": 2, "total": 10.0}
    assert bodies[1]["occurred_at"] == "2024-03-02T08:00:00Z"
    assert bodies[2]["properties"] == {"order_id": "o-3", "items": 1}  # the API takes no nulls
    assert bodies[3]["customer"] == {"external_id": "007"}  # leading zeros are an identifier
    assert bodies[3]["occurred_at"] == "2024-03-04T08:15:30.250000Z"
    assert len({event_id for event_id, _ in by_source["csv"]}) == 4


# -- six sources, null markers and declared types ------------------------------------------
#: A CSV as exports write it: `NaN`, `NULL`, `N/A`, `#N/A` and blanks in number columns, a
#: `;` delimiter and a byte order mark; gift is true/false here and 0/1 in the databases.
EXPORT_CSV = (
    "\ufefforder_id;customer_id;shipped_at;total;qty;gift;coupon\n"
    "1;c-1;2024-03-01T12:30:00Z;12.5;2;true;SAVE10\n"
    "2;c-2;2024-03-02T12:30:00Z;NaN;N/A;false;\n"
    "3;c-3;2024-03-03T12:30:00Z;3.0;1;;NULL\n"
    "4;c-4;2024-03-04T12:30:00Z;NULL;4;TRUE;WELCOME\n"
    "5;c-5;2024-03-05T12:30:00Z;1000000;#N/A;False;n/a\n"
)
TYPED_ROWS = [
    {
        "order_id": 1,
        "customer_id": "c-1",
        "shipped_at": "2024-03-01T12:30:00Z",
        "total": 12.5,
        "qty": 2,
        "gift": 1,
        "coupon": "SAVE10",
    },
    {
        "order_id": 2,
        "customer_id": "c-2",
        "shipped_at": "2024-03-02T12:30:00Z",
        "total": None,
        "qty": None,
        "gift": 0,
        "coupon": None,
    },
    {
        "order_id": 3,
        "customer_id": "c-3",
        "shipped_at": "2024-03-03T12:30:00Z",
        "total": 3.0,
        "qty": 1,
        "gift": None,
        "coupon": None,
    },
    {
        "order_id": 4,
        "customer_id": "c-4",
        "shipped_at": "2024-03-04T12:30:00Z",
        "total": None,
        "qty": 4,
        "gift": 1,
        "coupon": "WELCOME",
    },
    {
        "order_id": 5,
        "customer_id": "c-5",
        "shipped_at": "2024-03-05T12:30:00Z",
        "total": 1e6,
        "qty": None,
        "gift": 0,
        "coupon": None,
    },
]
DECLARED = {"order_id": "integer", "total": "float", "gift": "boolean"}


def typed_table(
    engine: sa.Engine, table: str, rows: list[dict[str, Any]], types: dict[str, Any]
) -> None:
    metadata = sa.MetaData()
    sa.Table(table, metadata, *(sa.Column(name, kind) for name, kind in types.items()))
    metadata.create_all(engine)
    names = ", ".join(types)
    values = ", ".join(f":{name}" for name in types)
    with engine.begin() as connection:  # raw binds: no type's bind processor touches a value
        connection.execute(sa.text(f"INSERT INTO {table} ({names}) VALUES ({values})"), rows)


@pytest.fixture
def six_sources(
    tmp_path: Path, unique_table: str, request: pytest.FixtureRequest
) -> Iterator[dict[str, dict[str, Any]]]:
    """The same five orders as a CSV export, Parquet, SQLite, DuckDB, PostgreSQL and MariaDB."""
    (tmp_path / "export.csv").write_text(EXPORT_CSV, encoding="utf-8")
    frame = pd.DataFrame(TYPED_ROWS).astype({"qty": "Int64", "gift": "boolean"})
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "orders.parquet")
    types = {
        "order_id": sa.Integer,
        "customer_id": sa.String(20),
        "shipped_at": sa.String(40),
        "total": sa.Double,
        "qty": sa.Integer,
        "gift": sa.SmallInteger,
        "coupon": sa.String(20),
    }
    sources: dict[str, dict[str, Any]] = {
        "csv": {"type": "csv", "path": "export.csv", "delimiter": ";"},
        "parquet": {"type": "parquet", "path": "orders.parquet"},
    }
    sources.update(
        databases(
            tmp_path,
            request,
            unique_table,
            ("sqlite", "duckdb", "postgres", "mariadb"),
            TYPED_ROWS,
            types,
        )
    )
    yield sources
    drop(request, unique_table)


def databases(
    folder: Path,
    request: pytest.FixtureRequest,
    table: str,
    names: tuple[str, ...],
    rows: list[dict[str, Any]],
    types: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """`table` with `rows` in each named database; a source reading it back, for each."""
    sources = {}
    for name in names:
        if name in ("sqlite", "duckdb"):
            engine = sa.create_engine(f"{name}:///{folder / ('orders.' + name)}")
        else:
            engine = request.getfixturevalue(f"{name}_engine")
        typed_table(engine, table, rows, types)
        url = engine.url.render_as_string(hide_password=False)
        query = f"SELECT * FROM {table} ORDER BY order_id"
        sources[name] = {"type": "sql", "url": url, "query": query}
        if name in ("sqlite", "duckdb"):
            engine.dispose()
    return sources


def drop(request: pytest.FixtureRequest, table: str) -> None:
    """Drop `table` from the servers the test used (the file databases go with tmp_path)."""
    for name in ("postgres", "mariadb"):
        engine = request.getfixturevalue(f"{name}_engine")
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))


def declared_events(folder: Path, source: dict[str, Any]) -> list[tuple[str, dict]]:
    """Ids and bodies with `source.columns` declared, keyed on every typed column."""
    spec = definition({**source, "columns": DECLARED}, ["order_id", "gift", "total", "qty"])
    properties = {name: name for name in ("order_id", "total", "qty", "gift", "coupon")}
    return [(i, orjson.loads(body)) for i, body in bodies(folder, spec, properties)]


def bodies(
    folder: Path, spec: dict[str, Any], properties: dict[str, str]
) -> list[tuple[str, bytes]]:
    """(id, body) of every valid row of `spec` (no cursor, customer by external_id)."""
    spec["source"].pop("incremental")
    spec["event"].update(properties=properties, customer={"external_id": "customer_id"})
    file = folder / f"pipe_{len(list(folder.iterdir()))}.yaml"
    file.write_text(yaml.safe_dump(spec))
    pipeline = parse_pipeline(file)
    validator = Validator(pipeline.event, pipeline.source.columns)
    transformer = Transformer(pipeline.event, pipeline.destination.store_id)
    out = []
    for chunk in open_extractor(pipeline.source).chunks(pipeline.mapped_columns(), None):
        split = validator.split(chunk)
        assert split.rejects.empty
        out.extend((e.id, e.body) for e in transformer.to_events(split.valid))
    return out


def test_an_export_with_null_markers_and_five_typed_sources_give_the_same_ids_and_bodies(
    tmp_path: Path, six_sources: dict[str, dict[str, Any]]
) -> None:
    by_source = {name: declared_events(tmp_path, source) for name, source in six_sources.items()}
    for name in ("parquet", "sqlite", "duckdb", "postgres", "mariadb"):
        assert by_source[name] == by_source["csv"], name
    bodies = [body["properties"] for _, body in by_source["csv"]]
    assert bodies == [
        {"order_id": 1, "total": 12.5, "qty": 2, "gift": True, "coupon": "SAVE10"},
        {"order_id": 2, "gift": False},  # NaN, N/A and a blank are nulls: omitted
        {"order_id": 3, "total": 3.0, "qty": 1},  # NULL is a null in a text column too
        {"order_id": 4, "qty": 4, "gift": True, "coupon": "WELCOME"},
        {"order_id": 5, "total": 1000000.0, "gift": False},
    ]
    key = [1, True, 12.5, 2]  # order_id, gift, total, qty as typed values
    assert by_source["csv"][0][0] == event_id("store-1", "shopify_backfill", "order_shipped", key)


# -- decimals ----------------------------------------------------------------------------
AMOUNTS = [Decimal("99999999999999.99"), Decimal("1234567.89"), Decimal("10.50"), None]


@pytest.fixture
def decimal_sources(
    tmp_path: Path, unique_table: str, request: pytest.FixtureRequest
) -> Iterator[dict[str, dict[str, Any]]]:
    """Four orders with a DECIMAL(38,2) amount in Parquet, DuckDB, PostgreSQL and MariaDB."""
    rows = [
        {
            "order_id": i + 1,
            "customer_id": f"c-{i + 1}",
            "shipped_at": "2024-03-01T12:30:00Z",
            "amount": amount,
        }
        for i, amount in enumerate(AMOUNTS)
    ]
    table = pa.table(
        {
            "order_id": [row["order_id"] for row in rows],
            "customer_id": [row["customer_id"] for row in rows],
            "shipped_at": [row["shipped_at"] for row in rows],
            "amount": pa.array(AMOUNTS, pa.decimal128(38, 2)),
        }
    )
    pq.write_table(table, tmp_path / "orders.parquet")
    types = {
        "order_id": sa.Integer,
        "customer_id": sa.String(20),
        "shipped_at": sa.String(40),
        "amount": sa.Numeric(38, 2),
    }
    # as text, which the database parses exactly (DuckDB binds a Decimal as a double)
    as_text = [
        {**row, "amount": None if row["amount"] is None else str(row["amount"])} for row in rows
    ]
    sources = {"parquet": {"type": "parquet", "path": "orders.parquet"}}
    sources.update(
        databases(
            tmp_path, request, unique_table, ("duckdb", "postgres", "mariadb"), as_text, types
        )
    )
    yield sources
    drop(request, unique_table)


def raw_events(folder: Path, source: dict[str, Any]) -> list[tuple[str, bytes]]:
    return bodies(folder, definition(source, ["order_id", "amount"]), {"amount": "amount"})


def test_decimals_go_out_exact_and_hash_the_same_from_every_source(
    tmp_path: Path, decimal_sources: dict[str, dict[str, Any]]
) -> None:
    by_source = {name: raw_events(tmp_path, source) for name, source in decimal_sources.items()}
    for name in ("duckdb", "postgres", "mariadb"):
        assert by_source[name] == by_source["parquet"], name
    bodies = [body for _, body in by_source["parquet"]]
    assert b'"properties":{"amount":99999999999999.99}' in bodies[0]  # 16 digits, not rounded
    assert b'"properties":{"amount":1234567.89}' in bodies[1]
    assert b'"properties":{"amount":10.5}' in bodies[2]
    assert b'"amount"' not in bodies[3]
    ids = [event_id for event_id, _ in by_source["parquet"]]
    assert ids[0] == event_id(
        "store-1", "shopify_backfill", "order_shipped", [1, Decimal("99999999999999.99")]
    )
    assert canonical([Decimal("10.50")]) == b"m4:10.5"
