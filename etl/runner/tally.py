"""What each prepared chunk adds to the run: its counts in the report, its rejects in the
quarantine, and the cursors of rows that are done without being sent (skipped as
unchanged, or rejected by the rules) to the watermark."""

from __future__ import annotations

from typing import TYPE_CHECKING

from etl.columns import python_scalar
from etl.quarantine import REJECT_RULE

if TYPE_CHECKING:
    from etl.quarantine import Quarantine
    from etl.report import RunReport
    from etl.runner.prepare import Prepared
    from etl.runner.watermark import Watermark


class Tally:
    """Counts prepared chunks as the run takes them from the worker thread."""

    def __init__(
        self, report: RunReport, watermark: Watermark, quarantine: Quarantine, cursor: str | None
    ) -> None:
        self.report = report
        self.watermark = watermark
        self.quarantine = quarantine
        self.cursor = cursor

    def __call__(self, prepared: Prepared) -> None:
        """Count one chunk."""
        report = self.report
        report.extracted += prepared.rows
        report.valid += prepared.valid
        report.skipped_unchanged += prepared.skipped
        for cursor in prepared.skipped_cursors:
            self.watermark.done(cursor)
        for rule, count in prepared.rejects[REJECT_RULE].value_counts().items():
            report.reject(str(rule), int(count))
        if self.cursor is not None and not prepared.rejects.empty:
            for value in prepared.rejects[self.cursor].dropna():
                self.watermark.done(python_scalar(value))
        self.quarantine.write(prepared.rejects, prepared.rejects_csv)
