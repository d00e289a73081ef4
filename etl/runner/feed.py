"""What a run sends, in order: the failed events of earlier runs first (SPEC §6), then the
source's new or changed events, prepared one chunk ahead in a worker thread (SPEC §7).

At most the chunk being sent and the one being prepared are held. A feed is what a sink
drains (`etl.runner.sinks`); with leased work (§11) the leased sink drains it into the
state's queue, from which every worker's loader takes its partitions' events.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Callable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from etl.events import EventBatch, Status

if TYPE_CHECKING:
    from etl.partition import StoreFilter
    from etl.report import RunReport
    from etl.runner.prepare import Prepared
    from etl.runner.sinks import Sink
    from etl.runner.watermark import Watermark
    from etl.state import Scope, StateStore
    from etl.store_credentials import StoreCredentials

Chunk = TypeVar("Chunk")

#: Failed events of earlier runs are read back from state this many at a time.
RETRY_BATCH = 1000


class ChunkQueue(Generic[Chunk]):
    """Source chunks prepared in a worker thread: one ahead of the consumer when `ahead`,
    else only once the previous chunk is done with (nothing to overlap with, and one
    chunk fewer in memory). A chunk is a source frame, or one that preparing processes
    made a `Prepared` of and the worker thread only diffs (`etl.runner.processes`)."""

    def __init__(
        self,
        chunks: Iterator[Chunk],
        prepare: Callable[[Chunk], Prepared],
        report: RunReport,
        *,
        ahead: bool,
        cancel: Callable[[], None] | None = None,
    ) -> None:
        self.chunks = chunks
        self.prepare = prepare
        self.report = report
        self.ahead = ahead
        self.cancel = cancel  # stops a read under way in the worker thread (a SQL query)
        self.complete = False  # every chunk of the source was read

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

    async def __aiter__(self) -> AsyncIterator[Prepared]:
        queue: asyncio.Queue[Prepared | BaseException | None] = asyncio.Queue(maxsize=1)

        async def produce() -> None:
            try:
                while (chunk := await self._timed("read_s", next, self.chunks, None)) is not None:
                    prepared = await self._timed("prepare_s", self.prepare, chunk)
                    del chunk  # not held while the next one is read
                    await queue.put(prepared)
                    del prepared
                    if not self.ahead:
                        await queue.join()
                    gc.collect()  # pandas frames sit in reference cycles: free them now
                self.complete = True
                await queue.put(None)
            except Exception as exc:  # handed to the consumer, which re-raises it
                await queue.put(exc)

        producer = asyncio.create_task(produce())
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
                item = None  # the consumer is done with it: not held while the next is made
                queue.task_done()
        finally:
            producer.cancel()
            if self.cancel is not None and not self.complete:
                self.cancel()  # a SQL read in the worker thread: stop it now, not when it ends


class Retries:
    """The events of earlier runs to send again first: failed ones, and rejected ones with
    --retry-rejected; with many stores (SPEC §10), of every store whose rows can be sent."""

    def __init__(
        self,
        state: tuple[StateStore, Scope] | None,
        statuses: tuple[Status, ...],
        *,
        many_stores: bool,
        credentials: StoreCredentials | None,
        stores: StoreFilter | None = None,
    ) -> None:
        self.state = state
        self.stores = stores  # only these stores' events (--partition, a Dagster partition)
        self.statuses = statuses
        self.many_stores = many_stores
        self.credentials = credentials  # None: every store's events count (a dry run)
        self.ids: set[str] = set()  # every event id sent again, so that its chunk skips it

    def __aiter__(self) -> AsyncIterator[EventBatch]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[EventBatch]:
        if self.state is None:
            return
        store = self.state[0]
        for status in self.statuses:
            for scope in self._scopes(status):
                earlier = store.failed_events(scope, status)
                while batch := list(islice(earlier, RETRY_BATCH)):
                    self.ids.update(event.id for event in batch)
                    yield EventBatch.of(batch)

    def _scopes(self, status: Status) -> list[Scope]:
        assert self.state is not None
        store, scope = self.state
        if not self.many_stores:
            return [scope]
        return [
            scope.for_store(name)
            for name in store.stores_with(scope, status)
            if (self.credentials is None or not isinstance(self.credentials.lookup(name), str))
            and (self.stores is None or self.stores.owns(name))
        ]


class Feed:
    """Retries first, then the prepared chunks. Each chunk is counted and handed to the
    sink (`take_chunk`) as it leaves the worker thread; its events resent from the failed
    list are taken out (`skip`) just before the rest are yielded.

    The first chunk is prepared before anything is sent: it tells the id key columns'
    types, and `first_chunk` (the key type check, SPEC §6) may stop the run there.
    """

    def __init__(
        self,
        retries: Retries,
        chunks: ChunkQueue[Any],
        *,
        count: Callable[[Prepared], None],
        first_chunk: Callable[[], None],
        watermark: Watermark,
        report: RunReport,
    ) -> None:
        self.retries = retries
        self.chunks = chunks
        self.count = count
        self.first_chunk = first_chunk
        self.watermark = watermark
        self.report = report

    @property
    def complete(self) -> bool:
        """Whether every chunk of the source was read (else the watermark stays)."""
        return self.chunks.complete

    async def drain_into(self, sink: Sink) -> None:
        """Hand every batch of this feed to `sink`."""
        await sink.drain(self._batches(sink))

    async def _taken(self, sink: Sink) -> AsyncIterator[Prepared]:
        async for prepared in self.chunks:
            self.count(prepared)
            sink.take_chunk(prepared)
            yield prepared

    async def _batches(self, sink: Sink) -> AsyncIterator[EventBatch]:
        prepared = self._taken(sink)
        first = await anext(prepared, None)
        self.first_chunk()
        async for batch in self.retries:
            self.report.retried_from_last_run += len(batch)
            yield batch
        if first is not None:
            ready, first = self._without_retried(first.batch, sink), None  # held no longer
            yield ready
        async for item in prepared:
            ready = self._without_retried(item.batch, sink)
            del item  # neither is held while the next chunk is prepared
            yield ready
            del ready

    def _without_retried(self, batch: EventBatch, sink: Sink) -> EventBatch:
        """A chunk's events less those this run already resent from the failed list.

        Chunks are prepared ahead, before (or while) the failed events are read back, so
        the retried ids are taken out here, counted as skipped like unchanged events."""
        retried = self.retries.ids
        if not retried or not len(batch):
            return batch
        ids = batch.ids.to_pylist()
        cursors = batch.cursors if batch.cursors is not None else [None] * len(ids)
        keep, skipped = [], []
        for row, (event_id, cursor) in enumerate(zip(ids, cursors, strict=True)):
            if event_id not in retried:
                keep.append(row)
                continue
            skipped.append(event_id)
            self.watermark.done(cursor)
        self.report.skipped_unchanged += len(skipped)
        if not skipped:
            return batch
        sink.skip(skipped)
        return batch.take(keep)
