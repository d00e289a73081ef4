"""The durable record of every event's latest outcome, the runs, and the watermark (SPEC §6).

A multi-day backfill is stopped, killed and rebooted; a rerun must neither lose nor
repeat work. So `record` returns only once its outcome is committed, and to keep that
affordable at thousands of events per second, outcomes are group-committed: every
caller appends to one pending list and waits; a single writer thread takes all that
is pending, writes it in ONE transaction, commits, and wakes every waiter, while the
next batch accumulates. A `kill -9` loses at most the outcomes not yet acknowledged,
i.e. the requests in flight, which are sent again harmlessly (same event id).

SQLite runs in WAL mode with `synchronous=NORMAL`: a commit survives the process
being killed at any moment; an OS crash or power loss may lose the last few commits
(those events are sent again, same id). Use a server database for stronger guarantees.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from etl.errors import AbortError
from etl.events import Event, Outcome, Status
from etl.state.schema import (
    NOT_DELIVERED,
    SCHEMA_VERSION,
    decode_value,
    encode_value,
    events,
    metadata,
    runs,
    schema_version,
    sent_types,
    watermarks,
)

#: Ids per IN (...) query: below every database's bound-parameter limit.
_LOOKUP_CHUNK = 5_000
#: Failed events read per short query while the pipeline resends them.
_FAILED_PAGE = 1_000
_LISTED = 10


@dataclass(frozen=True)
class RunRecord:
    """One run as the store remembers it; `ended_at` is None while running or after a kill."""

    id: int
    pipeline: str
    started_at: datetime
    ended_at: datetime | None
    exit_code: int | None
    summary: dict  # the run's JSON report


@dataclass(frozen=True)
class StateSummary:
    """What `etl status` shows."""

    pipeline: str
    runs: list[RunRecord]  # most recent first, up to 10
    totals: dict[Status, int]  # events per latest status
    watermark: Any  # None when never set
    last_errors: list[tuple[str, str, datetime]]  # (event id, error, time), latest first, up to 10


class StateStore:
    """SQLAlchemy-backed; SQLite file by default (WAL), any SQLAlchemy URL for shared use.

    `commits` counts the transactions that wrote outcomes, to show batching at work.
    """

    def __init__(self, url: str) -> None:
        self.engine = _engine(url)
        self.commits = 0
        self._writer: _GroupWriter | None = None
        self._writer_lock = threading.Lock()
        self._closed = False
        _create_or_upgrade(self.engine)

    # -- runs -----------------------------------------------------------------------
    def begin_run(self, pipeline: str) -> int:
        """Open a run row; its id tags every outcome the run records."""
        with self.engine.begin() as connection:
            result = connection.execute(runs.insert().values(pipeline=pipeline, started_at=_now()))
            return int(result.inserted_primary_key[0])

    def end_run(self, run_id: int, exit_code: int, summary: dict) -> None:
        """Close a run with its exit code and JSON report (flushing pending outcomes first)."""
        self._flush()
        with self.engine.begin() as connection:
            connection.execute(
                runs.update()
                .where(runs.c.id == run_id)
                .values(
                    ended_at=_now(),
                    exit_code=exit_code,
                    summary=json.dumps(summary, default=str),
                )
            )

    # -- events ---------------------------------------------------------------------
    def known(self, pipeline: str, ids: Sequence[str]) -> dict[str, tuple[str, Status]]:
        """id -> (payload_hash, status) for the ids the store has seen; the diff's input."""
        found: dict[str, tuple[str, Status]] = {}
        query = sa.select(events.c.event_id, events.c.payload_hash, events.c.status).where(
            events.c.pipeline == pipeline,
            events.c.event_id.in_(sa.bindparam("ids", expanding=True)),
        )
        with self.engine.connect() as connection:
            for start in range(0, len(ids), _LOOKUP_CHUNK):
                chunk = list(ids[start : start + _LOOKUP_CHUNK])
                for event_id, payload_hash, status in connection.execute(query, {"ids": chunk}):
                    found[event_id] = (payload_hash, Status(status))
        return found

    async def record(self, pipeline: str, run_id: int, outcome: Outcome) -> None:
        """Return once the outcome is committed; concurrent callers share one transaction."""
        await self._group_writer().submit(_row(pipeline, run_id, outcome))

    def record_many(self, pipeline: str, run_id: int, outcomes: Iterable[Outcome]) -> None:
        """Record a batch synchronously, in one transaction."""
        self._write([_row(pipeline, run_id, outcome) for outcome in outcomes])

    def failed_events(self, pipeline: str) -> Iterator[Event]:
        """Events whose latest status is failed, rebuilt as they were sent, in id order.

        Read page by page in short queries, so the caller may record outcomes for the
        events already yielded while iterating.
        """
        query = (
            sa.select(events.c.event_id, events.c.body, events.c.payload_hash, events.c.cursor)
            .where(
                events.c.pipeline == pipeline,
                events.c.status == Status.FAILED.value,
                NOT_DELIVERED,
            )
            .order_by(events.c.event_id)
            .limit(_FAILED_PAGE)
        )
        after: str | None = None
        while True:
            page_query = query if after is None else query.where(events.c.event_id > after)
            with self.engine.connect() as connection:
                page = connection.execute(page_query).all()
            for event_id, body, payload_hash, cursor in page:
                yield Event(
                    id=event_id,
                    body=bytes(body),
                    payload_hash=payload_hash,
                    cursor=decode_value(cursor),
                )
            if len(page) < _FAILED_PAGE:
                return
            after = page[-1][0]

    # -- watermark ------------------------------------------------------------------
    def watermark(self, pipeline: str) -> Any:
        """The stored watermark in its original Python type, or None when never set."""
        with self.engine.connect() as connection:
            text = connection.execute(
                sa.select(watermarks.c.value).where(watermarks.c.pipeline == pipeline)
            ).scalar_one_or_none()
        return decode_value(text)

    def set_watermark(self, pipeline: str, value: Any) -> None:
        """Store an int, float, Decimal, str, date or datetime (aware or naive) watermark."""
        row = {"pipeline": pipeline, "value": encode_value(value)}
        with self.engine.begin() as connection:
            statement = _upsert(connection, watermarks, lambda new: {"value": new.value})
            connection.execute(statement, [row])

    # -- type drift -----------------------------------------------------------------
    def sent_types(self, pipeline: str, role: str) -> dict[str, str]:
        """Name -> type last recorded for `role` ("property": JSON type; "key": id key column)."""
        query = sa.select(sent_types.c.name, sent_types.c.type).where(
            sent_types.c.pipeline == pipeline, sent_types.c.role == role
        )
        with self.engine.connect() as connection:
            return {name: kind for name, kind in connection.execute(query)}

    def set_sent_types(self, pipeline: str, role: str, types: dict[str, str]) -> None:
        """Remember these types (others of the role stay as they were)."""
        if not types:
            return
        now = _now()
        rows = [{"pipeline": pipeline, "role": role, "name": name, "type": kind, "updated_at": now}
                for name, kind in types.items()]
        with self.engine.begin() as connection:
            connection.execute(_upsert(connection, sent_types, _type_update), rows)

    # -- reporting ------------------------------------------------------------------
    def summary(self, pipeline: str) -> StateSummary:
        """Recent runs, totals per status, watermark and the latest errors of one pipeline."""
        with self.engine.connect() as connection:
            run_rows = connection.execute(
                sa.select(runs)
                .where(runs.c.pipeline == pipeline)
                .order_by(runs.c.id.desc())
                .limit(_LISTED)
            ).all()
            counts = dict(
                connection.execute(
                    sa.select(events.c.status, sa.func.count())
                    .where(events.c.pipeline == pipeline)
                    .group_by(events.c.status)
                ).all()
            )
            errors = connection.execute(
                sa.select(events.c.event_id, events.c.last_error, events.c.last_at)
                .where(
                    events.c.pipeline == pipeline,
                    events.c.status.in_([Status.FAILED.value, Status.REJECTED.value]),
                    NOT_DELIVERED,
                )
                .order_by(events.c.last_at.desc(), events.c.event_id)
                .limit(_LISTED)
            ).all()
        return StateSummary(
            pipeline=pipeline,
            runs=[
                RunRecord(
                    id=r.id,
                    pipeline=r.pipeline,
                    started_at=r.started_at,
                    ended_at=r.ended_at,
                    exit_code=r.exit_code,
                    summary=json.loads(r.summary) if r.summary else {},
                )
                for r in run_rows
            ],
            totals={status: counts[status.value] for status in Status if status.value in counts},
            watermark=self.watermark(pipeline),
            last_errors=[(event_id, error or "", when) for event_id, error, when in errors],
        )

    def close(self) -> None:
        """Commit what is pending, stop the writer and release the connections."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.stop()
        self.engine.dispose()

    # -- internals ------------------------------------------------------------------
    def _group_writer(self) -> _GroupWriter:
        with self._writer_lock:
            if self._closed:
                raise RuntimeError("the state store is closed")
            if self._writer is None:
                self._writer = _GroupWriter(self._write)
            return self._writer

    def _flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def _write(self, rows: list[dict[str, Any]]) -> None:
        """Upsert outcome rows in one transaction; attempts add up, the rest is the latest."""
        if not rows:
            return
        with self.engine.begin() as connection:
            connection.execute(_upsert(connection, events, _event_update), _merge(rows))
        self.commits += 1


class _GroupWriter:
    """One thread that commits everything pending in one transaction, then wakes the waiters."""

    def __init__(self, write: Callable[[list[dict[str, Any]]], None]) -> None:
        self._write = write
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._condition = threading.Condition()
        self._busy = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="etl-state-writer", daemon=True)
        self._thread.start()

    async def submit(self, row: dict[str, Any]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._condition:
            if self._stopping:
                raise RuntimeError("the state store is closed")
            self._pending.append((row, future))
            self._condition.notify_all()
        await future

    def flush(self) -> None:
        """Block until everything submitted so far is committed."""
        with self._condition:
            self._condition.wait_for(lambda: not self._pending and not self._busy)

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._pending or self._stopping)
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
                self._busy = True
            error: BaseException | None = None
            try:
                self._write([row for row, _ in batch])
            except Exception as exc:  # handed to every waiter of this batch; the writer lives on
                error = exc
            for _, waiter in batch:
                _resolve(waiter, error)
            with self._condition:
                self._busy = False
                self._condition.notify_all()


def _resolve(waiter: asyncio.Future[None], error: BaseException | None) -> None:
    def settle() -> None:
        if waiter.done():  # the awaiting task was cancelled
            return
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)

    try:
        waiter.get_loop().call_soon_threadsafe(settle)
    except RuntimeError:  # its event loop is closed: nobody is waiting any more
        pass


def _now() -> datetime:
    return datetime.now(UTC)


def _row(pipeline: str, run_id: int, outcome: Outcome) -> dict[str, Any]:
    event = outcome.event
    now = _now()
    return {
        "pipeline": pipeline,
        "event_id": event.id,
        "payload_hash": event.payload_hash,
        "status": outcome.status.value,
        "attempts": outcome.attempts,
        "last_error": outcome.error,
        "first_at": now,
        "last_at": now,
        "run_id": run_id,
        # Only a failed event is ever resent from state; delivered bodies would only grow the file.
        "body": event.body if outcome.status is Status.FAILED else None,
        "cursor": encode_value(event.cursor),
    }


def _merge(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per event: an upsert statement may not touch the same row twice."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["pipeline"], row["event_id"])
        earlier = merged.get(key)
        if earlier is not None:
            row = {**row, "attempts": earlier["attempts"] + row["attempts"]}
        merged[key] = row
    return list(merged.values())


def _event_update(new: Any) -> dict[str, Any]:
    """The columns an outcome overwrites; `new` is the dialect's EXCLUDED/VALUES() accessor."""
    return {
        "payload_hash": new.payload_hash,
        "status": new.status,
        "attempts": events.c.attempts + new.attempts,
        "last_error": new.last_error,
        "last_at": new.last_at,
        "run_id": new.run_id,
        "body": new.body,
        "cursor": new.cursor,
    }


