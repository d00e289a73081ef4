"""Where a run's events go: one sink per mode, behind one small protocol, so that a mode
is the sink plugged in and the feed never asks which one it drives.

    load.py     a real run: the loader posts the events, every outcome is recorded
    leased.py   a real run as one worker of many (SPEC §11): enqueue, drain leased partitions
    dry_run.py  everything but HTTP: the bodies are counted (and written with --output)
    validate.py the rules only: masked reject examples per rule for `etl validate`

A new sink implements `Sink` and is added to `SINKS`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Protocol

from etl.runner.plan import Mode
from etl.runner.sinks.dry_run import DryRunSink
from etl.runner.sinks.leased import LeasedSink
from etl.runner.sinks.load import LoadSink
from etl.runner.sinks.validate import ValidateSink

if TYPE_CHECKING:
    import httpx

    from etl.events import EventBatch
    from etl.runner.context import RunContext
    from etl.runner.prepare import Prepared


class Sink(Protocol):
    """Takes a run's events from its feed."""

    def take_chunk(self, prepared: Prepared) -> None:
        """A source chunk, as it leaves the worker thread (its rows, its rejects)."""

    def skip(self, event_ids: list[str]) -> None:
        """Events of a taken chunk that will not come (this run resent them already)."""

    async def drain(self, batches: AsyncIterator[EventBatch]) -> None:
        """Take every batch; return when the feed is exhausted (raise to stop the run)."""


SinkFactory = Callable[["RunContext", "httpx.AsyncClient | None"], Sink]


def _run_sink(context: RunContext, client: httpx.AsyncClient | None) -> Sink:
    """A real run's sink: one worker of many with `workers:`, else the load sink."""
    return (LeasedSink if context.plan.leased else LoadSink)(context, client)


#: The sink of each mode.
SINKS: dict[Mode, SinkFactory] = {
    Mode.RUN: _run_sink,
    Mode.DRY_RUN: DryRunSink,
    Mode.VALIDATE: ValidateSink,
}

__all__ = ["SINKS", "DryRunSink", "LeasedSink", "LoadSink", "Sink", "ValidateSink"]
