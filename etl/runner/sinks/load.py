"""A real run's sink: the loader (one store) or the fan-out (many stores, SPEC §10) posts
the events, and every outcome is durable in the state store before its worker takes the
next event, which is what makes a `kill -9` cost at most the requests in flight."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any

import pandas as pd

from etl.events import Status
from etl.quarantine import EVENT_ID, REJECT_REASON, REJECT_RULE

if TYPE_CHECKING:  # httpx loads only for a real run
    import httpx

    from etl.events import Event, EventBatch, Outcome
    from etl.load import Loader
    from etl.load.fanout import FanOut
    from etl.load.loader import Guard
    from etl.runner.context import RunContext
    from etl.runner.prepare import Prepared
    from etl.state import Scope, StateStore


class LoadSink:
    """Sends every event and records its outcome; keeps each event's source row (one
    store) until its outcome, so that a row the API refuses lands in the quarantine."""

    def __init__(self, context: RunContext, client: httpx.AsyncClient | None = None) -> None:
        from etl.load import LoadStats

        assert context.state is not None  # a real run always opens state
        self.context = context
        self.client = client
        self.store: StateStore = context.state[0]
        self.scope: Scope = context.state[1]
        self.store_column = context.pipeline.destination.store_column
        self.origins: dict[str, tuple[pd.DataFrame, Any]] = {}
        context.report.load = LoadStats()

    def take_chunk(self, prepared: Prepared) -> None:
        """Hold the chunk's rows for its events until their outcomes (with many stores the
        events may wait in a spool, so their rows are not held: memory, SPEC §10)."""
        if not self.context.plan.keeps_rows:
            return
        ids = prepared.batch.ids.to_pylist()
        for event_id, label in zip(ids, prepared.labels, strict=True):
            self.origins[event_id] = (prepared.chunk, label)

    def skip(self, event_ids: list[str]) -> None:
        """Let go of the rows of events this run resent from the failed list."""
        for event_id in event_ids:
            self.origins.pop(event_id, None)

    async def drain(self, batches: AsyncIterator[EventBatch]) -> None:
        """Post every event; return once every outcome is recorded."""
        loader = self._loader()
        await self._sending(loader, loader.deliver(_events(batches), self._on_outcome))

    async def _sending(self, loader: Loader | FanOut, work: Awaitable[None]) -> None:
        """Await `work` (the loader's deliveries) inside the loader's lifetime, with the
        progress line refreshed and the loader's figures copied into the report."""
        from etl.load.fanout import FanOut

        report = self.context.report
        async with loader:
            watcher = asyncio.create_task(self._watch(loader))
            try:
                await work
            finally:
                watcher.cancel()
                report.load = loader.stats  # the fan-out adds its stores' figures on each read
                if isinstance(loader, FanOut):
                    report.merge_stores(loader.summary())

    def _loader(self, guard: Guard | None = None) -> Loader | FanOut:
        from etl.load import Loader
        from etl.load.fanout import FanOut

        destination, context = self.context.pipeline.destination, self.context
        stats, url = context.report.load, context.pipeline.state_url
        if self.store_column is not None:
            assert context.credentials is not None
            return FanOut(
                destination, context.credentials, self.client, stats, state_url=url, guard=guard
            )
        return Loader(destination, client=self.client, stats=stats, state_url=url, guard=guard)

    async def _watch(self, loader: Loader | FanOut) -> None:
        """Refresh the progress line every second: a pause or an outage has no outcomes."""
        while True:
            await asyncio.sleep(1.0)
            self.context.report.load = loader.stats
            self.context.progress.tick()

    def _scope_of(self, event: Event) -> Scope:
        """The state scope an event is recorded under: its own store's, with many stores."""
        if event.store is None or self.store_column is None:
            return self.scope
        return self.scope.for_store(event.store)

    async def _on_outcome(self, outcome: Outcome) -> None:
        context, event = self.context, outcome.event
        report, watermark = context.report, context.watermark
        await self._record(self._scope_of(event), outcome)
        if event.store is not None and self.store_column is not None:
            report.count_store(event.store, outcome.status.value)
        origin = self.origins.pop(event.id, None)
        if outcome.status is Status.DELIVERED:
            report.delivered += 1
            watermark.done(event.cursor)
        elif outcome.status is Status.REJECTED:
            report.reject("api")
            watermark.done(event.cursor)
            self._quarantine_api_reject(outcome, origin)
        else:
            report.failed += 1
            watermark.blocked(event.cursor)
        context.progress.tick()

    async def _record(self, scope: Scope, outcome: Outcome) -> None:
        """Make the outcome durable; it returns once committed."""
        await self.store.record(scope, self.context.report.run_id or 0, outcome)

    def _quarantine_api_reject(
        self, outcome: Outcome, origin: tuple[pd.DataFrame, Any] | None
    ) -> None:
        if origin:
            row = origin[0].loc[[origin[1]]]
        elif self.store_column and outcome.event.store is not None:  # many stores: no rows held
            row = pd.DataFrame({self.store_column: [outcome.event.store]})
        else:
            row = pd.DataFrame(index=[0])
        self.context.quarantine.write(
            row.assign(
                **{
                    REJECT_RULE: "api",
                    REJECT_REASON: outcome.error or "",
                    EVENT_ID: outcome.event.id,
                }
            )
        )


async def _events(batches: AsyncIterator[EventBatch]) -> AsyncIterator[Event]:
    """The batches one event at a time, as the loader's workers take them."""
    async for batch in batches:
        for event in batch.events():
            yield event
