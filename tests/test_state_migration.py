"""A state file made by schema version 1 upgrades in place, and schema creation is safe
against a concurrent creator.

`tests/data/state_v1.db` was made by real runs of the version-1 code (see
`tests/data/make_state_v1.py`): pipeline `orders_fixture`, 4 delivered, 1 rejected
(o-5), 1 failed (o-6, body kept), watermark 2024-05-02T00:00:00Z, 3 runs.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from test_state import url  # noqa: F401  (the per-database store URL fixture)

from etl.events import Status, body_hash
from etl.state import Scope, StateStore
from etl.state.errors import sqlite_path
from etl.state.schema import LEASE_TABLES, SCHEMA_VERSION, events, schema_version

FIXTURE = Path(__file__).parent / "data" / "state_v1.db"
FIXTURE_V2 = FIXTURE.with_name("state_v2.db")
V2_SCOPE = Scope("orders_v2", "http://127.0.0.1:8787", "store-v2")
sys.path.insert(0, str(FIXTURE.parent))
from make_state_v1 import STORE, write_project  # noqa: E402 - it lives beside the data

V1_EVENT_COLUMNS = (
    "event_id",
    "payload_hash",
    "status",
    "attempts",
    "last_error",
    "first_at",
    "last_at",
    "run_id",
    "body",
    "cursor",
)


def v1_rows() -> list[tuple[Any, ...]]:
    with sqlite3.connect(FIXTURE) as connection:
        return connection.execute(
            f"SELECT {', '.join(V1_EVENT_COLUMNS)} FROM etl_events ORDER BY event_id"
        ).fetchall()


def pipeline_project(root: Path, base_url: str, rows: int) -> Path:
    """The fixture's pipeline (tests/data/make_state_v1.py) over `rows` orders, on a copy
    of the fixture; the base URL with a trailing slash, which names the same destination."""
    shutil.copy(FIXTURE, root / "state.db")
    return write_project(root, rows, base_url + "/", max_retries=1)


def etl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etl", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd="/",
    )


def test_the_fixture_is_what_its_docstring_says() -> None:
    statuses = sorted(row[2] for row in v1_rows())
    assert statuses == ["delivered"] * 4 + ["failed", "rejected"]
    with sqlite3.connect(FIXTURE) as connection:
        assert connection.execute("SELECT version FROM etl_schema_version").fetchall() == [(1,)]


def test_a_v1_state_file_upgrades_in_place_and_belongs_to_the_pipeline_that_opens_it(
    tmp_path: Path, sandbox
) -> None:
    server = sandbox(rate_limit=None)
    file = pipeline_project(tmp_path, server.base_url, rows=6)

    shown = etl("status", str(file), "--json")
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["totals"] == {"delivered": 4, "rejected": 1, "failed": 1}
    [destination] = status["destinations"]
    assert (destination["base_url"], destination["store_id"]) == (server.base_url, STORE)
    assert destination["watermark"] == "2024-05-02T00:00:00Z"
    assert [(run["id"], run["store_id"], run["exit_code"]) for run in status["runs"]] == [
        (3, STORE, 1),
        (2, STORE, 1),
        (1, STORE, 0),
    ]
    with sqlite3.connect(tmp_path / "state.db") as connection:
        upgraded = connection.execute(
            f"SELECT {', '.join(V1_EVENT_COLUMNS)} FROM etl_events ORDER BY event_id"
        ).fetchall()
        destinations = connection.execute(
            "SELECT DISTINCT pipeline, base_url, store_id FROM etl_events"
        ).fetchall()
        versions = connection.execute("SELECT version FROM etl_schema_version").fetchall()
    assert upgraded == v1_rows()  # nothing lost, nothing changed
    assert destinations == [("orders_fixture", server.base_url, STORE)]
    assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]

    # The failed o-6 is resent first; the delivered ones stay delivered (watermark kept).
    report = tmp_path / "report.json"
    ran = etl("run", str(file), "--report-json", str(report))
    assert ran.returncode == 0, ran.stderr
    got = json.loads(report.read_text())
    assert (got["retried_from_last_run"], got["delivered"], got["extracted"]) == (1, 1, 1)
    assert [event["properties"]["order_id"] for event in server.events(STORE)] == ["o-6"]

    # The rejected o-5 of version 1 kept no body: it goes again when the source reads it.
    ran = etl(
        "run",
        str(file),
        "--retry-rejected",
        "--since",
        "2024-05-01T00:00:00Z",
        "--report-json",
        str(report),
    )
    assert ran.returncode == 0, ran.stderr
    got = json.loads(report.read_text())
    assert (got["delivered"], got["skipped_unchanged"]) == (1, 1)
    assert sorted(e["properties"]["order_id"] for e in server.events(STORE)) == ["o-5", "o-6"]


def _copy_v1_layout_and_rows(target: sa.Engine, fixture: Path = FIXTURE) -> None:
    """A fixture's tables and rows (version 1 unless told), recreated in another database."""
    source = sa.create_engine(f"sqlite:///{fixture}")
    tables = sa.MetaData()
    tables.reflect(source)
    copy = sa.MetaData()
    for table in tables.sorted_tables:
        columns = [
            sa.Column(
                c.name,
                c.type.as_generic(),
                primary_key=c.primary_key,
                nullable=c.nullable,
                autoincrement=False,
            )
            for c in table.columns
        ]
        sa.Table(table.name, copy, *columns)
    copy.create_all(target)
    with source.connect() as reading, target.begin() as writing:
        for table in tables.sorted_tables:
            rows = [dict(row._mapping) for row in reading.execute(sa.select(table))]
            if rows:  # no rows would insert one of defaults
                writing.execute(copy.tables[table.name].insert(), rows)
    source.dispose()


