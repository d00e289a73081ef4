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
from contextlib import AbstractContextManager, nullcontext, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from etl.errors import StateError
from etl.events import Event, EventBatch, Outcome, Status
from etl.state.errors import sqlite_path, state_errors
from etl.state.lock import RunLock, opening
from etl.state.migrations import create_or_upgrade
from etl.state.reserve import Reserve
from etl.state.schema import (
    NOT_DELIVERED,
    decode_value,
    encode_value,
    events,
    runs,
    sent_types,
    watermarks,
)
from etl.state.scope import LEGACY, Scope
from etl.state.status import DestinationStatus, RunRecord, StatusReport

#: Ids per IN (...) query: below every database's bound-parameter limit.
_LOOKUP_CHUNK = 5_000
#: Failed events read per short query while the pipeline resends them.
_FAILED_PAGE = 1_000
_LISTED = 10


class StateStore:
    """SQLAlchemy-backed; SQLite file by default (WAL), any SQLAlchemy URL for shared use.

    Every method takes the `Scope` (pipeline and destination) whose rows it reads or
    writes. Database and file-system errors surface as `StateError` (exit 3), one line
    naming the store. `commits` counts the transactions that wrote outcomes.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.commits = 0
        self._writer: GroupWriter | None = None
        self._writer_lock = threading.Lock()
        self._closed = False
        self._run_lock: RunLock | None = None
        self._reserve: Reserve | None = None
        with self._errors("open"):
            path = sqlite_path(url)
            with opening(path) if path else nullcontext():
                self.engine = _engine(url)
                create_or_upgrade(self.engine)

    def _errors(self, doing: str) -> AbstractContextManager[None]:
        return state_errors(self.url, doing)

    # -- runs -----------------------------------------------------------------------
    def hold_run_lock(self, pipeline: str) -> None:
        """One run of a pipeline at a time on a SQLite file (SPEC §6); held until `close`.

        A lock on a file beside the database, which the kernel drops with the process,
        so a holder killed with `kill -9` blocks nobody. Server databases need none.
        With it, a little disk space is reserved for recording the run's end.
        """
        path = sqlite_path(self.url)
        if path is None or self._run_lock is not None:
            return
        with self._errors("lock"):
            self._run_lock = RunLock.acquire(path.with_name(f"{path.name}.{pipeline}.lock"))
            self._reserve = Reserve(path.with_name(f"{path.name}.{pipeline}.reserve"))

    def adopt_legacy(self, scope: Scope) -> None:
        """Give rows of a store from before destinations (schema 1) to `scope`'s destination."""
        legacy = Scope(scope.pipeline, *LEGACY)
        with self._errors("upgrade"), self.engine.begin() as connection:
            for table in (events, watermarks):
                connection.execute(table.update().where(legacy.where(table)).values(scope.values()))
            connection.execute(
                runs.update()
                .where(runs.c.pipeline == scope.pipeline, runs.c.base_url.is_(None))
                .values(scope.values())
            )

    def begin_run(self, scope: Scope) -> int:
        """Open a run row; its id tags every outcome the run records."""
        with self._errors("write"), self.engine.begin() as connection:
            result = connection.execute(runs.insert().values(**scope.values(), started_at=_now()))
            key = result.inserted_primary_key
            if key is None:  # only an INSERT of no row has none
                raise StateError("the state store gave the new run no id")
            return int(key[0])

    def end_run(self, run_id: int, exit_code: int, summary: dict[str, Any]) -> None:
        """Close a run with its exit code and JSON report (flushing pending outcomes first).

        When the write fails (a full disk), the reserved space is freed and it is tried again.
        """
        self._flush()
        try:
            self._end_run(run_id, exit_code, summary)
        except StateError:
            if self._reserve is None or not self._reserve.free():
                raise
            self._end_run(run_id, exit_code, summary)

    def _end_run(self, run_id: int, exit_code: int, summary: dict[str, Any]) -> None:
        with self._errors("write"), self.engine.begin() as connection:
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
    def known(self, scope: Scope, ids: Sequence[str]) -> dict[str, tuple[str, Status]]:
        """id -> (payload_hash, status) for the ids the store has seen; the diff's input."""
        found: dict[str, tuple[str, Status]] = {}
        query = sa.select(events.c.event_id, events.c.payload_hash, events.c.status).where(
            scope.where(events),
            events.c.event_id.in_(sa.bindparam("ids", expanding=True)),
        )
        with self._errors("read"), self.engine.connect() as connection:
            for start in range(0, len(ids), _LOOKUP_CHUNK):
                chunk = list(ids[start : start + _LOOKUP_CHUNK])
                for event_id, payload_hash, status in connection.execute(query, {"ids": chunk}):
                    found[event_id] = (payload_hash, Status(status))
        return found

    def unchanged(self, scope: Scope, batch: EventBatch, resend: Status | None = None) -> list[int]:
        """Positions of the batch's events that need not be sent again (the diff, SPEC §6):
        delivered or refused by the API before with the same payload hash.

        A failed event is always sent again, and so is one of status `resend` (rejected,
        with --retry-rejected). With many stores each event is looked up at its own store.
        """
        known = self._known_of(scope, batch)
        if not known:
            return []
        return [
            row
            for row, event in enumerate(batch.events())  # objects only for a known chunk
            if _same_outcome(known.get(event.id), event.payload_hash, resend)
        ]

    def _known_of(self, scope: Scope, batch: EventBatch) -> dict[str, tuple[str, Status]]:
        ids = batch.ids.to_pylist()
        if batch.stores is None:
            return self.known(scope, ids)
        by_store: dict[str, list[str]] = {}
        for event_id, store in zip(ids, batch.stores, strict=True):
            by_store.setdefault(store, []).append(event_id)
        known: dict[str, tuple[str, Status]] = {}
        for store, store_ids in by_store.items():
            known.update(self.known(scope.for_store(store), store_ids))
        return known

    async def record(self, scope: Scope, run_id: int, outcome: Outcome) -> None:
        """Return once the outcome is committed; concurrent callers share one transaction."""
        await self._group_writer().submit(outcome_row(scope, run_id, outcome))

    def record_many(self, scope: Scope, run_id: int, outcomes: Iterable[Outcome]) -> None:
        """Record a batch synchronously, in one transaction."""
        self._write([outcome_row(scope, run_id, outcome) for outcome in outcomes])

    def failed_events(self, scope: Scope, status: Status = Status.FAILED) -> Iterator[Event]:
        """Events whose latest status is `status` (failed, or rejected for `--retry-rejected`),
        rebuilt as they were sent, in id order; rejected events of schema 1 kept no body.

        Read page by page in short queries, so the caller may record outcomes for the
        events already yielded while iterating.
        """
        query = (
            sa.select(events.c.event_id, events.c.body, events.c.payload_hash, events.c.cursor)
            .where(
                scope.where(events),
                events.c.status == status.value,
                events.c.body.is_not(None),
                NOT_DELIVERED,
            )
            .order_by(events.c.event_id)
            .limit(_FAILED_PAGE)
        )
        after: str | None = None
        while True:
            page_query = query if after is None else query.where(events.c.event_id > after)
            with self._errors("read"), self.engine.connect() as connection:
                page = connection.execute(page_query).all()
            for event_id, body, payload_hash, cursor in page:
                yield Event(
                    id=event_id,
                    body=bytes(body),
                    payload_hash=payload_hash,
                    cursor=decode_value(cursor),
                    store=scope.store_id,
                )
            if len(page) < _FAILED_PAGE:
                return
            after = page[-1][0]

    def stores_with(self, scope: Scope, status: Status) -> list[str]:
        """The stores of `scope`'s pipeline and base URL holding events of `status` (SPEC §10)."""
        with self._errors("read"), self.engine.connect() as connection:
            return list(
                connection.execute(
                    sa.select(events.c.store_id)
                    .distinct()
                    .where(
                        events.c.pipeline == scope.pipeline,
                        events.c.base_url == scope.base_url,
                        events.c.status == status.value,
                    )
                    .order_by(events.c.store_id)
                ).scalars()
            )

    # -- watermark ------------------------------------------------------------------
    def watermark(self, scope: Scope) -> Any:
        """The stored watermark in its original Python type, or None when never set."""
        with self._errors("read"), self.engine.connect() as connection:
            text = connection.execute(
                sa.select(watermarks.c.value).where(scope.where(watermarks))
            ).scalar_one_or_none()
        return decode_value(text)

    def set_watermark(self, scope: Scope, value: Any) -> None:
        """Store an int, float, Decimal, str, date or datetime (aware or naive) watermark."""
        row = {**scope.values(), "value": encode_value(value)}
        with self._errors("write"), self.engine.begin() as connection:
            statement = upsert(connection, watermarks, lambda new: {"value": new.value})
            connection.execute(statement, [row])

    # -- type drift -----------------------------------------------------------------
    def sent_types(self, pipeline: str, role: str) -> dict[str, str]:
        """Name -> type last recorded for `role` ("property": JSON type; "key": id key column)."""
        query = sa.select(sent_types.c.name, sent_types.c.type).where(
            sent_types.c.pipeline == pipeline, sent_types.c.role == role
        )
        with self._errors("read"), self.engine.connect() as connection:
            return {name: kind for name, kind in connection.execute(query)}

    def set_sent_types(self, pipeline: str, role: str, types: dict[str, str]) -> None:
        """Remember these types (others of the role stay as they were)."""
        if not types:
            return
        now = _now()
        rows = [
            {"pipeline": pipeline, "role": role, "name": name, "type": kind, "updated_at": now}
            for name, kind in types.items()
        ]
        with self._errors("write"), self.engine.begin() as connection:
            connection.execute(upsert(connection, sent_types, _type_update), rows)

    # -- reporting ------------------------------------------------------------------
    def summary(self, pipeline: str) -> StatusReport:
        """Recent runs, and per destination: totals, watermark and latest errors (masked)."""
        with self._errors("read"), self.engine.connect() as connection:
            run_rows = connection.execute(
                sa.select(runs)
                .where(runs.c.pipeline == pipeline)
                .order_by(runs.c.id.desc())
                .limit(_LISTED)
            ).all()
            scopes = [
                Scope(pipeline, base_url, store_id)
                for base_url, store_id in connection.execute(
                    sa.select(events.c.base_url, events.c.store_id)
                    .where(events.c.pipeline == pipeline)
                    .union(
                        sa.select(watermarks.c.base_url, watermarks.c.store_id).where(
                            watermarks.c.pipeline == pipeline
                        )
                    )
                    .order_by("base_url", "store_id")
                ).all()
            ]
            destinations = [self._destination(connection, scope) for scope in scopes]
        return StatusReport.build(pipeline, destinations, [_run_record(row) for row in run_rows])

    def _destination(self, connection: sa.Connection, scope: Scope) -> DestinationStatus:
        counts: dict[str, int] = dict(
            connection.execute(
                sa.select(events.c.status, sa.func.count())
                .where(scope.where(events))
                .group_by(events.c.status)
            ).all()
        )
        errors = connection.execute(
            sa.select(events.c.event_id, events.c.last_error, events.c.last_at)
            .where(
                scope.where(events),
                events.c.status.in_([Status.FAILED.value, Status.REJECTED.value]),
                NOT_DELIVERED,
            )
            .order_by(events.c.last_at.desc(), events.c.event_id)
            .limit(_LISTED)
        ).all()
        watermark = connection.execute(
            sa.select(watermarks.c.value).where(scope.where(watermarks))
        ).scalar_one_or_none()
        return DestinationStatus.build(
            scope.base_url,
            scope.store_id,
            {status: counts[status.value] for status in Status if status.value in counts},
            decode_value(watermark),
            [(event_id, error or "", when) for event_id, error, when in errors],
        )

    def close(self) -> None:
        """Commit what is pending, stop the writer and release the connections."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.stop()
        if self._reserve is not None:
            self._reserve.free()
        if self._run_lock is not None:
            self._run_lock.release()
        self.engine.dispose()

    # -- internals ------------------------------------------------------------------
    def _group_writer(self) -> GroupWriter:
        with self._writer_lock:
            if self._closed:
                raise RuntimeError("the state store is closed")
            if self._writer is None:
                self._writer = GroupWriter(self._write)
            return self._writer

    def _flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def _write(self, rows: list[dict[str, Any]]) -> None:
        """Upsert outcome rows in one transaction; attempts add up, the rest is the latest."""
        if not rows:
            return
        with self._errors("write"), self.engine.begin() as connection:
            connection.execute(upsert(connection, events, event_update), merged_rows(rows))
        self.commits += 1


class GroupWriter:
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

    with suppress(RuntimeError):  # its event loop is closed: nobody is waiting any more
        waiter.get_loop().call_soon_threadsafe(settle)


def _same_outcome(
    known: tuple[str, Status] | None, payload_hash: str, resend: Status | None
) -> bool:
    """Sent before with this payload, and not failed (nor of the status to resend)."""
    return (
        known is not None
        and known[0] == payload_hash
        and known[1] is not Status.FAILED
        and known[1] is not resend
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _run_record(row: Any) -> RunRecord:
    return RunRecord(
        id=row.id,
        pipeline=row.pipeline,
        base_url=row.base_url,
        store_id=row.store_id,
        started_at=row.started_at,
        ended_at=row.ended_at,
        exit_code=row.exit_code,
        summary=json.loads(row.summary) if row.summary else {},
    )


def outcome_row(scope: Scope, run_id: int, outcome: Outcome) -> dict[str, Any]:
    event = outcome.event
    now = _now()
    return {
        **scope.values(),
        "event_id": event.id,
        "payload_hash": event.payload_hash,
        "status": outcome.status.value,
        "attempts": outcome.attempts,
        "last_error": outcome.error,
        "first_at": now,
        "last_at": now,
        "run_id": run_id,
        # Only failed and rejected events are resent from state (the latter with
        # --retry-rejected); delivered bodies would only grow the file.
        "body": None if outcome.status is Status.DELIVERED else event.body,
        "cursor": encode_value(event.cursor),
    }


def merged_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per event: an upsert statement may not touch the same row twice."""
    merged: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["pipeline"], row["base_url"], row["store_id"], row["event_id"])
        earlier = merged.get(key)
        if earlier is not None:
            row = {**row, "attempts": earlier["attempts"] + row["attempts"]}
        merged[key] = row
    return list(merged.values())


def event_update(new: Any) -> dict[str, Any]:
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


def upsert(
    connection: sa.Connection, table: sa.Table, update: Callable[[Any], dict[str, Any]]
) -> Any:
    """INSERT ... ON CONFLICT/ON DUPLICATE KEY UPDATE in the connection's dialect."""
    name = connection.dialect.name
    if name in ("sqlite", "postgresql"):
        from sqlalchemy.dialects import postgresql, sqlite

        statement = (sqlite.insert if name == "sqlite" else postgresql.insert)(table)
        return statement.on_conflict_do_update(
            index_elements=list(table.primary_key.columns), set_=update(statement.excluded)
        )
    if name in ("mysql", "mariadb"):
        from sqlalchemy.dialects import mysql

        upsert = mysql.insert(table)
        return upsert.on_duplicate_key_update(update(upsert.inserted))
    raise StateError(f"the state store supports SQLite, PostgreSQL and MySQL/MariaDB, not {name}")


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
        cursor.execute("PRAGMA busy_timeout=60000")  # first: switching to WAL may wait
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine
