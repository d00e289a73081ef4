"""What the user sees of a run: live progress, the end-of-run summary, `--report-json`.

A multi-day backfill is judged by where its time goes, so the summary says how long
the run waited on the limiter and on 429 pauses next to what it delivered.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.progress import Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from etl.eta import Eta, estimate
from etl.logs import progress_fields
from etl.redact import mask_free_text
from etl.runner.plan import Mode

if TYPE_CHECKING:
    from etl.load.loader import LoadStats

log = logging.getLogger("etl")


#: The loader's figures in the report JSON, under the names and after the fields they
#: have always had there.
_LOAD_FIGURES = {
    "written": ("requests", "http_retries", "http_429"),
    "prepare_s": ("limiter_wait_s", "pause_429_s"),
    "error": ("last_error", "paused_until"),
}


@dataclass
class RunReport:
    """Counters of one run; also the `--report-json` document."""

    pipeline: str
    run_id: int | None = None
    store: str | None = None  # the destination's store id
    mode: Mode = Mode.RUN
    extracted: int = 0
    valid: int = 0
    rejected: int = 0
    rejected_by_rule: Counter[str] = field(default_factory=Counter)
    skipped_unchanged: int = 0
    retried_from_last_run: int = 0
    delivered: int = 0
    failed: int = 0
    written: int = 0  # dry-run: bodies written instead of sent
    read_s: float = 0.0  # time spent reading the source (worker thread)
    prepare_s: float = 0.0  # time spent validating, transforming and diffing (worker thread)
    duration_s: float = 0.0
    requests_per_s: float = 0.0
    watermark: Any = None
    columns: list[dict[str, Any]] = field(default_factory=list)  # the type table (column_types)
    type_changes: list[dict[str, str]] = field(default_factory=list)  # property, before, after
    quarantine_file: str | None = None
    exit_code: int = 0
    outcome: str = "completed"  # completed | aborted | interrupted
    error: str | None = None
    #: Many stores (SPEC §10): store -> delivered, rejected, failed, requests, 429s, aborted.
    stores: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The loader's own statistics, live (a real run only); the report JSON flattens them.
    load: LoadStats | None = None

    @property
    def requests(self) -> int:
        """HTTP requests sent to the events endpoint (every try counts)."""
        return self.load.requests if self.load else 0

    @property
    def http_retries(self) -> int:
        """Requests that were a second or later try of their event."""
        return self.load.retries if self.load else 0

    @property
    def http_429(self) -> int:
        """Answers that said the rate limit was exceeded."""
        return self.load.http_429 if self.load else 0

    @property
    def limiter_wait_s(self) -> float:
        """Wall time the limiter held requests back (summed over workers)."""
        return self.load.limiter_wait_s if self.load else 0.0

    @property
    def pause_429_s(self) -> float:
        """Wall time sending was paused on the API's word."""
        return self.load.pause_429_s if self.load else 0.0

    @property
    def last_error(self) -> str | None:
        """The latest failed HTTP try (masked when shown)."""
        return self.load.last_error if self.load else None

    @property
    def paused_until(self) -> datetime | None:
        """The end of the latest long pause the API asked for."""
        return self.load.paused_until if self.load else None

    def reject(self, rule: str, count: int = 1) -> None:
        """Count rejects under a §5 rule name (or `api` for the API's refusals)."""
        self.rejected += count
        self.rejected_by_rule[rule] += count

    def count_store(self, store: str, status: str) -> None:
        """One more outcome (delivered, rejected, failed) of a store's event."""
        counts = self.stores.setdefault(store, {"delivered": 0, "rejected": 0, "failed": 0})
        counts[status] = counts.get(status, 0) + 1

    def merge_stores(self, loads: dict[str, dict[str, Any]]) -> None:
        """Add the loader's per-store figures (requests, 429s, why a store aborted)."""
        for store, figures in loads.items():
            counts = self.stores.setdefault(store, {"delivered": 0, "rejected": 0, "failed": 0})
            counts.update(figures)
        self.stores = dict(sorted(self.stores.items()))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; datetimes and other values become strings."""
        data: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if key != "load":
                data[key] = value
            data.update({name: getattr(self, name) for name in _LOAD_FIGURES.get(key, ())})
        data["rejected_by_rule"] = dict(self.rejected_by_rule)
        ready: dict[str, Any] = json.loads(json.dumps(data, default=str))
        return ready

    def to_json(self) -> str:
        """The report as a JSON document (what `--report-json` writes)."""
        return json.dumps(self.to_dict(), indent=2)

    def write_json(self, path: Path) -> None:
        """Write the report for orchestrators (`--report-json`)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n", encoding="utf-8")

    def end_line(self) -> str:
        """The one INFO line that closes a run, for a host application's log."""
        return (
            f"{self.pipeline}: {self.mode} {self.outcome} (exit {self.exit_code}): "
            f"extracted {self.extracted:,}, valid {self.valid:,}, rejected {self.rejected:,}, "
            f"skipped {self.skipped_unchanged:,}, delivered {self.delivered:,}, "
            f"failed {self.failed:,} in {self.duration_s:,.1f}s"
        )


