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


class Quarantine:
    """Appends rejected rows to one CSV whose columns are fixed when the run starts."""

    def __init__(self, path: Path, source_columns: list[str]) -> None:
        self.path = path
        self.columns = [*source_columns, REJECT_RULE, REJECT_REASON, EVENT_ID]
        self.rows = 0

    def write(self, rejects: pd.DataFrame) -> None:
        """Append rejects (original columns plus rule and reason; `event_id` when known)."""
        if rejects.empty:
            return
        frame = rejects.reindex(columns=self.columns)
        first = not self.path.exists()
        if first:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(self.path, mode="a", header=first, index=False)
        self.rows += len(frame)
