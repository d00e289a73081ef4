"""The quarantine file of a run (SPEC §5): every rejected row with its rule and reason.

One CSV per run at `.etl/rejects/<pipeline>/<run_id>.csv`, created on the first
reject, appended chunk by chunk so a multi-day run never holds its rejects in memory.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

#: The columns the quarantine adds to a rejected row (SPEC §5); validate fills the first two.
REJECT_RULE = "reject_rule"
REJECT_REASON = "reject_reason"
EVENT_ID = "event_id"


def quarantine_columns(source_columns: list[str]) -> list[str]:
    """The quarantine file's columns, fixed when the run starts."""
    return [*source_columns, REJECT_RULE, REJECT_REASON, EVENT_ID]


def csv_rows(rejects: pd.DataFrame, columns: list[str]) -> str:
    """Rejects as the quarantine file's lines, without its header: rendered where the
    chunk was prepared (a preparing process, `etl.runner.processes`), so the run's own
    process only appends text."""
    return rejects.reindex(columns=columns).to_csv(header=False, index=False)


class Quarantine:
    """Appends rejected rows to one CSV whose columns are fixed when the run starts."""

    def __init__(self, path: Path, source_columns: list[str]) -> None:
        self.path = path
        self.columns = quarantine_columns(source_columns)
        self.rows = 0

    def write(self, rejects: pd.DataFrame, rendered: str | None = None) -> None:
        """Append rejects (original columns plus rule and reason; `event_id` when known);
        `rendered` is their `csv_rows` when it was made already."""
        if rejects.empty:
            return
        text = rendered if rendered is not None else csv_rows(rejects, self.columns)
        first = not self.path.exists()
        if first:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8", newline="") as out:
            if first:
                out.write(pd.DataFrame(columns=self.columns).to_csv(index=False))
            out.write(text)
        self.rows += len(rejects)