def test_a_v1_store_upgrades_in_place_on_every_database(url: str) -> None:
    file = sqlite_path(url)
    if file is not None:
        file.parent.mkdir(parents=True)
    engine = sa.create_engine(url)
    _copy_v1_layout_and_rows(engine)
    engine.dispose()
    scope = Scope("orders_fixture", "http://127.0.0.1:8787", STORE)
    store = StateStore(url)
    store.adopt_legacy(scope)
    report = store.summary("orders_fixture")
    ids = [row[0] for row in v1_rows()]
    assert set(store.known(scope, ids)) == set(ids)
    assert store.watermark(scope) == "2024-05-02T00:00:00Z"
    assert [event.id for event in store.failed_events(scope)] == [
        row[0] for row in v1_rows() if row[2] == "failed"
    ]
    store.close()
    assert report.totals == {Status.DELIVERED: 4, Status.REJECTED: 1, Status.FAILED: 1}
    assert [(d.base_url, d.store_id) for d in report.destinations] == [(scope.base_url, STORE)]
    assert [run.store_id for run in report.runs] == [STORE] * 3
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        got = connection.execute(
            sa.select(*(events.c[name] for name in V1_EVENT_COLUMNS)).order_by(events.c.event_id)
        ).all()
        versions = connection.execute(sa.select(schema_version.c.version)).scalars().all()
    engine.dispose()
    expected = v1_rows()
    assert [(r[0], r[1], r[2], r[3], r[4], r[7], r[9]) for r in got] == [
        (r[0], r[1], r[2], r[3], r[4], r[7], r[9]) for r in expected
    ]
    assert sorted(versions) == list(range(1, SCHEMA_VERSION + 1))


def test_a_v2_store_gains_the_lease_tables_and_keeps_every_row(url: str) -> None:
    """tests/data/state_v2.db was made by the version-2 code (tests/data/make_state_v2.py)."""
    file = sqlite_path(url)
    if file is not None:
        file.parent.mkdir(parents=True)
    engine = sa.create_engine(url)
    _copy_v1_layout_and_rows(engine, FIXTURE_V2)
    engine.dispose()
    store = StateStore(url)
    assert store.known(V2_SCOPE, ["id-1", "id-2", "id-3"]) == {
        "id-1": (body_hash(b'{"n": 1}'), Status.DELIVERED),
        "id-2": (body_hash(b'{"n": 2}'), Status.DELIVERED),
        "id-3": (body_hash(b'{"n": 3}'), Status.FAILED),
    }
    assert [(e.id, e.body, e.cursor) for e in store.failed_events(V2_SCOPE)] == [
        ("id-3", b'{"n": 3}', "2024-05-03")
    ]
    assert store.watermark(V2_SCOPE) == "2024-05-02T00:00:00Z"
    assert [(run.id, run.exit_code) for run in store.summary("orders_v2").runs] == [(1, 1)]
    store.close()
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        versions = connection.execute(sa.select(schema_version.c.version)).scalars().all()
        tables = set(sa.inspect(connection).get_table_names())
        empty = [
            connection.execute(sa.select(sa.func.count()).select_from(t)).scalar()
            for t in LEASE_TABLES
        ]
    engine.dispose()
    assert sorted(versions) == [2, 3]
    assert {t.name for t in LEASE_TABLES} <= tables
    assert empty == [0] * len(LEASE_TABLES)


_OPENER = """
import sys, time
from pathlib import Path
from etl.state import StateStore
go = Path(sys.argv[2])
deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.005)
StateStore(sys.argv[1]).close()
"""


def test_concurrent_creators_of_a_fresh_store_all_succeed(url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER, url, str(go)], stderr=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    time.sleep(1.5)  # let every interpreter start and wait at the line
    go.touch()
    errors = [opener.communicate(timeout=60)[1] for opener in openers]
    assert [opener.returncode for opener in openers] == [0] * 6, errors
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(sa.select(schema_version.c.version)).scalars().all() == [
            SCHEMA_VERSION
        ]
    engine.dispose()
