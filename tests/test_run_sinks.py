"""Each sink of a run in-process: `run_async(..., client=httpx.AsyncClient(transport=
httpx.ASGITransport(app)))` with the sandbox app, so what the API stored is read back
from the app itself (the end-to-end tests run the CLI against the sandbox process).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from starlette.applications import Starlette

import etl
from etl.definition import Pipeline
from etl.quarantine import REJECT_RULE
from etl.report import RunReport
from etl.runner.plan import Mode
from etl.sandbox.app import create_app
from etl.sandbox.config import SandboxConfig

STORE = "store-sinks"
GOOD = 30


def rows(n: int) -> pd.DataFrame:
    """`n` valid orders, then one without a customer and one with a bad date."""
    good = pd.DataFrame(
        {
            "order_id": [f"o-{i}" for i in range(n)],
            "customer_id": [f"c-{i % 7}" for i in range(n)],
            "email": [f"buyer{i}@shop.io" for i in range(n)],
            "shipped_at": [f"2024-03-{1 + i % 28:02d}T12:30:00Z" for i in range(n)],
            "total": [round(10 + i * 0.25, 2) for i in range(n)],
        }
    )
    bad = pd.DataFrame(
        {
            "order_id": ["bad-1", "bad-2"],
            "customer_id": [None, "c-9"],
            "email": [None, "ann@shop.io"],
            "shipped_at": ["2024-03-02T10:00:00Z", "not a date"],
            "total": [1.0, 2.0],
        }
    )
    return pd.concat([good, bad], ignore_index=True)


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    rows(GOOD).to_csv(tmp_path / "orders.csv", index=False)
    file = tmp_path / "orders.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "name": "orders_sinks",
                "source": {"type": "csv", "path": "orders.csv", "chunk_size": 8},
                "event": {
                    "source": "shop",
                    "event_name": "Order Shipped",
                    "occurred_at": "shipped_at",
                    "id": {"key": ["order_id"]},
                    "customer": {"external_id": "customer_id", "email": "email"},
                    "properties": {"order_id": "order_id", "total": "total"},
                },
                "destination": {
                    "store_id": STORE,
                    "token": "sandbox-token",
                    "base_url": "http://sandbox",
                    "rate_limit": 1000,
                    "concurrency": 4,
                    "timeout": 5,
                    "max_retries": 1,
                },
            }
        )
    )
    return etl.load_pipeline(file)


def in_process(
    app: Starlette, pipeline: Pipeline, options: etl.RunOptions, mode: Mode | None = None
) -> RunReport:
    """One run whose HTTP goes to `app` in this process."""

    async def main() -> RunReport:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport) as client:
            return await etl.run_async(pipeline, options, client=client, mode=mode)

    return asyncio.run(main())


def stored(app: Starlette) -> list[dict[str, Any]]:
    """The bodies the sandbox app keeps for the store, by id."""
    bodies = app.sandbox.events.events(STORE)  # type: ignore[attr-defined]
    return sorted(bodies, key=lambda body: body["id"])


QUIET = etl.RunOptions(progress=False)


def test_the_load_sink_delivers_every_valid_row_once_and_quarantines_the_rest(
    pipeline: Pipeline,
) -> None:
    app = create_app(SandboxConfig(rate_limit=None))
    report = in_process(app, pipeline, QUIET)

    assert (report.mode, report.outcome, report.exit_code) == (Mode.RUN, "completed", 1)
    assert (report.extracted, report.valid, report.delivered, report.failed) == (32, 30, 30, 0)
    assert dict(report.rejected_by_rule) == {"customer_identity": 1, "occurred_at": 1}
    assert report.requests == 30 and report.http_retries == 0  # the loader's own figures
    assert sorted(body["properties"]["order_id"] for body in stored(app)) == sorted(
        f"o-{i}" for i in range(GOOD)
    )
    quarantine = pd.read_csv(report.quarantine_file or "")
    assert sorted(quarantine["order_id"]) == ["bad-1", "bad-2"]
    assert set(quarantine[REJECT_RULE]) == {"customer_identity", "occurred_at"}
    assert json.loads(report.to_json())["requests"] == 30  # the report JSON keeps its fields


def test_the_load_sink_skips_unchanged_events_on_a_rerun(pipeline: Pipeline) -> None:
    app = create_app(SandboxConfig(rate_limit=None))
    in_process(app, pipeline, QUIET)
    again = in_process(app, pipeline, QUIET)

    assert (again.skipped_unchanged, again.delivered, again.requests) == (30, 0, 0)
    assert app.sandbox.events.count(STORE) == 30  # type: ignore[attr-defined]


def test_the_watermark_keeps_the_source_form_of_a_cursor_that_is_also_occurred_at(
    tmp_path: Path,
) -> None:
    """Naive local text, America/New_York: the watermark must not be the normalised UTC
    instant ("2024-03-02 17:30:00+00:00"), or the later local "2024-03-02 13:00:00" (text
    below it) would never be read, and the rows at the watermark would be read again."""
    source = tmp_path / "orders.csv"
    first = ["2024-03-01 09:00:00", "2024-03-02 12:30:00", "2024-03-02 12:30:00"]
    pd.DataFrame(
        {"order_id": ["o-1", "o-2", "o-3"], "customer_id": "c-1", "shipped_at": first}
    ).to_csv(source, index=False)
    file = tmp_path / "incremental.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "name": "incremental_sinks",
                "source": {
                    "type": "csv",
                    "path": "orders.csv",
                    "incremental": {"cursor": "shipped_at"},
                },
                "event": {
                    "source": "shop",
                    "event_name": "order_shipped",
                    "occurred_at": "shipped_at",
                    "timezone": "America/New_York",
                    "id": {"key": ["order_id"]},
                    "customer": {"external_id": "customer_id"},
                },
                "destination": {
                    "store_id": STORE,
                    "token": "sandbox-token",
                    "base_url": "http://sandbox",
                    "rate_limit": 1000,
                },
            }
        )
    )
    app = create_app(SandboxConfig(rate_limit=None))
    report = in_process(app, etl.load_pipeline(file), QUIET)
    assert (report.delivered, report.watermark) == (3, "2024-03-02 12:30:00")

    with source.open("a") as out:
        out.write("o-4,c-1,2024-03-02 13:00:00\n")
    again = in_process(app, etl.load_pipeline(file), QUIET)

    assert (again.extracted, again.delivered, again.watermark) == (1, 1, "2024-03-02 13:00:00")
    assert sorted(body["occurred_at"] for body in stored(app))[-1] == "2024-03-02T18:00:00Z"


def test_the_load_sink_sends_failed_events_first_on_the_next_run(pipeline: Pipeline) -> None:
    down = create_app(SandboxConfig(rate_limit=None, fail_rate=1.0))  # every answer a 500
    first = in_process(down, pipeline, QUIET)
    up = create_app(SandboxConfig(rate_limit=None))
    second = in_process(up, pipeline, QUIET)

    assert (first.delivered, first.failed, first.requests) == (0, 30, 60)  # 1 retry each
    assert (second.retried_from_last_run, second.delivered, second.failed) == (30, 30, 0)
    assert second.skipped_unchanged == 30  # the source's copies of the resent events
    assert len(stored(up)) == 30


def test_the_dry_run_sink_writes_exactly_the_bodies_a_run_sends(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    app = create_app(SandboxConfig(rate_limit=None))
    output = tmp_path / "bodies.jsonl"
    dry = in_process(app, pipeline, etl.RunOptions(dry_run=True, output=output, progress=False))

    assert (dry.mode, dry.written, dry.delivered, dry.requests) == (Mode.DRY_RUN, 30, 0, 0)
    assert stored(app) == []  # nothing reached the API
    assert not (tmp_path / ".etl" / "state.db").exists()  # and no state was made
    in_process(app, pipeline, QUIET)
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(lines, key=lambda body: body["id"]) == stored(app)


def test_two_dry_runs_in_the_same_second_keep_their_rejects_apart(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    class SameSecond(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> SameSecond:
            return cls(2026, 12, 3, 7, 45, 0, tzinfo=tz)

    monkeypatch.setattr("etl.runner.execute.datetime", SameSecond)  # both start at 07:45:00
    app = create_app(SandboxConfig(rate_limit=None))
    dry = etl.RunOptions(dry_run=True, progress=False)
    files = [in_process(app, pipeline, dry).quarantine_file for _ in range(2)]

    assert files[0] != files[1]
    for file in files:
        assert Path(file or "").name.startswith("dry-run-")
        assert sorted(pd.read_csv(file or "")["order_id"]) == ["bad-1", "bad-2"]


def test_the_validate_sink_sends_nothing_and_keeps_masked_examples(pipeline: Pipeline) -> None:
    app = create_app(SandboxConfig(rate_limit=None))
    report = in_process(app, pipeline, QUIET, mode=Mode.VALIDATE)
    report_again, examples = etl.validate_pipeline(pipeline)

    assert (report.mode, report.valid, report.written, report.delivered) == (
        Mode.VALIDATE,
        30,
        0,
        0,
    )
    assert report_again.rejected_by_rule == report.rejected_by_rule
    assert sorted(examples) == ["customer_identity", "occurred_at"]
    assert all("ann@shop.io" not in line for lines in examples.values() for line in lines)
    assert stored(app) == []
