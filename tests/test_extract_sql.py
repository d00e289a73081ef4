"""SQL extraction on real SQLite, DuckDB, PostgreSQL and MariaDB: the same data, the same frame."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from etl.definition import SourceSpec
from etl.errors import SourceError
from etl.extract import Window, open_extractor

T0 = dt.datetime(2024, 5, 1, 12, 30)
ROWS = [
    # name, qty, maybe (nullable int, NULL first), price, seen_at
    {"name": "ann", "qty": 1, "maybe": None, "price": 10.0, "seen_at": T0},
    {
        "name": "o'brien",
        "qty": 2,
        "maybe": None,
        "price": 10.25,
        "seen_at": T0 + dt.timedelta(days=1),
    },
    {"name": None, "qty": 3, "maybe": 7, "price": None, "seen_at": T0 + dt.timedelta(days=2)},
    {"name": "zoë", "qty": -4, "maybe": 8, "price": 1e20, "seen_at": None},
    {"name": "bob", "qty": 5, "maybe": None, "price": -0.5, "seen_at": T0 + dt.timedelta(days=3)},
]
COLUMNS = ["name", "qty", "maybe", "price", "seen_at"]
EXPECTED = pd.DataFrame(
    {
        "name": pd.Series(["ann", "o'brien", None, "zoë", "bob"], dtype=object),
        "qty": pd.array([1, 2, 3, -4, 5], dtype="Int64"),
        "maybe": pd.array([None, None, 7, 8, None], dtype="Int64"),
        "price": [10.0, 10.25, float("nan"), 1e20, -0.5],
        "seen_at": pd.Series([row["seen_at"] for row in ROWS], dtype="datetime64[us]"),
    }
)


def load(engine: sa.Engine, table: str) -> None:
    """The data set as a typed table (text, int, nullable int, float, timestamp)."""
    metadata = sa.MetaData()
    target = sa.Table(
        table,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(50)),
        sa.Column("qty", sa.Integer),
        sa.Column("maybe", sa.BigInteger),
        sa.Column("price", sa.Double),
        sa.Column("seen_at", sa.DateTime),
    )
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(target.insert(), [{"id": i, **row} for i, row in enumerate(ROWS)])


@pytest.fixture
def database(
    request: pytest.FixtureRequest, tmp_path: Path, unique_table: str
) -> Iterator[tuple[str, str]]:
    """(url, table) holding the data set, on the server named by the test's parameter."""
    kind = request.param
    if kind in ("sqlite", "duckdb"):
        engine = sa.create_engine(f"{kind}:///{tmp_path / ('data.' + kind)}")
    else:
        engine = request.getfixturevalue(f"{kind}_engine")
    load(engine, unique_table)
    url = engine.url.render_as_string(hide_password=False)
    engine.dispose()
    yield url, unique_table
    if kind not in ("sqlite", "duckdb"):
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE {unique_table}"))
        engine.dispose()


def source(url: str, query: str, chunk_size: int = 50_000) -> SourceSpec:
    return SourceSpec(type="sql", url=SecretStr(url), query=query, chunk_size=chunk_size)


def read(
    spec: SourceSpec, columns: list[str] = COLUMNS, window: Window | None = None
) -> list[pd.DataFrame]:
    return list(open_extractor(spec).chunks(columns, window))


ALL_DATABASES = ["sqlite", "duckdb", "postgres", "mariadb"]


@pytest.mark.parametrize("database", ALL_DATABASES, indirect=True)
@pytest.mark.parametrize("chunk_size", [1, 3, 50_000])
def test_every_database_and_chunk_size_gives_the_same_frame(
    database: tuple[str, str], chunk_size: int
) -> None:
    url, table = database
    chunks = read(source(url, f"SELECT * FROM {table} ORDER BY id;", chunk_size))
    assert [len(chunk) for chunk in chunks] == [chunk_size] * (5 // chunk_size) + (
        [5 % chunk_size] if 5 % chunk_size else []
    )
    expected = EXPECTED
    if url.startswith("sqlite"):
        # SQLite has no timestamp type: SQLAlchemy stored text, and text it stays
        stamps = [
            None if row["seen_at"] is None else row["seen_at"].strftime("%Y-%m-%d %H:%M:%S.%f")
            for row in ROWS
        ]
        expected = EXPECTED.assign(seen_at=pd.Series(stamps, dtype=object))
    for chunk in chunks:
        pd.testing.assert_series_equal(chunk.dtypes, expected.dtypes)
    pd.testing.assert_frame_equal(pd.concat(chunks), expected)


@pytest.mark.parametrize("database", ALL_DATABASES, indirect=True)
def test_the_window_is_pushed_down_as_bound_parameters(database: tuple[str, str]) -> None:
    url, table = database
    spec = source(url, f"SELECT * FROM {table} ORDER BY id", chunk_size=2)

    def names(window: Window) -> list[str | None]:
        return [n for chunk in read(spec, ["name", "qty"], window) for n in chunk["name"]]

    # a quote in a bound value is data, never SQL
    assert names(Window("name", after="ann", until="o'brien")) == ["o'brien", "bob"]
    assert names(Window("qty", after=2)) == [None, "bob"]
    assert names(Window("qty", after="1", until="3")) == ["o'brien", None]  # --since text
    if not url.startswith("sqlite"):
        assert names(Window("seen_at", after=T0)) == ["o'brien", None, "bob"]
        assert names(Window("seen_at", after="2024-05-02 12:30:00")) == [None, "bob"]


