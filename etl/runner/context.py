"""What every part of one run shares once it has begun: the plan, the counters, the
watermark, the quarantine and the progress line (and the state, when one is open)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from etl.definition import Pipeline
    from etl.quarantine import Quarantine
    from etl.report import ProgressDisplay, RunReport
    from etl.runner.plan import Plan, RunOptions
    from etl.runner.watermark import Watermark
    from etl.state import Scope, StateStore
    from etl.store_credentials import StoreCredentials


@dataclass(frozen=True)
class RunContext:
    """The shared parts of a run, handed to its sink."""

    pipeline: Pipeline
    plan: Plan
    options: RunOptions
    report: RunReport
    watermark: Watermark
    quarantine: Quarantine
    progress: ProgressDisplay
    state: tuple[StateStore, Scope] | None
    credentials: StoreCredentials | None