def print_summary(report: RunReport, stream: TextIO | None = None) -> None:
    """The end-of-run table of SPEC §2."""
    console = Console(file=stream or sys.stderr, highlight=False)
    table = Table(title=f"{report.pipeline}: {report.mode} {report.outcome}", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    rows: list[tuple[str, Any]] = [
        ("extracted", report.extracted),
        ("valid", report.valid),
        ("rejected", report.rejected),
        *((f"  rejected: {rule}", n) for rule, n in sorted(report.rejected_by_rule.items())),
        *(
            (f"  type changed: {c['property']}", f"{c['before']} -> {c['after']}")
            for c in report.type_changes
        ),
        ("skipped (unchanged)", report.skipped_unchanged),
        ("retried from last run", report.retried_from_last_run),
    ]
    rows += _MODE_ROWS[report.mode](report)
    rows += [
        ("reading source (s)", f"{report.read_s:.1f}"),
        ("validating + transforming (s)", f"{report.prepare_s:.1f}"),
        ("duration (s)", f"{report.duration_s:.1f}"),
    ]
    if report.watermark is not None:
        rows.append(("watermark", report.watermark))
    if report.stores:
        aborted = [store for store, figures in report.stores.items() if figures.get("aborted")]
        rows.append(("stores", f"{len(report.stores)} ({len(aborted)} aborted)"))
        rows += [
            (f"  aborted: {store}", mask_free_text(str(report.stores[store]["aborted"])))
            for store in aborted
        ]
    if report.error:
        rows.append(("stopped because", report.error))
    if report.last_error:
        rows.append(("last HTTP error", mask_free_text(report.last_error)))
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)
    if report.quarantine_file:  # below the table, so a long path is never cut short
        console.print(f"rejected rows with their reasons: {report.quarantine_file}", soft_wrap=True)


def _run_rows(report: RunReport) -> list[tuple[str, Any]]:
    return [
        ("delivered", report.delivered),
        ("failed", report.failed),
        ("HTTP requests", report.requests),
        ("HTTP retries", report.http_retries),
        ("429s seen", report.http_429),
        ("waited on limiter (s)", f"{report.limiter_wait_s:.1f}"),
        ("paused by 429 (s)", f"{report.pause_429_s:.1f}"),
        ("achieved requests/s", f"{report.requests_per_s:.2f}"),
    ]


#: The summary rows only one mode has.
_MODE_ROWS: dict[Mode, Callable[[RunReport], list[tuple[str, Any]]]] = {
    Mode.RUN: _run_rows,
    Mode.DRY_RUN: lambda report: [("written (dry run)", report.written)],
    Mode.VALIDATE: lambda report: [],
}


class ProgressDisplay:
    """A rich live line on a terminal; a plain log line every `interval` seconds otherwise."""

    def __init__(
        self,
        report: RunReport,
        *,
        enabled: bool | None = None,
        interval: float = 10.0,
        total_rows: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.report = report
        self.interval = interval
        self.started = time.monotonic()
        self._last_log = self.started
        self.total_rows = total_rows  # the source's size once known: the ETA covers all of it
        on_terminal = sys.stderr.isatty() if enabled is None else enabled
        self._progress = (
            Progress(TextColumn("{task.description}"), TimeElapsedColumn(), transient=True)
            if on_terminal
            else None
        )
        self._task = self._progress.add_task("starting") if self._progress else None

    def __enter__(self) -> ProgressDisplay:
        if self._progress:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress:
            self._progress.stop()

    def line(self) -> str:
        """Rows read, valid, delivered, rate and (when rows remain to send) an ETA."""
        r = self.report
        total = self.total_rows()
        eta = self.eta()
        read = f"read {r.extracted:,}" + (f" of {total:,}" if total is not None else "")
        scope = "for the whole source" if eta.whole_source else "for what is read so far"
        left = f", ETA {eta.seconds:,.0f}s {scope}" if eta.seconds and eta.remaining_events else ""
        return (
            f"{read}, valid {r.valid:,}, rejected {r.rejected:,}, "
            f"skipped {r.skipped_unchanged:,}, sent {r.delivered + r.written:,}, "
            f"failed {r.failed:,}, "
            f"{eta.rate_per_s:,.1f}/s{left}{self._trouble()}"
        )

    def _trouble(self) -> str:
        """A pause the API asked for that is still on, and the latest failed try."""
        r, notes = self.report, ""
        if r.paused_until is not None and r.paused_until > datetime.now(r.paused_until.tzinfo):
            notes += f", paused by the API until {r.paused_until:%H:%M:%S}"
        if r.last_error:
            notes += f", last error: {mask_free_text(r.last_error)}"
        return notes

    def eta(self) -> Eta:
        """The run's ETA now (see `etl.eta`)."""
        return estimate(self.report, max(time.monotonic() - self.started, 1e-9), self.total_rows())

    def tick(self) -> None:
        """Refresh the display; cheap enough to call per outcome."""
        if self._progress and self._task is not None:
            self._progress.update(self._task, description=self.line())
            return
        now = time.monotonic()
        if now - self._last_log >= self.interval:
            self._last_log = now
            log.info("%s: %s", self.report.pipeline, self.line(), extra=progress_fields(self))
