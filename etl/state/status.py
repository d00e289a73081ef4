"""What `etl status` and `etl.status()` report: runs, and per destination the totals,
watermark and last errors (SPEC §2, §6), with emails and phone numbers masked (they
come from the API's messages) and no credentials (none are needed to read state)."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl.events import Status
from etl.redact import mask_free_text

if TYPE_CHECKING:
    from etl.definition import Pipeline


@dataclass(frozen=True)
class RunRecord:
    """One run as the store remembers it; `ended_at` is None while running or after a kill."""

    id: int
    pipeline: str
    base_url: str | None  # None only for a run older than destinations not yet adopted
    store_id: str | None
    started_at: datetime
    ended_at: datetime | None
    exit_code: int | None
    summary: dict[str, Any]  # the run's JSON report


@dataclass(frozen=True)
class DestinationStatus:
    """One destination (base URL and store) of a pipeline, as the state store knows it."""

    base_url: str
    store_id: str
    totals: dict[Status, int]  # events per latest status
    watermark: Any  # None when never set
    last_errors: list[tuple[str, str, datetime]]  # (event id, masked error, time), latest first

    @classmethod
    def build(
        cls,
        base_url: str,
        store_id: str,
        totals: dict[Status, int],
        watermark: Any,
        errors: list[tuple[str, str, datetime]],
    ) -> DestinationStatus:
        """The destination with its errors masked: the only way one is made."""
        masked = [(event_id, mask_free_text(error), when) for event_id, error, when in errors]
        return cls(base_url, store_id, totals, watermark, masked)

    def to_dict(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "store_id": self.store_id,
            "totals": {status.value: count for status, count in self.totals.items()},
            "watermark": _plain(self.watermark),
            "last_errors": [
                {"event_id": event_id, "error": error, "at": when.isoformat()}
                for event_id, error, when in self.last_errors
            ],
        }


@dataclass(frozen=True)
class StatusReport:
    """Everything the state store knows about one pipeline, destination by destination."""

    pipeline: str
    destinations: list[DestinationStatus]  # by base URL, then store
    runs: list[RunRecord]  # most recent first, up to 10
    totals: dict[Status, int] = field(default_factory=dict)  # over every destination

    @classmethod
    def build(
        cls, pipeline: str, destinations: list[DestinationStatus], runs: list[RunRecord]
    ) -> StatusReport:
        totals: Counter[Status] = Counter()
        for destination in destinations:
            totals.update(destination.totals)
        ordered = {status: totals[status] for status in Status if totals[status]}
        return cls(pipeline, destinations, runs, ordered)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only: what `etl status --json` prints."""
        return {
            "pipeline": self.pipeline,
            "totals": {status.value: count for status, count in self.totals.items()},
            "destinations": [destination.to_dict() for destination in self.destinations],
            "runs": [
                {
                    "id": run.id,
                    "base_url": run.base_url,
                    "store_id": run.store_id,
                    "started_at": run.started_at.isoformat(),
                    "ended_at": run.ended_at.isoformat() if run.ended_at else None,
                    "exit_code": run.exit_code,
                    "summary": run.summary,
                }
                for run in self.runs
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def status(pipeline: Pipeline | str | os.PathLike[str]) -> StatusReport:
    """What the state store knows about a pipeline (a `Pipeline` or its file's path).

    Reads state only: needs no credentials and no store id, and creates no state file.
    With the pipeline's store id known, rows older than destinations are adopted by it.
    """
    from etl.definition import Pipeline, parse_pipeline
    from etl.state.errors import sqlite_path
    from etl.state.scope import Scope
    from etl.state.store import StateStore

    if not isinstance(pipeline, Pipeline):
        pipeline = parse_pipeline(pipeline)
    file = sqlite_path(pipeline.state_url)
    if file is not None and not file.exists() and _could_be_created(file):
        return StatusReport.build(pipeline.name, [], [])  # no run yet: nothing to report
    store = StateStore(pipeline.state_url)
    try:
        if pipeline.destination.store_id:
            store.adopt_legacy(Scope.of(pipeline))
        return store.summary(pipeline.name)
    finally:
        store.close()


def _could_be_created(file: Path) -> bool:
    """Whether a run could create `file`: its nearest existing ancestor is a folder (else
    opening the store says why not, exit 3, rather than reporting an empty state)."""
    return next((folder.is_dir() for folder in file.parents if folder.exists()), True)


def _plain(value: Any) -> Any:
    """A watermark as JSON: numbers stay numbers, times and decimals become text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value
