"""How long a run has left, from its counters alone (SPEC §12).

One formula for the progress line, `etl status`, the metrics and the HTML report, so
they never disagree. Events still to send are those read but without an outcome
(`pending`) plus, when the source's size is known, the unread rows scaled by the share
of read rows that needed sending (rejected and unchanged rows cost no request). The
rate is the outcomes achieved so far per second of the run.

    >>> estimate(report, elapsed_s=600.0, total_rows=2_000_000).seconds
    412345.6
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from etl.report import RunReport


@dataclass(frozen=True)
class Eta:
    """An estimate; `seconds` is None while nothing has had an outcome (no rate to go by)."""

    seconds: float | None
    remaining_events: int
    rate_per_s: float
    whole_source: bool  # False: covers only what is read so far (the size is unknown)


def pending_events(report: RunReport) -> int:
    """Events read (or retried from an earlier run) that have no outcome yet."""
    done = report.delivered + report.written + report.failed + report.rejected_by_rule.get("api", 0)
    return max(report.valid + report.retried_from_last_run - report.skipped_unchanged - done, 0)


def estimate(report: RunReport, elapsed_s: float, total_rows: int | None) -> Eta:
    """The time left at the achieved rate; the whole source's when `total_rows` is known."""
    done = report.delivered + report.written + report.failed + report.rejected_by_rule.get("api", 0)
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    remaining = pending_events(report)
    if total_rows is not None:
        unread = max(total_rows - report.extracted, 0)
        sendable = report.valid - report.skipped_unchanged
        share = sendable / report.extracted if report.extracted else 1.0
        remaining += round(unread * max(share, 0.0))
    seconds = remaining / rate if rate > 0 else None
    return Eta(seconds, remaining, rate, whole_source=total_rows is not None)
