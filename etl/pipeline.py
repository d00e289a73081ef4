"""A run, end to end: pending work first, then extract -> validate -> transform -> load.

Extraction, validation and transformation happen in a worker thread one chunk ahead
of the senders, so a fast API is never starved and a slow one never makes the whole
source sit in memory: at most the chunk being sent and the one being prepared are
held (SPEC §7). Every outcome is durable in the state store before its worker takes
the next event, which is what makes a `kill -9` cost at most the requests in flight.

    >>> import etl
    >>> pipeline = etl.load_pipeline("pipelines/orders_shipped.yaml")
    >>> report = etl.run(pipeline, etl.RunOptions(dry_run=True))
    >>> report.exit_code
    1
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pandas as pd

from etl.column_types import ColumnTypes, key_type_problem, type_changes
from etl.definition import Pipeline, parse_pipeline
from etl.errors import AbortError, DefinitionError, RunInterrupted, StateError
from etl.events import Event, EventBatch, Outcome, Status
from etl.extract import Window, open_extractor
from etl.partition import StoreFilter, owned_rows
from etl.quarantine import EVENT_ID, REJECT_REASON, REJECT_RULE, Quarantine
from etl.redact import mask_in_text
from etl.report import ProgressDisplay, RunReport
from etl.store_credentials import StoreCredentials
from etl.stores import StoreRouter
from etl.transform import Transformer
from etl.validate import Validator
from etl.watch import watching

if TYPE_CHECKING:  # imported where used: a dry run without state needs neither httpx nor SQLAlchemy
    import httpx

    from etl.load import Loader
    from etl.load.fanout import FanOut
    from etl.load.loader import LoadStats
    from etl.state import Scope, StateStore
    from etl.workers import LeasedWork

log = logging.getLogger("etl")
#: Reject examples kept per rule for `etl validate`.
EXAMPLES_PER_RULE = 3
#: Failed events of earlier runs are read back from state this many at a time.
RETRY_BATCH = 1000


@dataclass(frozen=True)
class RunOptions:
    """How to run a pipeline; the CLI's `etl run` options, for orchestrators."""

    dry_run: bool = False  # everything but HTTP; nothing is written to state
    output: Path | None = None  # dry run: write the bodies that would be sent, one per line
    limit: int | None = None  # read at most this many source rows
    since: str | None = None  # overrides the stored watermark (exclusive lower bound)
    until: str | None = None  # inclusive upper bound on the incremental cursor
    full_refresh: bool = False  # ignore state: resend everything
    retry_rejected: bool = False  # resend the events the API rejected before, first
    progress: bool | None = None  # live display; None = only on a terminal
    metrics_port: int | None = None  # serve Prometheus metrics on this port while running
    metrics_host: str = "127.0.0.1"
    progress_interval: float = 10.0  # seconds between progress log lines off a terminal
    stores: StoreFilter | None = None  # rows naming their stores: only these (SPEC §11)


def load_pipeline(path: str | os.PathLike[str]) -> Pipeline:
    """Parse a pipeline file and check that every mapped column exists in the source."""
    pipeline = parse_pipeline(path)
    extractor = open_extractor(pipeline.source)
    available = set(extractor.columns())
    has = ", ".join(sorted(available))
    missing = [
        (key, f"column {column!r} is not in the source (it has: {has})")
        for column, key in pipeline.column_keys().items()
        if column not in available
    ]
    missing += [
        (f"source.columns.{column}", f"column {column!r} is not in the source (it has: {has})")
        for column in pipeline.source.columns
        if column not in available
    ]
    missing += _unsendable(pipeline, extractor, available)
    if missing:
        raise DefinitionError(pipeline.file, missing)
    return pipeline


