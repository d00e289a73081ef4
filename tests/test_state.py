"""The state store against real databases: SQLite files, PostgreSQL and MariaDB.

Each server test gets its own schema (PostgreSQL) or database (MariaDB), dropped after.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from etl.errors import StateError
from etl.events import Event, EventBatch, Outcome, Status
from etl.state import Scope, StateStore
from etl.state.schema import SCHEMA_VERSION, decode_value, encode_value, events, schema_version

PIPELINE = Scope("orders_shipped", "http://127.0.0.1:8787", "store-1")
#: The same pipeline pointed at another store, and another pipeline on the same store.
OTHER_STORE = Scope("orders_shipped", "http://127.0.0.1:8787", "store-2")
OTHER = Scope("other", "http://127.0.0.1:8787", "store-1")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A state store URL nobody else uses, on each supported database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nested' / 'state.db'}"
        return
    engine: sa.Engine = request.getfixturevalue(f"{request.param}_engine")
    name = f"s_{uuid.uuid4().hex[:12]}"
    kind = "SCHEMA" if request.param == "postgres" else "DATABASE"
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE {kind} {name}"))
    if request.param == "postgres":
        scoped = engine.url.update_query_dict({"options": f"-csearch_path={name}"})
        yield scoped.render_as_string(hide_password=False)
    else:
        yield engine.url.set(database=name).render_as_string(hide_password=False)
    with engine.begin() as connection:
        cascade = " CASCADE" if kind == "SCHEMA" else ""
        connection.execute(sa.text(f"DROP {kind} {name}{cascade}"))


@pytest.fixture
def store(url: str) -> Iterator[StateStore]:
    opened = StateStore(url)
    yield opened
    opened.close()


def event(n: int, payload_hash: str = "h1", cursor: Any = None) -> Event:
    event_id = str(uuid.UUID(int=n))
    body = b'{"id":"%s","n":%d}' % (event_id.encode(), n)
    return Event(id=event_id, body=body, payload_hash=payload_hash, cursor=cursor)


def outcome(
    n: int, status: Status, attempts: int = 1, error: str | None = None, **kwargs: Any
) -> Outcome:
    return Outcome(event=event(n, **kwargs), status=status, attempts=attempts, error=error)


def test_schema_is_created_with_its_version(url: str) -> None:
    StateStore(url).close()
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        versions = connection.execute(sa.select(schema_version.c.version)).scalars().all()
    assert versions == [SCHEMA_VERSION]
    engine.dispose()
    StateStore(url).close()  # reopening does not stamp the version twice


def test_a_newer_schema_is_refused(url: str) -> None:
    StateStore(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(schema_version.insert().values(version=SCHEMA_VERSION + 1))
    engine.dispose()
    with pytest.raises(StateError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        StateStore(url)


def test_reopen_keeps_data_and_known_returns_hash_and_status(url: str) -> None:
    first = StateStore(url)
    run = first.begin_run(PIPELINE)
    first.record_many(
        PIPELINE,
        run,
        [
            outcome(1, Status.DELIVERED, payload_hash="a"),
            outcome(2, Status.FAILED, payload_hash="b", error="503"),
            outcome(3, Status.REJECTED, payload_hash="c", error="bad email"),
        ],
    )
    first.close()
    second = StateStore(url)
    ids = [event(n).id for n in (1, 2, 3, 4)]
    assert second.known(PIPELINE, ids) == {
        ids[0]: ("a", Status.DELIVERED),
        ids[1]: ("b", Status.FAILED),
        ids[2]: ("c", Status.REJECTED),
    }
    assert second.known(OTHER, ids) == {}
    second.close()


def test_known_handles_more_ids_than_one_query_takes(store: StateStore) -> None:
    store.record_many(PIPELINE, 1, [outcome(n, Status.DELIVERED) for n in range(0, 12_000, 2)])
    found = store.known(PIPELINE, [event(n).id for n in range(12_000)])
    assert set(found) == {event(n).id for n in range(0, 12_000, 2)}


@pytest.mark.anyio
async def test_record_is_durable_when_it_returns(url: str) -> None:
    writer = StateStore(url)
    run = writer.begin_run(PIPELINE)
    await writer.record(PIPELINE, run, outcome(7, Status.DELIVERED, payload_hash="x"))
    reader = StateStore(url)  # a separate store (own connections) sees it: it was committed
    assert reader.known(PIPELINE, [event(7).id]) == {event(7).id: ("x", Status.DELIVERED)}
    reader.close()
    writer.close()


@pytest.mark.anyio
async def test_concurrent_records_are_group_committed(store: StateStore) -> None:
    run = store.begin_run(PIPELINE)
    await asyncio.gather(
        *(store.record(PIPELINE, run, outcome(n, Status.DELIVERED)) for n in range(500))
    )
    assert len(store.known(PIPELINE, [event(n).id for n in range(500)])) == 500
    assert 1 <= store.commits <= 10


@pytest.mark.anyio
async def test_record_many_and_repeats_within_a_batch_add_attempts(store: StateStore) -> None:
    await asyncio.gather(
        store.record(PIPELINE, 1, outcome(1, Status.FAILED, attempts=3)),
        store.record(PIPELINE, 1, outcome(1, Status.FAILED, attempts=2)),
    )
    store.record_many(
        PIPELINE, 2, [outcome(1, Status.FAILED, attempts=4), outcome(1, Status.DELIVERED)]
    )
    assert _row(store, 1)["attempts"] == 10


@pytest.mark.anyio
async def test_a_failed_write_reaches_its_waiters_and_the_writer_lives_on(
    store: StateStore,
) -> None:
    # attempts is NOT NULL in every database
    private = Event(event(1).id, b'{"email":"jane@example.com"}', "h")
    broken = Outcome(private, Status.FAILED, attempts=None)  # type: ignore[arg-type]
    cause = "cannot write: .*(NOT NULL|null value|cannot be null)"
    with pytest.raises(StateError, match=cause) as raised:
        await store.record(PIPELINE, 1, broken)
    assert "jane@example.com" not in str(raised.value)  # the body is never quoted
    await store.record(PIPELINE, 1, outcome(2, Status.DELIVERED))
    assert list(store.known(PIPELINE, [event(1).id, event(2).id])) == [event(2).id]


def test_numpy_and_pandas_cursor_values_are_stored_as_python_values() -> None:
    assert decode_value(encode_value(np.int64(7))) == 7
    assert type(decode_value(encode_value(np.int64(7)))) is int
    assert type(decode_value(encode_value(np.float64(0.5)))) is float
    stamp = pd.Timestamp("2024-05-01T10:00:00.5Z")
    assert decode_value(encode_value(stamp)) == stamp.to_pydatetime()
    assert [encode_value(missing) for missing in (None, float("nan"), pd.NaT)] == [None, None, None]


def test_an_unstorable_cursor_is_refused_with_its_type() -> None:
    with pytest.raises(TypeError, match="cannot store a object cursor value"):
        encode_value(object())


def test_failed_events_rebuilds_the_exact_event(store: StateStore) -> None:
    sent = [
        event(n, payload_hash=f"h{n}", cursor=datetime(2024, 1, n, 12, tzinfo=UTC))
        for n in (3, 1, 2)
    ]
    store.record_many(PIPELINE, 1, [Outcome(e, Status.FAILED, 5, "timeout") for e in sent])
    store.record_many(PIPELINE, 1, [outcome(9, Status.DELIVERED), outcome(8, Status.REJECTED)])
    assert list(store.failed_events(PIPELINE)) == sorted(sent, key=lambda e: e.id)


def test_failed_events_pages_through_while_outcomes_are_recorded(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("etl.state.store._FAILED_PAGE", 7)
    store.record_many(PIPELINE, 1, [outcome(n, Status.FAILED) for n in range(30)])
    seen = []
    for failed in store.failed_events(PIPELINE):
        seen.append(failed.id)
        store.record_many(PIPELINE, 2, [Outcome(failed, Status.DELIVERED, 1)])
    assert seen == sorted(event(n).id for n in range(30))
    assert list(store.failed_events(PIPELINE)) == []


def test_failed_then_delivered_drops_the_body_and_counts_attempts(store: StateStore) -> None:
    store.record_many(PIPELINE, 1, [outcome(1, Status.FAILED, attempts=5, error="HTTP 503")])
    assert _row(store, 1)["body"] == event(1).body
    store.record_many(PIPELINE, 2, [outcome(1, Status.DELIVERED, attempts=2, payload_hash="h2")])
    row = _row(store, 1)
    latest = ("status", "attempts", "run_id", "payload_hash", "body", "last_error")
    assert tuple(row[key] for key in latest) == ("delivered", 7, 2, "h2", None, None)
    assert row["first_at"] <= row["last_at"]
    assert store.known(PIPELINE, [event(1).id]) == {event(1).id: ("h2", Status.DELIVERED)}
    assert list(store.failed_events(PIPELINE)) == []


@pytest.mark.parametrize(
    "value",
    [
        42,
        2.5,
        "2024-05-01 10:00",
        Decimal("12.50"),
        date(2024, 5, 1),
        datetime(2024, 5, 1, 10, 0, 0, 123456),
        datetime(2024, 5, 1, 10, 0, tzinfo=timezone(timedelta(hours=-7))),
    ],
    ids=repr,
)
def test_watermark_round_trips_type_and_instant(store: StateStore, value: Any) -> None:
    assert store.watermark(PIPELINE) is None
    store.set_watermark(PIPELINE, value)
    got = store.watermark(PIPELINE)
    assert (got, type(got)) == (value, type(value))
    if isinstance(value, datetime):
        assert got.utcoffset() == value.utcoffset()


def test_watermark_is_replaced_and_kept_per_pipeline_and_destination(store: StateStore) -> None:
    store.set_watermark(PIPELINE, 1)
    store.set_watermark(PIPELINE, 2)
    store.set_watermark(OTHER, "z")
    store.set_watermark(OTHER_STORE, 7)
    got = [store.watermark(scope) for scope in (PIPELINE, OTHER, OTHER_STORE)]
    assert got == [2, "z", 7]
    assert store.watermark(Scope(PIPELINE.pipeline, "https://api.yotpo.com", "store-1")) is None


def test_unchanged_is_delivered_or_rejected_with_the_same_payload(store: StateStore) -> None:
    fresh = [Event(id=e.id, body=e.body) for e in (event(n) for n in range(5))]  # real hashes
    store.record_many(
        PIPELINE,
        1,
        [
            Outcome(fresh[0], Status.DELIVERED, 1),
            Outcome(fresh[1], Status.REJECTED, 1),
            Outcome(fresh[2], Status.FAILED, 1),
            outcome(3, Status.DELIVERED, payload_hash="old"),
        ],
    )  # fresh[4] was never sent
    batch = EventBatch.of(fresh)
    assert store.unchanged(PIPELINE, batch) == [0, 1]
    assert store.unchanged(PIPELINE, batch, resend=Status.REJECTED) == [0]  # --retry-rejected
    assert store.unchanged(OTHER_STORE, batch) == []


def test_unchanged_looks_each_event_up_at_its_own_store(store: StateStore) -> None:
    one, two = (Event(id=event(n).id, body=event(n).body) for n in (1, 2))
    batch = EventBatch.of(
        [Event(one.id, one.body, store="store-1"), Event(two.id, two.body, store="store-2")]
    )
    store.record_many(OTHER_STORE, 1, [Outcome(one, Status.DELIVERED, 1)])  # the wrong stores
    store.record_many(PIPELINE, 1, [Outcome(two, Status.DELIVERED, 1)])
    assert store.unchanged(PIPELINE, batch) == []
    store.record_many(OTHER_STORE, 2, [Outcome(two, Status.DELIVERED, 1)])
    assert store.unchanged(PIPELINE, batch) == [1]


def test_outcomes_are_kept_per_destination(store: StateStore) -> None:
    store.record_many(PIPELINE, 1, [outcome(1, Status.DELIVERED), outcome(2, Status.FAILED)])
    assert store.known(OTHER_STORE, [event(1).id, event(2).id]) == {}
    assert list(store.failed_events(OTHER_STORE)) == []
    store.record_many(OTHER_STORE, 2, [outcome(1, Status.REJECTED, payload_hash="h9")])
    assert store.known(PIPELINE, [event(1).id]) == {event(1).id: ("h1", Status.DELIVERED)}
    assert store.known(OTHER_STORE, [event(1).id]) == {event(1).id: ("h9", Status.REJECTED)}
    assert [e.id for e in store.failed_events(OTHER_STORE, Status.REJECTED)] == [event(1).id]


@pytest.mark.anyio
async def test_summary(store: StateStore) -> None:
    first = store.begin_run(PIPELINE)
    store.end_run(first, 0, {"delivered": 1})
    second = store.begin_run(OTHER_STORE)
    store.begin_run(OTHER)
    store.record_many(
        PIPELINE, second, [outcome(1, Status.DELIVERED), outcome(2, Status.DELIVERED)]
    )
    await store.record(PIPELINE, second, outcome(3, Status.REJECTED, error="invalid email"))
    await store.record(PIPELINE, second, outcome(4, Status.FAILED, error="HTTP 503"))
    store.record_many(OTHER_STORE, second, [outcome(1, Status.DELIVERED)])
    store.record_many(OTHER, second, [outcome(5, Status.DELIVERED)])
    store.set_watermark(PIPELINE, 99)
    summary = store.summary(PIPELINE.pipeline)
    assert summary.pipeline == PIPELINE.pipeline
    got = [(r.id, r.store_id, r.exit_code, r.summary, r.ended_at is None) for r in summary.runs]
    assert got == [
        (second, "store-2", None, {}, True),
        (first, "store-1", 0, {"delivered": 1}, False),
    ]
    assert summary.runs[1].started_at <= summary.runs[1].ended_at
    assert summary.runs[0].started_at.tzinfo is UTC
    assert summary.totals == {Status.DELIVERED: 3, Status.REJECTED: 1, Status.FAILED: 1}
    one, two = summary.destinations
    assert (one.base_url, one.store_id, two.store_id) == (PIPELINE.base_url, "store-1", "store-2")
    assert one.totals == {Status.DELIVERED: 2, Status.REJECTED: 1, Status.FAILED: 1}
    assert (two.totals, two.watermark, two.last_errors) == ({Status.DELIVERED: 1}, None, [])
    assert one.watermark == 99
    assert [(i, e) for i, e, _ in one.last_errors] == [
        (event(4).id, "HTTP 503"),
        (event(3).id, "invalid email"),
    ]
    assert all(when.tzinfo is UTC for _, _, when in one.last_errors)


def test_summary_of_an_empty_store(store: StateStore) -> None:
    summary = store.summary(PIPELINE.pipeline)
    assert (summary.runs, summary.totals, summary.destinations) == ([], {}, [])


@pytest.mark.anyio
async def test_end_run_and_close_flush_pending_records(url: str) -> None:
    writer = StateStore(url)
    tasks = [
        asyncio.create_task(writer.record(PIPELINE, 1, outcome(n, Status.DELIVERED)))
        for n in range(50)
    ]
    await asyncio.sleep(0)  # every task has submitted; none is necessarily committed
    writer.close()
    await asyncio.gather(*tasks)
    reader = StateStore(url)
    assert len(reader.known(PIPELINE, [event(n).id for n in range(50)])) == 50
    reader.close()
    with pytest.raises(RuntimeError, match="closed"):
        await writer.record(PIPELINE, 1, outcome(1, Status.DELIVERED))


_KILLED_WRITER = textwrap.dedent(
    """
    import asyncio, sys, uuid
    from etl.events import Event, EventBatch, Outcome, Status
    from etl.state import Scope, StateStore

    store = StateStore(sys.argv[1])

    async def worker(offset):
        n = offset
        while True:
            event_id = str(uuid.UUID(int=n))
            done = Outcome(Event(event_id, b"{}", "h"), Status.DELIVERED, 1)
            await store.record(Scope("killed", "http://127.0.0.1", "s"), 1, done)
            print(event_id, flush=True)
            n += 32

    async def main():
        await asyncio.gather(*(worker(i) for i in range(32)))

    asyncio.run(main())
    """
)


def test_kill_9_loses_no_acknowledged_outcome(url: str) -> None:
    StateStore(url).close()  # the schema exists before the child starts
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert child.stdout is not None
    acknowledged = []
    for line in child.stdout:
        acknowledged.append(line.strip())
        if len(acknowledged) >= 400:
            break
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    acknowledged += rest.split()
    assert child.returncode == -signal.SIGKILL
    reader = StateStore(url)
    found = reader.known(Scope("killed", "http://127.0.0.1", "s"), acknowledged)
    reader.close()
    assert len(acknowledged) >= 400
    assert set(found) == set(acknowledged)


def _row(store: StateStore, n: int) -> dict[str, Any]:
    with store.engine.connect() as connection:
        query = sa.select(events).where(events.c.event_id == event(n).id)
        return dict(connection.execute(query).one()._mapping)