@pytest.mark.parametrize("database", ["sqlite", "postgres"], indirect=True)
def test_only_requested_columns_travel_and_the_query_order_is_kept(
    database: tuple[str, str],
) -> None:
    url, table = database
    spec = source(url, f"SELECT name, qty, id FROM {table} WHERE name LIKE '%b%' ORDER BY id DESC")
    extractor = open_extractor(spec)
    assert extractor.columns() == ["name", "qty", "id"]
    (chunk,) = extractor.chunks(["qty", "name"], None)
    assert list(chunk.columns) == ["qty", "name"]
    assert chunk["name"].tolist() == ["bob", "o'brien"]
    assert chunk.index.tolist() == [0, 1]


def test_colons_in_the_users_query_are_not_parameters(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    spec = source(url, "SELECT '10:30' AS at, 'a :b' AS text")
    (chunk,) = read(spec, ["at", "text"])
    assert chunk.iloc[0].tolist() == ["10:30", "a :b"]


def test_an_unreachable_database_is_named_without_its_password() -> None:
    spec = source("postgresql+psycopg://etl:s3cret-pw@127.0.0.1:9/warehouse", "SELECT 1")
    with pytest.raises(SourceError) as error:
        open_extractor(spec).columns()
    message = str(error.value)
    assert message.startswith(
        "source.url postgresql+psycopg://etl:***@127.0.0.1:9/warehouse: cannot connect: "
    )
    assert "s3cret-pw" not in message
    assert "\n" not in message


def test_a_failing_query_is_a_source_error(tmp_path: Path) -> None:
    spec = source(f"sqlite:///{tmp_path / 'x.sqlite'}", "SELECT * FROM missing_table")
    with pytest.raises(SourceError, match=r"the query failed: no such table: missing_table$"):
        read(spec, ["a"])


def test_a_column_starting_with_nulls_keeps_one_dtype_in_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE t (id INTEGER, late INTEGER)"))
        connection.execute(sa.text("INSERT INTO t VALUES (1, NULL), (2, NULL), (3, 42)"))
    engine.dispose()
    chunks = read(source(url, "SELECT * FROM t ORDER BY id", chunk_size=1), ["id", "late"])
    assert [str(chunk["late"].dtype) for chunk in chunks] == ["Int64"] * 3
    assert pd.concat(chunks)["late"].tolist() == [pd.NA, pd.NA, 42]


def test_timestamps_with_time_zone_arrive_in_utc(postgres_engine: sa.Engine) -> None:
    url = postgres_engine.url.render_as_string(hide_password=False)
    query = "SELECT TIMESTAMPTZ '2024-05-01 12:30:00+02:00' AS at, 1.5::numeric AS amount"
    spec = source(url, query)
    (chunk,) = read(spec, ["at", "amount"])
    assert str(chunk["at"].dtype) == "datetime64[us, UTC]"
    assert chunk["at"].iloc[0] == pd.Timestamp("2024-05-01T10:30:00Z")
    assert chunk["amount"].dtype == object and chunk["amount"].iloc[0] == Decimal("1.5")


@pytest.mark.parametrize("database", ALL_DATABASES, indirect=True)
def test_stopping_early_drops_the_cursor_and_leaves_the_database_usable(
    database: tuple[str, str],
) -> None:
    url, table = database
    spec = source(url, f"SELECT * FROM {table} ORDER BY id", chunk_size=2)
    chunks = open_extractor(spec).chunks(["name"], None)
    assert next(chunks)["name"].tolist() == ["ann", "o'brien"]
    chunks.close()  # as `--limit` does: the other rows are never read
    assert [len(chunk) for chunk in read(spec, ["name"])] == [2, 2, 1]


def test_a_query_file_with_comments_and_a_semicolon_is_wrapped_safely(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    query = "-- all of it\nSELECT 1 AS a, 'x' AS b -- the only row\n;\n"
    assert [chunk.iloc[0].tolist() for chunk in read(source(url, query), ["b", "a"])] == [["x", 1]]


def test_a_relative_sqlite_url_resolves_against_the_pipeline_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl.definition import parse_pipeline
    from etl.errors import DefinitionError

    (tmp_path / "data").mkdir()
    (tmp_path / "pipelines").mkdir()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'data' / 'shop.sqlite'}")
    load(engine, "orders")
    engine.dispose()
    file = tmp_path / "pipelines" / "p.yaml"

    def write(url: str) -> None:
        file.write_text(
            "name: p\n"
            f"source: {{type: sql, url: '{url}', query: SELECT * FROM orders}}\n"
            "event: {source: s, event_name: e, occurred_at: seen_at, customer: {email: name}}\n"
            "destination: {store_id: s, token: t}\n"
        )

    write("sqlite:///../data/shop.sqlite")
    monkeypatch.chdir("/")
    pipeline = parse_pipeline(file)
    resolved = tmp_path / "pipelines" / "../data/shop.sqlite"
    assert pipeline.source.url.get_secret_value() == f"sqlite:///{resolved}"
    assert [len(chunk) for chunk in read(pipeline.source, ["name"])] == [5]

    write("sqlite:///../data/typo.sqlite")
    with pytest.raises(DefinitionError) as error:
        parse_pipeline(file)
    assert error.value.problems == [
        ("source.url", f"no database file at {tmp_path / 'pipelines' / '../data/typo.sqlite'}")
    ]
    assert not (tmp_path / "data" / "typo.sqlite").exists()  # no empty database left behind