def _unsendable(pipeline: Pipeline, extractor: Any, available: set[str]) -> list[tuple[str, str]]:
    """Mapped, undeclared columns of a type JSON cannot carry (Parquet binary, durations)."""
    unsendable = getattr(extractor, "unsendable", None)
    keys = pipeline.column_keys()
    columns = [c for c in keys if c in available and c not in pipeline.source.columns]
    if unsendable is None or not columns:
        return []
    return [
        (keys[column], f"column {column!r} is of type {kind}, which no JSON value can carry "
                       f"(map another column, or declare it in source.columns, e.g. string)")
        for column, kind in unsendable(columns).items()
    ]


@dataclass
class _Prepared:
    """One chunk after validation and transformation, with what the loop must count."""

    chunk: pd.DataFrame  # the source rows; empty unless a real run may need them back
    rows: int
    labels: list[Any]  # original index label of each event
    batch: EventBatch
    valid: int
    skipped: int
    rejects: pd.DataFrame
    skipped_cursors: list[Any] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=dict)


class _Watermark:
    """Tracks how far the incremental cursor may advance: past done rows, never past failed ones.

    Exact while failures arrive in cursor order; otherwise it keeps the old watermark
    (safe: diffing makes the re-read rows cost nothing to send).
    """

    def __init__(self) -> None:
        self.done_max: Any = None
        self.blocked_min: Any = None
        self.lost_track = False

    def done(self, cursor: Any) -> None:
        if cursor is None or pd.isna(cursor):
            return
        if self.blocked_min is not None and cursor >= self.blocked_min:
            return
        if self.done_max is None or cursor > self.done_max:
            self.done_max = cursor

    def blocked(self, cursor: Any) -> None:
        if cursor is None or pd.isna(cursor):
            return
        if self.blocked_min is None or cursor < self.blocked_min:
            self.blocked_min = cursor
            if self.done_max is not None and self.done_max >= cursor:
                self.lost_track = True

    def new_value(self, old: Any) -> Any:
        if self.lost_track or self.done_max is None:
            return old
        if old is not None and self.done_max <= old:
            return old
        return self.done_max


