"""A real run as one worker of many (`workers:`, SPEC §11): the sink that enqueues into
state, and the feed that drains leased partitions (`etl.workers`).

While this worker holds the reader lease it drains the run's feed (failed events of
earlier runs, then the source's new or changed events) into the state's queue instead
of sending it; meanwhile, and until the round is done, the loader sends what the
partitions it holds have pending, each outcome recorded fenced by its lease's epoch.
Counting, the quarantine of the API's rejects and the progress line are the load
sink's. The watermark moves only for the worker that read the source to the end, and
only when no worker recorded a failure in the round.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from etl.runner.sinks.load import LoadSink

if TYPE_CHECKING:
    from etl.events import EventBatch, Outcome
    from etl.load import Loader
    from etl.load.fanout import FanOut
    from etl.state import Scope
    from etl.workers import LeasedWork


class LeasedSink(LoadSink):
    """The load sink with the state's queue between the feed and the loader."""

    work: LeasedWork | None = None

    async def drain(self, batches: AsyncIterator[EventBatch]) -> None:
        """Read into the queue while holding the reader lease, send the partitions held,
        until the round is done; a lost lease ends the run (`LeaseLost`, exit 3)."""
        from etl.workers import LeasedWork

        pipeline, report = self.context.pipeline, self.context.report
        assert pipeline.workers is not None
        async with LeasedWork(
            pipeline.state_url, self.scope, report.run_id or 0, pipeline.workers
        ) as work:
            self.work = work
            loader = self._loader(guard=work.may_send)
            await self._sending(loader, self._share(loader, work, batches))
            progress = work.progress
            if progress is None or not progress.finished or progress.failed:
                self.context.watermark.hold()

    async def _share(
        self, loader: Loader | FanOut, work: LeasedWork, batches: AsyncIterator[EventBatch]
    ) -> None:
        assert work.lost is not None
        reader = asyncio.create_task(work.read(self._enqueued(batches)))
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

    async def _enqueued(self, batches: AsyncIterator[EventBatch]) -> AsyncIterator[EventBatch]:
        """The feed's batches for the queue: each cursor counts as done once enqueued (its
        outcome may be another worker's; a failure anywhere holds the watermark)."""
        watermark = self.context.watermark
        async for batch in batches:
            for cursor in batch.cursors or ():
                watermark.done(cursor)
            yield batch

    async def _record(self, scope: Scope, outcome: Outcome) -> None:
        """Fenced: refused (and counted) when this worker's lease is no longer current."""
        assert self.work is not None
        await self.work.record(outcome, scope)
