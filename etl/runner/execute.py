"""One run, end to end: the plan decides what opens, the feed drains into the mode's sink.

>>> import etl
>>> pipeline = etl.load_pipeline("pipelines/orders_shipped.yaml")
>>> report = etl.run(pipeline, etl.RunOptions(dry_run=True))
>>> report.exit_code
1
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from etl.column_types import ColumnTypes
from etl.errors import AbortError, RunInterrupted
from etl.extract import ArrowSource, Window, open_extractor
from etl.extract.files import ArrowChunk, frame_of
from etl.partition import owned_rows
from etl.quarantine import Quarantine, csv_rows, quarantine_columns
from etl.report import ProgressDisplay, RunReport
from etl.runner.context import RunContext
from etl.runner.feed import ChunkQueue, Feed, Retries
from etl.runner.ledger import Ledger
from etl.runner.plan import Mode, RunOptions, plan
from etl.runner.prepare import Prepared, Preparer, limited
from etl.runner.processes import PreparePool
from etl.runner.sinks import SINKS, Sink
from etl.runner.sinks.validate import ValidateSink
from etl.runner.tally import Tally
from etl.runner.watermark import Watermark
from etl.store_credentials import StoreCredentials
from etl.stores import StoreRouter
from etl.watch import watching

if TYPE_CHECKING:
    import httpx
    import pandas as pd

    from etl.definition import Pipeline

log = logging.getLogger("etl")


class _Run:
    """The parts of one run, put together; `execute` is the whole of it."""

    def __init__(self, pipeline: Pipeline, options: RunOptions, mode: Mode) -> None:
        pipeline.require(mode.value)  # a validate needs no credentials, a dry run only the id
        self.pipeline, self.options = pipeline, options
        self.plan = plan(pipeline, options, mode)
        destination = pipeline.destination
        constant = destination.store_id if isinstance(destination.store_id, str) else None
        self.report = RunReport(pipeline=pipeline.name, mode=mode, store=constant)
        self.types = ColumnTypes(pipeline)
        self.credentials = (
            StoreCredentials(destination, pipeline.file) if self.plan.credentials else None
        )
        column = destination.store_column
        router = StoreRouter(column, self.credentials) if column is not None else None
        self.ledger = Ledger(pipeline, self.plan)
        self.watermark = Watermark()
        self.extractor = open_extractor(pipeline.source)
        self.preparer = Preparer(pipeline, self.plan, self.types, router, self.ledger.state)
        self.pool = self._pool()  # forked now, before the run starts any thread

    def _pool(self) -> PreparePool | None:
        """Preparing processes, when the run only prepares chunks of a file source."""
        processes = self.options.processes
        if not self.plan.prepares_apart or processes < 2:
            return None
        if not isinstance(self.extractor, ArrowSource):
            return None
        columns = quarantine_columns(self.pipeline.mapped_columns())
        return PreparePool(
            self.preparer, self._frame, partial(csv_rows, columns=columns), processes
        )

    def _frame(self, chunk: ArrowChunk, window: Window | None) -> pd.DataFrame:
        """In a preparing process: the frame of one Arrow chunk, filtered like `_chunks`."""
        return self._owned(frame_of(chunk, window, self.pipeline.mapped_columns()))

    def _owned(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of the stores this run takes (--partition, SPEC §11): all, without."""
        column, stores = self.pipeline.destination.store_column, self.plan.stores
        return owned_rows(frame, column, stores) if column and stores is not None else frame

    def _prepared(self, pool: PreparePool) -> Iterator[Prepared]:
        """The source's chunks, prepared by the pool but not yet diffed; lazy like `_chunks`."""
        assert isinstance(self.extractor, ArrowSource)
        window = self.plan.window(self.ledger.stored_watermark())
        chunks = self.extractor.arrow_chunks(self.pipeline.mapped_columns(), window)
        yield from pool.prepared(chunks, window, self.types, self.report)

    def _chunks(self) -> Iterator[pd.DataFrame]:
        """The source's chunks; lazy, so the watermark is read in the worker thread."""
        window = self.plan.window(self.ledger.stored_watermark())
        columns = self.pipeline.mapped_columns()
        chunks = map(self._owned, self.extractor.chunks(columns, window))
        yield from limited(chunks, self.plan.limit)

    def _source(self) -> tuple[Iterator[Any], Callable[[Any], Prepared]]:
        """What the worker thread takes and what it does with each: source frames to
        prepare, or with a pool, chunks prepared in other processes, to diff."""
        if self.pool is None:
            return self._chunks(), self.preparer.prepare
        return self._prepared(self.pool), self.preparer.diffed

    def _total_rows(self) -> int | None:
        """The rows this run reads in all, when the source's size is known (for the ETA)."""
        total = self.extractor.estimated_rows()
        if total is not None and self.plan.limit is not None:
            return min(total, self.plan.limit)
        return total

    def _context(self) -> RunContext:
        report = self.report
        # A run without a state row (dry run, validate) is named by its start and a random
        # tail: two in the same second (a cron job and a hand-run rehearsal, or a script
        # calling `etl.run` twice) would otherwise append to one quarantine file.
        run_name = (
            str(report.run_id)
            if report.run_id is not None
            else f"{self.plan.mode}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        )
        return RunContext(
            pipeline=self.pipeline,
            plan=self.plan,
            options=self.options,
            report=report,
            watermark=self.watermark,
            state=self.ledger.state,
            credentials=self.credentials,
            quarantine=Quarantine(
                self.pipeline.rejects_dir / f"{run_name}.csv", self.pipeline.mapped_columns()
            ),
            progress=ProgressDisplay(
                report,
                enabled=self.options.progress,
                interval=self.options.progress_interval,
                total_rows=self._total_rows,
            ),
        )

    def _feed(self, context: RunContext) -> Feed:
        retries = Retries(
            self.ledger.state,
            self.plan.retries,
            credentials=self.credentials,
            many_stores=self.pipeline.destination.store_column is not None,
            stores=self.plan.stores,
        )
        chunks: ChunkQueue[Any] = ChunkQueue(
            *self._source(),
            self.report,
            ahead=self.plan.ahead,
            cancel=getattr(self.extractor, "cancel", None),
        )
        return Feed(
            retries,
            chunks,
            watermark=self.watermark,
            report=self.report,
            count=Tally(self.report, self.watermark, context.quarantine, self.plan.cursor),
            first_chunk=lambda: self.ledger.check_key_types(self.types),
        )

    async def execute(self, client: httpx.AsyncClient | None = None) -> tuple[RunReport, Sink]:
        """Run to the end (or to an abort or a signal, with the report on the error);
        the report, and the sink for what it kept (a validate's examples)."""
        try:
            return await self._execute(client)
        finally:
            if self.pool is not None:
                self.pool.close()

    async def _execute(self, client: httpx.AsyncClient | None) -> tuple[RunReport, Sink]:
        report = self.report
        started = time.monotonic()
        report.run_id = self.ledger.begin()
        context = self._context()
        sink = SINKS[self.plan.mode](context, client)  # a load sink sets report.load
        feed = self._feed(context)
        watch = watching(
            context.progress,
            report.load,
            state=self.ledger.writer,
            run_id=report.run_id,
            metrics_port=self.options.metrics_port,
            metrics_host=self.options.metrics_host,
        )
        try:
            with context.progress:
                async with watch:
                    await _interruptible(feed.drain_into(sink))
        except RunInterrupted as exc:
            self._finish(context, feed, started, "interrupted", 130, str(exc))
            exc.report = report
            raise
        except AbortError as exc:
            self._finish(context, feed, started, "aborted", exc.exit_code, str(exc))
            exc.report = report
            raise
        self._finish(
            context, feed, started, "completed", 1 if report.rejected or report.failed else 0, None
        )
        return report, sink

    def _finish(
        self,
        context: RunContext,
        feed: Feed,
        started: float,
        outcome: str,
        exit_code: int,
        error: str | None,
    ) -> None:
        report = self.report
        report.duration_s = time.monotonic() - started
        report.requests_per_s = report.requests / report.duration_s if report.duration_s else 0.0
        report.outcome, report.exit_code, report.error = outcome, exit_code, error
        if context.quarantine.rows:
            report.quarantine_file = str(context.quarantine.path)
        report.columns = [column.to_json() for column in self.types.table()]
        log.info("%s", report.end_line())
        self.ledger.finish(report, self.types, self.watermark, complete=feed.complete)


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
    mode: Mode | str | None = None,
) -> RunReport:
    """Run a pipeline (or dry-run / validate it) and return its report.

    `client` replaces the loader's own HTTP client (tests hand it the sandbox app over
    `httpx.ASGITransport`). Raises AbortError subclasses (exit 3) and RunInterrupted
    (exit 130) after the state is committed; `report.exit_code` is 0 or 1 otherwise.
    """
    options = options or RunOptions()
    chosen = Mode(mode) if mode else Mode.DRY_RUN if options.dry_run else Mode.RUN
    report, _ = await _Run(pipeline, options, chosen).execute(client)
    return report


def run(
    pipeline: Pipeline, options: RunOptions | None = None, *, mode: Mode | str | None = None
) -> RunReport:
    """Blocking wrapper of `run_async` for cron jobs and orchestrators."""
    return asyncio.run(run_async(pipeline, options, mode=mode))


def validate_pipeline(pipeline: Pipeline) -> tuple[RunReport, dict[str, list[str]]]:
    """Extract, validate and transform only; return the report and masked examples per rule."""
    report, sink = asyncio.run(_Run(pipeline, RunOptions(), Mode.VALIDATE).execute())
    assert isinstance(sink, ValidateSink)
    return report, sink.examples
