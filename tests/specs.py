"""Event definitions for stage tests: the smallest valid one, with what a test varies on top."""

from __future__ import annotations

from typing import Any

from etl.definition import EventSpec


def event_spec(**fields: Any) -> EventSpec:
    """Constant source `app` and event name `e`, occurred_at column `ts`, customer by `cid`."""
    return EventSpec.model_validate(
        {"source": "app", "event_name": "e", "occurred_at": "ts",
         "customer": {"external_id": "cid"}, **fields}
    )
