"""What a run will do, decided before anything opens: pure, so it is tested without I/O.

The mode fixes what opens and what the run keeps; the options fix the window, the limit,
what is diffed and what is retried. Everything else in `etl.runner` reads these fields
and never the mode itself: a mode is the sink that is plugged in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl.errors import DefinitionError
from etl.events import Status
from etl.extract import Window

if TYPE_CHECKING:
    from etl.definition import Pipeline
    from etl.partition import StoreFilter


class Mode(enum.StrEnum):
    """The three ways to run a pipeline (SPEC §2); the value is what reports print."""

    RUN = "run"  # etl run: send, and record every outcome in state
    DRY_RUN = "dry-run"  # etl run --dry-run: everything but HTTP; state is only read
    VALIDATE = "validate"  # etl validate: the rules of SPEC §5 only; no state at all


class StateUse(enum.Enum):
    """How a run uses the state store."""

    NONE = "none"  # never opened
    READ = "read"  # opened only if it already exists; nothing is written
    WRITE = "write"  # created if need be, the run lock held, every outcome recorded


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
    processes: int = 1  # dry run of a file source: prepare in this many forked processes


@dataclass(frozen=True)
class _ModeNeeds:
    state: StateUse
    sends: bool  # events go to the API (credentials, the loader, rows kept for its rejects)
    transforms: bool  # rows become events; validate stops at the rules
    examples: bool  # masked reject examples per rule are collected


_NEEDS = {
    Mode.RUN: _ModeNeeds(StateUse.WRITE, sends=True, transforms=True, examples=False),
    Mode.DRY_RUN: _ModeNeeds(StateUse.READ, sends=False, transforms=True, examples=False),
    Mode.VALIDATE: _ModeNeeds(StateUse.NONE, sends=False, transforms=False, examples=True),
}


@dataclass(frozen=True)
class Plan:
    """What one run opens, reads and keeps."""

    mode: Mode
    state: StateUse
    sends: bool
    transforms: bool
    examples: bool
    credentials: bool  # per-store credentials open (a real run whose rows name stores)
    keeps_rows: bool  # each event's source row is held until its outcome (the API's rejects)
    leased: bool  # one worker of many (`workers:`, SPEC §11): the events go through the queue
    ahead: bool  # a chunk is prepared while the previous one is sent (SPEC §7)
    # Chunks may be prepared in other processes (`etl.runner.processes`): nothing is sent,
    # so preparing is all the run does, and no --limit needs the rows counted in order.
    prepares_apart: bool
    cursor: str | None  # the incremental cursor column
    since: str | None
    until: str | None
    limit: int | None
    diffs: bool  # events already sent with the same payload are skipped (SPEC §6)
    retries: tuple[Status, ...]  # the statuses of earlier runs' events sent again first
    resend: Status | None  # a status the diff sends again all the same (--retry-rejected)
    moves_watermark: bool  # a complete read may advance the stored watermark
    stores: StoreFilter | None  # rows naming their stores: only these (--partition, Dagster)

    @property
    def reads_watermark(self) -> bool:
        """Whether the window starts at the stored watermark (not --since, not a refresh)."""
        return self.cursor is not None and self.since is None and self.diffs

    def window(self, stored: Any = None) -> Window | None:
        """The incremental window (SPEC §6): after --since or the stored watermark."""
        if self.cursor is None:
            return None
        after: Any = self.since if self.since is not None else stored
        if after is None and self.until is None:
            return None
        return Window(cursor=self.cursor, after=after, until=self.until)


def plan(pipeline: Pipeline, options: RunOptions, mode: Mode) -> Plan:
    """The plan of `mode` for this pipeline and these options.

    Raises DefinitionError for --since/--until on a source without an incremental cursor.
    """
    needs = _NEEDS[mode]
    incremental = pipeline.source.incremental
    if incremental is None and (options.since or options.until):
        raise DefinitionError(
            pipeline.file, [("source.incremental", "--since/--until need an incremental cursor")]
        )
    cursor = incremental.cursor if incremental else None
    many_stores = pipeline.destination.store_column is not None
    leased = needs.sends and pipeline.workers is not None
    diffs = not options.full_refresh
    rejected = (Status.REJECTED,) if options.retry_rejected else ()
    manual_window = options.since is not None or options.until is not None
    return Plan(
        mode=mode,
        state=needs.state,
        sends=needs.sends,
        transforms=needs.transforms,
        examples=needs.examples,
        credentials=needs.sends and many_stores,
        # Many stores: events may wait in a spool; leased: another worker may send them.
        keeps_rows=needs.sends and not many_stores and not leased,
        leased=leased,
        ahead=needs.sends,
        prepares_apart=not needs.sends and options.limit is None,
        cursor=cursor,
        since=options.since,
        until=options.until,
        limit=options.limit,
        diffs=diffs,
        retries=(Status.FAILED, *rejected) if diffs else (),
        resend=Status.REJECTED if options.retry_rejected else None,
        moves_watermark=(
            needs.state is StateUse.WRITE
            and cursor is not None
            and options.limit is None
            and not manual_window
        ),
        stores=options.stores,
    )
