"""Pauses the API asks for: clamped to `destination.max_pause`, logged once, shown on the
progress line."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from test_run_end_to_end import Project, csv_source, orders

from etl import wire
from etl.load import LoadStats
from etl.report import ProgressDisplay, RunReport


def test_a_day_long_retry_after_is_clamped_to_max_pause_and_logged_once(
    tmp_path: Path, serve: Callable[[Starlette], str]
) -> None:
    arrivals: list[float] = []

    async def post(request: Request) -> Response:
        arrivals.append(time.monotonic())
        if len(arrivals) == 1:
            return Response(b'{"error": "slow down"}', 429, {"Retry-After": "86400"})
        return Response(b'{"id": "x"}', 200, media_type="application/json")

    base_url = serve(Starlette(routes=[Route(wire.DEFAULT_PATH, post, methods=["POST"])]))
    proj = Project(
        tmp_path, base_url, "any-token", csv_source(tmp_path, orders(5)), concurrency=1, max_pause=2
    )
    result = proj.run("--report-json", str(tmp_path / "report.json"))

    assert result.returncode == 0, result.stderr
    assert proj.report()["delivered"] == 5
    pauses = [line for line in result.stderr.splitlines() if "paused by the API" in line]
    assert len(pauses) == 1, result.stderr
    assert re.search(
        r"store store-e2e: paused by the API until \d\d:\d\d:\d\d \(2 s\): "
        r"HTTP 429, Retry-After: 86400, clamped to destination.max_pause 2 s$",
        pauses[0],
    )
    assert 1.9 <= arrivals[1] - arrivals[0] < 30  # waited the clamped pause, not a day
    assert proj.report()["pause_429_s"] >= 1.9


def test_the_progress_line_shows_a_pause_still_on_and_the_last_error_masked() -> None:
    stats = LoadStats()
    report = RunReport(pipeline="p", extracted=10, valid=10, load=stats)
    display = ProgressDisplay(report, enabled=False)
    stats.paused_until = (datetime.now() + timedelta(minutes=5)).astimezone()
    stats.last_error = "HTTP 500: could not store ann@example.com"
    line = display.line()
    assert line.endswith(
        f", paused by the API until {stats.paused_until:%H:%M:%S}, "
        "last error: HTTP 500: could not store a***@example.com"
    )
    stats.paused_until = (datetime.now() - timedelta(seconds=1)).astimezone()
    assert "paused" not in display.line()
