"""The dry run's sink: every body counted, and written one per line with --output."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import nullcontext
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

    from etl.events import EventBatch
    from etl.runner.context import RunContext
    from etl.runner.prepare import Prepared


class DryRunSink:
    """Whole batches at a time: a dry run is the benchmark of everything but HTTP."""

    def __init__(self, context: RunContext, client: httpx.AsyncClient | None = None) -> None:
        self.context = context

    def take_chunk(self, prepared: Prepared) -> None:
        """Nothing of a chunk's rows is needed."""

    def skip(self, event_ids: list[str]) -> None:
        """Nothing is held per event."""

    async def drain(self, batches: AsyncIterator[EventBatch]) -> None:
        """Count (and write) every body; a written body's cursor is done for the watermark."""
        context = self.context
        output = context.options.output
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("wb") if output is not None else nullcontext() as out:
            async for batch in batches:
                if out is not None:
                    out.writelines(batch.jsonl())
                context.report.written += len(batch)
                cursors = [cursor for cursor in batch.cursors or () if cursor is not None]
                if cursors:
                    context.watermark.done(max(cursors))
                context.progress.tick()
                del batch, cursors  # not held while the next chunk is prepared