class _Run:
    """The state of one run; `execute` is the whole of it."""

    def __init__(self, pipeline: Pipeline, options: RunOptions, mode: str) -> None:
        pipeline.require(mode)  # a validate needs no credentials, a dry run only the store id
        self.pipeline = pipeline
        self.options = options
        self.mode = mode
        destination = pipeline.destination
        constant = destination.store_id if isinstance(destination.store_id, str) else None
        self.report = RunReport(pipeline=pipeline.name, mode=mode, store=constant)
        self.validator = Validator(pipeline.event, pipeline.source.columns)
        self.types = ColumnTypes(pipeline)
        cursor = pipeline.source.incremental.cursor if pipeline.source.incremental else None
        self.cursor = cursor
        self.store_column = destination.store_column
        self.transformer = Transformer(pipeline.event, constant or "", cursor, self.store_column)
        self.router = self._router()
        self.scope: Scope
        self.state = self._open_state()
        self.watermark = _Watermark()
        self.examples: dict[str, list[str]] = {}
        self.origins: dict[str, tuple[pd.DataFrame, Any]] = {}
        self.retry_ids: set[str] = set()
        self.extraction_complete = False
        self.output: BinaryIO | None = None
        self.extractor = open_extractor(pipeline.source)
        self.stats: LoadStats | None = None
        self.work: LeasedWork | None = None  # with `workers:`, this run's leases (SPEC §11)
        if mode == "run":  # httpx loads only for a real run
            from etl.load.loader import LoadStats

            self.stats = LoadStats()

    # -- set-up -------------------------------------------------------------------
    def _router(self) -> StoreRouter | None:
        """Many stores (SPEC §10): a real run also needs each row's store to have credentials."""
        if self.store_column is None:
            return None
        self.credentials = None
        if self.mode == "run":
            self.credentials = StoreCredentials(self.pipeline.destination, self.pipeline.file)
        return StoreRouter(self.store_column, self.credentials)

    def _open_state(self) -> StateStore | None:
        """Validate and dry runs only read state, and only if it already exists."""
        url = self.pipeline.state_url
        if self.mode == "validate":
            return None
        missing = url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists()
        if self.mode != "run" and missing:
            return None
        from etl.state import Scope, StateStore  # SQLAlchemy loads only when there is state

        self.scope = Scope.of(self.pipeline)
        lock = self.pipeline.name
        if self.store_column is not None and self.options.stores is not None:
            # A partition's runs and watermark are its own, and so is its run lock.
            self.scope = self.scope.for_store(f"{self.scope.store_id}{self.options.stores}")
            lock = f"{lock}.{str(self.options.stores).replace('/', 'of')}"
        store = StateStore(url)
        try:
            if self.mode == "run":
                store.hold_run_lock(lock)
            store.adopt_legacy(self.scope)
        except BaseException:
            store.close()
            raise
        return store

    def _window(self) -> Window | None:
        incremental = self.pipeline.source.incremental
        if incremental is None:
            if self.options.since or self.options.until:
                raise DefinitionError(
                    self.pipeline.file,
                    [("source.incremental", "--since/--until need an incremental cursor")],
                )
            return None
        after: Any = self.options.since
        if after is None and not self.options.full_refresh and self.state is not None:
            after = self.state.watermark(self.scope)
        if after is None and self.options.until is None:
            return None
        return Window(cursor=incremental.cursor, after=after, until=self.options.until)

    # -- the prepare stage (worker thread) ----------------------------------------
    def _chunks(self) -> Iterator[pd.DataFrame]:
        columns = self.pipeline.mapped_columns()
        remaining = self.options.limit
        for chunk in self.extractor.chunks(columns, self._window()):
            if self.store_column is not None and self.options.stores is not None:
                chunk = owned_rows(chunk, self.store_column, self.options.stores)
            if remaining is not None:
                chunk = chunk.iloc[:remaining]
                remaining -= len(chunk)
            if len(chunk):
                yield chunk
            del chunk  # not alive while the next one is read
            if remaining is not None and remaining <= 0:
                return

    def _prepare(self, chunk: pd.DataFrame) -> _Prepared:
        split = self.validator.split(chunk)
        self.types.observe(chunk, split.valid)
        valid, rejects = split.valid, split.rejects
        if self.router is not None:
            valid, wrong_store = self.router.split(valid, chunk)
            rejects = pd.concat([rejects, wrong_store]) if len(wrong_store) else rejects
        validating = self.mode == "validate"
        batch = EventBatch.of([]) if validating else self.transformer.to_batch(valid)
        labels = list(valid.index) if len(batch) else []
        skipped_cursors: list[Any] = []
        if len(batch) and self.state is not None and not self.options.full_refresh:
            known = self._known(batch)
            if known:
                events = batch.events()  # objects only for a chunk that has a history
                resend = Status.REJECTED if self.options.retry_rejected else None
                keep = [
                    i for i, event in enumerate(events)
                    if not _unchanged(known.get(event.id), event, resend)
                ]
                kept = set(keep)
                skipped_cursors = [event.cursor for i, event in enumerate(events) if i not in kept]
                batch = batch.take(keep)
                labels = [labels[i] for i in keep]
        return _Prepared(
            chunk if self.mode == "run" else chunk.iloc[:0],  # 30 MB a chunk held in the queue
            len(chunk),
            labels,
            batch,
            valid=len(valid),
            skipped=len(skipped_cursors),
            rejects=rejects,
            skipped_cursors=skipped_cursors,
            examples=self._examples(rejects),
        )

    def _known(self, batch: EventBatch) -> dict[str, tuple[str, Status]]:
        """What the state knows of a batch's events, each looked up at its own store."""
        assert self.state is not None
        ids = batch.ids.to_pylist()
        if batch.stores is None:
            return self.state.known(self.scope, ids)
        by_store: dict[str, list[str]] = {}
        for event_id, store in zip(ids, batch.stores, strict=True):
            by_store.setdefault(store, []).append(event_id)
        known: dict[str, tuple[str, Status]] = {}
        for store, store_ids in by_store.items():
            known.update(self.state.known(self.scope.for_store(store), store_ids))
        return known

    def _scope_of(self, event: Event) -> Scope:
        """The state scope an event is recorded under: its own store's, with many stores."""
        if event.store is None or self.store_column is None:
            return self.scope
        return self.scope.for_store(event.store)

    def _examples(self, rejects: pd.DataFrame) -> dict[str, list[str]]:
        if self.mode != "validate" or rejects.empty:
            return {}
        examples: dict[str, list[str]] = {}
        customer = self.pipeline.event.customer
        for rule, group in rejects.groupby(REJECT_RULE, sort=False):
            shown = set(self.examples.get(str(rule), []))  # distinct examples teach more
            for _, row in group.drop_duplicates(REJECT_REASON).iterrows():
                if len(shown) >= EXAMPLES_PER_RULE:
                    break
                reason = mask_in_text(
                    str(row[REJECT_REASON]),
                    email=row.get(customer.email) if customer.email else None,
                    phone=row.get(customer.phone_number) if customer.phone_number else None,
                )
                if reason not in shown:
                    shown.add(reason)
                    examples.setdefault(str(rule), []).append(reason)
        return examples

    # -- the async side -----------------------------------------------------------
    def _account(self, prepared: _Prepared) -> None:
        report = self.report
        report.extracted += prepared.rows
        report.valid += prepared.valid
        report.skipped_unchanged += prepared.skipped
        for cursor in prepared.skipped_cursors:
            self.watermark.done(cursor)
        for rule, count in prepared.rejects[REJECT_RULE].value_counts().items():
            report.reject(str(rule), int(count))
        if self.cursor is not None and not prepared.rejects.empty:
            for value in prepared.rejects[self.cursor].dropna():
                self.watermark.done(_native(value))
        self.quarantine.write(prepared.rejects)
        for rule, lines in prepared.examples.items():
            self.examples.setdefault(rule, []).extend(lines)
        # Only a real run can be refused by the API and need the row; with many stores the
        # events may wait in a spool, and with workers another process may send them, so
        # their rows are not held (memory, SPEC §10, §11).
        if self.mode == "run" and self.store_column is None and self.pipeline.workers is None:
            ids = prepared.batch.ids.to_pylist()
            for event_id, label in zip(ids, prepared.labels, strict=True):
                self.origins[event_id] = (prepared.chunk, label)

    async def _timed(self, counter: str, function: Any, *args: Any) -> Any:
        """Run a stage step in the worker thread and add its wall time to the report.

        Reading and preparing share one thread on purpose: both hold the GIL for
        most of their work, and a second thread measured no faster.
        """
        started = time.perf_counter()
        try:
            return await asyncio.to_thread(function, *args)
        finally:
            spent = time.perf_counter() - started
            setattr(self.report, counter, getattr(self.report, counter) + spent)

    async def _prepared_chunks(self) -> AsyncIterator[_Prepared]:
        """Prepare chunks in a worker thread: a real run one ahead of the senders; a dry
        run or a validate only once the previous chunk is done with (nothing there to
        overlap with, and one chunk fewer in memory: SPEC §7)."""
        queue: asyncio.Queue[_Prepared | BaseException | None] = asyncio.Queue(maxsize=1)
        ahead = self.mode == "run"

        async def produce() -> None:
            try:
                chunks = self._chunks()
                while (chunk := await self._timed("read_s", next, chunks, None)) is not None:
                    prepared = await self._timed("prepare_s", self._prepare, chunk)
                    del chunk  # not held while the next one is read
                    await queue.put(prepared)
                    del prepared
                    if not ahead:
                        await queue.join()
                    gc.collect()  # pandas frames sit in reference cycles: free them now
                self.extraction_complete = True
                await queue.put(None)
            except Exception as exc:  # handed to the consumer, which re-raises it
                await queue.put(exc)

        producer = asyncio.create_task(produce())
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                self._account(item)
                yield item
                item = None  # the consumer is done with it: not held while the next is made
                queue.task_done()
        finally:
            producer.cancel()
            cancel = getattr(self.extractor, "cancel", None)
            if cancel is not None and not self.extraction_complete:
                cancel()  # a SQL read in the worker thread: stop it now, not when it ends

    async def _batches(self) -> AsyncIterator[EventBatch]:
        """Failed events of earlier runs first (and rejected ones with --retry-rejected),
        then the source's new or changed events.

        The first chunk is prepared before anything is sent: it tells the id key columns'
        types, and a changed one stops the run (SPEC §6)."""
        prepared = self._prepared_chunks()
        first = await anext(prepared, None)
        self._check_key_types()
        statuses = [Status.FAILED] + ([Status.REJECTED] if self.options.retry_rejected else [])
        state = None if self.options.full_refresh else self.state
        for status in statuses:
            if state is None:
                break
            for scope in self._scopes_with(status):
                earlier = state.failed_events(scope, status)
                while batch := list(islice(earlier, RETRY_BATCH)):
                    self.retry_ids.update(event.id for event in batch)
                    self.report.retried_from_last_run += len(batch)
                    yield EventBatch.of(batch)
        if first is not None:
            ready, first = self._without_retried(first), None  # held no longer than any chunk
            yield ready
        async for item in prepared:
            ready = self._without_retried(item)
            del item  # neither is held while the next chunk is prepared
            yield ready
            del ready

    def _without_retried(self, prepared: _Prepared) -> EventBatch:
        """A chunk's events less those this run already resent from the failed list.

        Chunks are prepared ahead, before (or while) the failed events are read back, so
        the retried ids are taken out here, counted as skipped like unchanged events."""
        batch = prepared.batch
        if not self.retry_ids or not len(batch):
            return batch
        ids = batch.ids.to_pylist()
        cursors = batch.cursors if batch.cursors is not None else [None] * len(ids)
        keep = []
        for row, (event_id, cursor) in enumerate(zip(ids, cursors, strict=True)):
            if event_id not in self.retry_ids:
                keep.append(row)
                continue
            self.origins.pop(event_id, None)
            self.watermark.done(cursor)
        self.report.skipped_unchanged += len(ids) - len(keep)
        return batch if len(keep) == len(ids) else batch.take(keep)

    def _check_key_types(self) -> None:
        """Stop (exit 3) if an undeclared id key column changed type; a real run records them."""
        if self.state is None:
            return
        name, hashed = self.pipeline.name, self.types.hashed
        before = self.state.sent_types(name, "key")
        problem = key_type_problem(before, hashed, self.pipeline.source.columns)
        if problem:
            raise AbortError(problem)
        if self.mode == "run":
            self.state.set_sent_types(name, "key", hashed)

    def _scopes_with(self, status: Status) -> list[Scope]:
        """The scopes to retry `status` events of: every store's, when the rows name stores."""
        assert self.state is not None
        if self.store_column is None:
            return [self.scope]
        owned = self.options.stores
        return [self.scope.for_store(store) for store in self.state.stores_with(self.scope, status)
                if (self.credentials is None or not isinstance(self.credentials.lookup(store), str))
                and (owned is None or owned.owns(store))]

    async def _events(self) -> AsyncIterator[Event]:
        """`_batches` one event at a time, as the loader's workers take them."""
        async for batch in self._batches():
            for event in batch.events():
                yield event

    async def _on_outcome(self, outcome: Outcome) -> None:
        assert self.state is not None
        event = outcome.event
        if self.work is not None:
            await self.work.record(outcome, self._scope_of(event))
        else:
            await self.state.record(self._scope_of(event), self.report.run_id or 0, outcome)
        if event.store is not None and self.store_column is not None:
            self.report.count_store(event.store, outcome.status.value)
        origin = self.origins.pop(event.id, None)
        if outcome.status is Status.DELIVERED:
            self.report.delivered += 1
            self.watermark.done(event.cursor)
        elif outcome.status is Status.REJECTED:
            self.report.reject("api")
            self.watermark.done(event.cursor)
            self._quarantine_api_reject(outcome, origin)
        else:
            self.report.failed += 1
            self.watermark.blocked(event.cursor)
        self.progress.tick()

    def _quarantine_api_reject(
        self, outcome: Outcome, origin: tuple[pd.DataFrame, Any] | None
    ) -> None:
        if origin:
            row = origin[0].loc[[origin[1]]]
        elif self.store_column and outcome.event.store is not None:  # many stores: no rows held
            row = pd.DataFrame({self.store_column: [outcome.event.store]})
        else:
            row = pd.DataFrame(index=[0])
        self.quarantine.write(
            row.assign(**{
                REJECT_RULE: "api", REJECT_REASON: outcome.error or "", EVENT_ID: outcome.event.id
            })
        )

    async def _load(self, client: httpx.AsyncClient | None) -> None:
        """Send this run's events; with `workers:`, as one worker of many (SPEC §11)."""
        if self.pipeline.workers is None:
            await self._send(client)
            return
        from etl.workers import LeasedWork

        async with LeasedWork(self.pipeline.state_url, self.scope, self.report.run_id or 0,
                              self.pipeline.workers) as work:
            self.work = work
            await self._send(client)

    async def _send(self, client: httpx.AsyncClient | None) -> None:
        from etl.load import Loader
        from etl.load.fanout import FanOut

        pipeline, work = self.pipeline, self.work
        guard = work.may_send if work is not None else None
        loader: Loader | FanOut
        if self.store_column is not None:
            assert self.credentials is not None
            loader = FanOut(pipeline.destination, self.credentials, client, self.stats,
                            state_url=pipeline.state_url, guard=guard)
        else:
            loader = Loader(pipeline.destination, client=client, stats=self.stats,
                            state_url=pipeline.state_url, guard=guard)
        async with loader:
            watcher = asyncio.create_task(self._watch(loader))
            try:
                if work is None:
                    await loader.deliver(self._events(), self._on_outcome)
                else:
                    await self._share(loader, work)
            finally:
                watcher.cancel()
                self._copy_stats(loader.stats)
                if isinstance(loader, FanOut):
                    self.report.merge_stores(loader.summary())

    async def _share(self, loader: Loader | FanOut, work: LeasedWork) -> None:
        """Read into the queue while holding the reader lease, and send what the partitions
        held have pending, until the round is done; a lost lease ends the run (exit 3)."""
        assert work.lost is not None
        reader = asyncio.create_task(work.read(self._enqueued, self._read_max))
        sending = asyncio.create_task(loader.deliver(work.events(), self._on_outcome))
        waiting: set[asyncio.Future[Any]] = {reader, sending, work.lost}
        try:
            while not sending.done():
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for finished in done:
                    finished.result()  # raises a lost lease, a source error, an abort
        finally:
            for task in (reader, sending):
                task.cancel()
            await asyncio.gather(reader, sending, return_exceptions=True)
        if work.lost.done():
            work.lost.result()

    async def _enqueued(self) -> AsyncIterator[EventBatch]:
        """`_batches` for the queue: each event's cursor counts as done once it is enqueued
        (its outcome is another worker's; a failure anywhere keeps the watermark)."""
        async for batch in self._batches():
            cursors = [cursor for cursor in batch.cursors or () if cursor is not None]
            if cursors:
                self.watermark.done(max(cursors))
            yield batch

    def _read_max(self) -> str | None:
        from etl.state.schema import encode_value

        return encode_value(self.watermark.done_max)

    async def _watch(self, loader: Loader | FanOut) -> None:
        """Refresh the progress line every second: a pause or an outage has no outcomes."""
        while True:
            await asyncio.sleep(1.0)
            self._copy_stats(loader.stats)
            self.progress.tick()

    def _copy_stats(self, stats: LoadStats) -> None:
        report = self.report
        report.requests = stats.requests
        report.http_retries = stats.retries
        report.http_429 = stats.http_429
        report.limiter_wait_s = stats.limiter_wait_s
        report.pause_429_s = stats.pause_429_s
        report.last_error = stats.last_error
        report.paused_until = stats.paused_until

    async def _dry_run(self) -> None:
        """Whole batches at a time: a dry run is the benchmark of everything but HTTP."""
        async for batch in self._batches():
            if self.output is not None:
                self.output.writelines(batch.jsonl())
            self.report.written += len(batch)
            cursors = [cursor for cursor in batch.cursors or () if cursor is not None]
            if cursors:
                self.watermark.done(max(cursors))
            self.progress.tick()
            del batch, cursors  # not held while the next chunk is prepared

    async def _validate(self) -> None:
        async for _ in self._prepared_chunks():
            self.progress.tick()

    # -- the whole run ------------------------------------------------------------
    async def execute(self, client: httpx.AsyncClient | None = None) -> RunReport:
        report = self.report
        started = time.monotonic()
        if self.state is not None and self.mode == "run":
            try:
                report.run_id = self.state.begin_run(self.scope)
            except StateError:
                self.state.close()
                raise
        run_name = str(report.run_id) if report.run_id is not None else datetime.now(UTC).strftime(
            f"{self.mode}-%Y%m%dT%H%M%S"
        )
        self.quarantine = Quarantine(
            self.pipeline.rejects_dir / f"{run_name}.csv", self.pipeline.mapped_columns()
        )
        if self.options.output is not None:
            self.options.output.parent.mkdir(parents=True, exist_ok=True)
            self.output = self.options.output.open("wb")
        self.progress = ProgressDisplay(
            report, enabled=self.options.progress, interval=self.options.progress_interval,
            total_rows=self._total_rows,
        )
        work = {
            "run": lambda: self._load(client), "dry-run": self._dry_run, "validate": self._validate
        }
        watch = watching(
            self.progress, self.stats, state=self.state if self.mode == "run" else None,
            run_id=report.run_id, metrics_port=self.options.metrics_port,
            metrics_host=self.options.metrics_host,
        )
        try:
            with self.progress:
                async with watch:
                    await _interruptible(work[self.mode]())
        except RunInterrupted as exc:
            self._finish(started, "interrupted", 130, str(exc))
            exc.report = report
            raise
        except AbortError as exc:
            self._finish(started, "aborted", exc.exit_code, str(exc))
            exc.report = report
            raise
        self._finish(started, "completed", 1 if report.rejected or report.failed else 0, None)
        return report

    def _total_rows(self) -> int | None:
        """The rows this run reads in all, when the source's size is known (for the ETA)."""
        total = self.extractor.estimated_rows()
        if total is not None and self.options.limit is not None:
            return min(total, self.options.limit)
        return total

    def _finish(self, started: float, outcome: str, exit_code: int, error: str | None) -> None:
        report = self.report
        report.duration_s = time.monotonic() - started
        report.requests_per_s = report.requests / report.duration_s if report.duration_s else 0.0
        report.outcome, report.exit_code, report.error = outcome, exit_code, error
        if self.quarantine.rows:
            report.quarantine_file = str(self.quarantine.path)
        if self.output is not None:
            self.output.close()
        report.columns = [column.to_json() for column in self.types.table()]
        log.info("%s", report.end_line())
        if self.state is None:
            return
        try:
            sent = self.types.property_types()
            before = self.state.sent_types(self.pipeline.name, "property")
            report.type_changes = type_changes(before, sent)
            if self.mode == "run":
                # The run's end first: on a full disk it is what the reserved space is for.
                report.watermark = self._advance_watermark(outcome)
                self.state.end_run(report.run_id or 0, exit_code, report.to_dict())
                if report.delivered:
                    self.state.set_sent_types(self.pipeline.name, "property", sent)
            else:
                report.watermark = self.state.watermark(self.scope)
        except StateError as exc:  # a full disk: the summary still prints, the cause with it
            if error is None:
                report.outcome, report.exit_code, report.error = "aborted", exc.exit_code, str(exc)
                exc.report = report
                raise
            report.error = f"{error}; the run could not be recorded ({exc})"
        finally:
            self.state.close()

    def _advance_watermark(self, outcome: str) -> Any:
        """Only a complete read of the stored window may move the watermark (SPEC §6)."""
        assert self.state is not None
        old = self.state.watermark(self.scope)
        manual_window = self.options.since is not None or self.options.until is not None
        if (
            self.cursor is None
            or outcome != "completed"
            or not self.extraction_complete
            or self.options.limit is not None
            or manual_window
        ):
            return old
        new = self.watermark.new_value(old) if self.work is None else self._round_watermark(old)
        if new is not None and new != old:
            self.state.set_watermark(self.scope, new)
        return new


    def _round_watermark(self, old: Any) -> Any:
        """Workers: the highest cursor the round read, once nothing is pending and nothing
        failed in any worker; otherwise the old watermark (SPEC §6: never past a failure)."""
        from etl.state.schema import decode_value

        assert self.work is not None
        progress = self.work.progress
        if progress is None or not progress.finished or progress.failed:
            return old
        new = decode_value(progress.read_max)
        if new is None or (old is not None and new <= old):
            return old
        return new