def _type_update(new: Any) -> dict[str, Any]:
    return {"type": new.type, "updated_at": new.updated_at}


def _upsert(
    connection: sa.Connection, table: sa.Table, update: Callable[[Any], dict[str, Any]]
) -> Any:
    """INSERT ... ON CONFLICT/ON DUPLICATE KEY UPDATE in the connection's dialect."""
    name = connection.dialect.name
    if name in ("sqlite", "postgresql"):
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        statement = insert(table)
        return statement.on_conflict_do_update(
            index_elements=list(table.primary_key.columns), set_=update(statement.excluded)
        )
    if name in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert

        statement = insert(table)
        return statement.on_duplicate_key_update(update(statement.inserted))
    raise AbortError(f"the state store supports SQLite, PostgreSQL and MySQL/MariaDB, not {name}")


def _engine(url: str) -> sa.Engine:
    """An engine whose errors never quote parameters: bodies carry emails and phone numbers."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True, hide_parameters=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed, connect_args={"timeout": 60}, hide_parameters=True)

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    return engine


def _create_or_upgrade(engine: sa.Engine) -> None:
    """Create missing tables and stamp the schema version; refuse a newer schema."""
    metadata.create_all(engine)
    with engine.begin() as connection:
        stored = connection.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
        if stored is None:
            connection.execute(schema_version.insert().values(version=SCHEMA_VERSION))
        elif stored > SCHEMA_VERSION:
            where = engine.url.render_as_string(hide_password=True)
            raise AbortError(
                f"state store {where} has schema version {stored}, newer than this etl "
                f"understands ({SCHEMA_VERSION}); upgrade yotpo-events-etl"
            )
