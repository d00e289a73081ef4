"""What the state store knows of a pipeline's past, shaped for `etl report --html` (SPEC §12).

Read-only and aggregated in the database: 2M events become at most a few thousand
(hour, status) counts, so the report stays small whatever the backfill's size. Runs
come with the JSON summary each one stored (a running run's is its latest snapshot,
see `etl.watch`); reject examples come from the runs' quarantine files, masked.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from etl.redact import mask_in_text
from etl.state import StateStore
from etl.state.schema import events, runs

#: Hours shown in the throughput chart: the last 30 days of activity.
MAX_HOURS = 30 * 24
#: A history no longer than this is counted per minute, not per hour.
MINUTES_UP_TO = timedelta(hours=6)
#: Runs shown in the per-run charts and table: the most recent ones.
MAX_RUNS = 60
#: Masked reject examples kept per rule.
EXAMPLES_PER_RULE = 3
#: Rows read from each quarantine file when looking for examples.
QUARANTINE_SAMPLE = 2_000


@dataclass(frozen=True)
class Run:
    """One run and the summary it stored."""

    id: int
    started_at: datetime
    ended_at: datetime | None
    exit_code: int | None
    summary: dict[str, Any]

    def count(self, key: str) -> float:
        value = self.summary.get(key, 0)
        return value if isinstance(value, int | float) else 0


@dataclass
class History:
    """Everything the HTML report shows, already aggregated."""

    pipeline: str
    runs: list[Run]  # oldest first, the last MAX_RUNS
    totals: dict[str, int]  # events per latest status, all time
    hourly: list[tuple[str, dict[str, int]]]  # ("2026-11-30 14:00", {status: count}), oldest first
    bucket: str = "hour"  # of `hourly`: "minute" when all of it fits in a few hours
    rejects_by_rule: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)  # rule -> masked reasons
    per_store: dict[str, Counter[str]] = field(default_factory=dict)  # store -> summed counters

    @property
    def running(self) -> Run | None:
        """The latest run when it has not ended (or was killed: its snapshot says when)."""
        last = self.runs[-1] if self.runs else None
        return (
            last
            if last is not None and last.ended_at is None and last.summary.get("running")
            else None
        )


def load_history(
    store: StateStore, pipeline: str, *, email: str | None = None, phone: str | None = None
) -> History:
    """Read and aggregate one pipeline's runs and events.

    `email` and `phone` name the source columns whose values reject examples mask.
    """
    with store.engine.connect() as connection:
        newest = sa.select(runs).where(runs.c.pipeline == pipeline).order_by(runs.c.id.desc())
        run_rows = connection.execute(newest.limit(MAX_RUNS)).all()
        first, last = connection.execute(
            sa.select(sa.func.min(events.c.last_at), sa.func.max(events.c.last_at)).where(
                events.c.pipeline == pipeline
            )
        ).one()
        bucket = "minute" if first is not None and last - first <= MINUTES_UP_TO else "hour"
        hour = _truncated(connection.dialect.name, bucket)
        hourly_rows = connection.execute(
            sa.select(hour, events.c.status, sa.func.count())
            .where(events.c.pipeline == pipeline)
            .group_by(hour, events.c.status)
        ).all()
    history = History(
        pipeline=pipeline,
        runs=[_run(row) for row in reversed(run_rows)],
        totals={status.value: count for status, count in store.summary(pipeline).totals.items()},
        hourly=_hours(hourly_rows),
        bucket=bucket,
    )
    for run in history.runs:
        history.rejects_by_rule.update(run.summary.get("rejected_by_rule") or {})
        keys = ("delivered", "rejected", "failed", "requests", "http_429")
        for store_id, figures in (run.summary.get("stores") or {}).items():  # many stores
            sums = history.per_store.setdefault(str(store_id), Counter())
            for key in keys:
                sums[key] += int(figures.get(key) or 0)
        if not run.summary.get("stores"):
            sums = history.per_store.setdefault(
                str(run.summary.get("store") or "(store)"), Counter()
            )
            for key in keys:
                sums[key] += int(run.count(key))
    history.examples = _examples(history.runs, email, phone)
    return history


def _run(row: Any) -> Run:
    import json

    summary = json.loads(row.summary) if row.summary else {}
    return Run(row.id, row.started_at, row.ended_at, row.exit_code, summary)


def _truncated(dialect: str, bucket: str) -> sa.ColumnElement[str]:
    """`last_at` truncated to its hour (or minute) as text, in each database's own words."""
    minute = bucket == "minute"
    if dialect == "postgresql":
        return sa.func.to_char(events.c.last_at, "YYYY-MM-DD HH24:" + ("MI" if minute else "00"))
    if dialect in ("mysql", "mariadb"):
        return sa.func.date_format(events.c.last_at, "%Y-%m-%d %H:" + ("%i" if minute else "00"))
    return sa.func.strftime("%Y-%m-%d %H:" + ("%M" if minute else "00"), events.c.last_at)


def _hours(rows: Sequence[Any]) -> list[tuple[str, dict[str, int]]]:
    by_hour: dict[str, dict[str, int]] = defaultdict(dict)
    for hour, status, count in rows:
        by_hour[str(hour)][status] = int(count)
    return sorted(by_hour.items())[-MAX_HOURS:]


def _examples(run_list: list[Run], email: str | None, phone: str | None) -> dict[str, list[str]]:
    """Distinct reasons per rule from the newest quarantine files, masked for display."""
    import pandas as pd

    from etl.quarantine import REJECT_REASON, REJECT_RULE

    examples: dict[str, list[str]] = {}
    for run in reversed(run_list):
        path = run.summary.get("quarantine_file")
        if not path or not Path(path).is_file():
            continue
        sample = pd.read_csv(path, nrows=QUARANTINE_SAMPLE, dtype=str, keep_default_na=False)
        for _, row in sample.drop_duplicates(REJECT_REASON).iterrows():
            shown = examples.setdefault(str(row[REJECT_RULE]), [])
            masked = mask_in_text(
                str(row[REJECT_REASON]),
                email=row.get(email) if email else None,
                phone=row.get(phone) if phone else None,
            )
            if len(shown) < EXAMPLES_PER_RULE and masked not in shown:
                shown.append(masked)
    return examples