def _unchanged(
    known: tuple[str, Status] | None, event: Event, resend: Status | None = None
) -> bool:
    """Delivered (or refused by the API) with the same payload: sending again changes nothing.

    `resend` (rejected, with --retry-rejected) is sent again all the same.
    """
    return (
        known is not None
        and known[0] == event.payload_hash
        and known[1] is not Status.FAILED
        and known[1] is not resend
    )


def _native(value: Any) -> Any:
    """pandas/numpy scalars as plain Python values, comparable with Event.cursor."""
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if hasattr(value, "item") else value


async def _interruptible(work: Any) -> None:
    """Run `work`; SIGINT/SIGTERM cancel it cleanly and surface as RunInterrupted."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    received: list[str] = []

    def stop(name: str) -> None:
        received.append(name)
        task.cancel()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop, signum.name)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # not the main thread, or not Unix
            pass
    try:
        await task
    except asyncio.CancelledError:
        if not received:
            raise
        raise RunInterrupted(f"stopped by {received[0]}; state is saved, rerun to resume") from None
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


async def run_async(
    pipeline: Pipeline,
    options: RunOptions | None = None,
    *,
    client: httpx.AsyncClient | None = None,
    mode: str | None = None,
) -> RunReport:
    """Run a pipeline (or dry-run / validate it) and return its report.

    Raises AbortError subclasses (exit 3) and RunInterrupted (exit 130) after the
    state is committed; `report.exit_code` is 0 or 1 otherwise.
    """
    options = options or RunOptions()
    chosen = mode or ("dry-run" if options.dry_run else "run")
    return await _Run(pipeline, options, chosen).execute(client)


def run(
    pipeline: Pipeline, options: RunOptions | None = None, *, mode: str | None = None
) -> RunReport:
    """Blocking wrapper of `run_async` for cron jobs and orchestrators."""
    return asyncio.run(run_async(pipeline, options, mode=mode))


def validate_pipeline(pipeline: Pipeline) -> tuple[RunReport, dict[str, list[str]]]:
    """Extract, validate and transform only; return the report and masked examples per rule."""
    run_ = _Run(pipeline, RunOptions(), "validate")
    report = asyncio.run(run_.execute())
    return report, run_.examples
