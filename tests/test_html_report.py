"""`etl report --html`: the history it reads, the page it writes, and that page in Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from test_run_end_to_end import Project, csv_source, orders
from test_state import outcome, url  # noqa: F401  (the fixture: SQLite, PostgreSQL, MariaDB)

from etl.events import Status
from etl.history import History, Run, load_history
from etl.html_report import render
from etl.state import Scope, StateStore
from etl.state.schema import events

GOOD = 24
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _rows_with_personal_rejects() -> pd.DataFrame:
    good = orders(GOOD).assign(email=None)
    bad = pd.DataFrame(
        {
            "order_id": ["bad-1", "bad-2", "bad-3"],
            "customer_id": [None, None, "c-1"],
            "shipped_at": ["2024-03-02T10:00:00Z", "2024-03-02T10:00:00Z", "not a date"],
            "order_total": [1.0, 2.0, 3.0],
            "updated_at": ["2024-05-01T00:00:00Z"] * 3,
            "email": ["jane.doe@example", "bob.smith@@example.com", None],
        }
    )
    return pd.concat([good, bad], ignore_index=True)


@pytest.fixture
def reported(tmp_path: Path, sandbox) -> tuple[Project, str]:
    """Two real runs against the sandbox (the second skips everything), then the report."""
    server = sandbox(rate_limit=None)
    project = Project(
        tmp_path, server.base_url, server.token, csv_source(tmp_path, _rows_with_personal_rejects())
    )
    definition = yaml.safe_load(project.file.read_text())
    definition["event"]["customer"]["email"] = "email"
    project.file.write_text(yaml.safe_dump(definition))
    assert project.run().returncode == 1
    assert project.run().returncode == 1
    result = project.etl("report", str(project.file), "--html", str(tmp_path / "report.html"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"{tmp_path / 'report.html'}: 2 runs, ")
    return project, (tmp_path / "report.html").read_text(encoding="utf-8")


def test_the_page_has_the_state_numbers_and_masked_examples(reported) -> None:
    _, page = reported
    for chart in ("throughput", "outcomes", "waits", "rejects"):
        assert re.search(f'<figure id="{chart}" class="chart"><svg', page), chart
    tiles = dict(re.findall(r'<div class="tile" data-name="([^"]+)"><b>([^<]+)</b>', page))
    assert tiles == {
        "delivered": str(GOOD),
        "rejected by the API": "0",
        "failed (resent next run)": "0",
        "rows rejected (summed over runs)": "6",  # 3 bad rows, read by both runs
        "waited on the limiter": tiles["waited on the limiter"],
        "paused by 429s": "0s",
    }
    runs = re.findall(r"<tr><td>(\d+)</td>.*?</tr>", page)
    assert runs == ["2", "1"]
    assert re.search(
        r'<tr><td>email</td><td>4</td><td class="prose">email &#x27;j\*\*\*@example&#x27; is not a '
        r"valid address[^<]*\| email &#x27;b\*\*\*@@example.com&#x27;",
        page,
    )
    assert re.search(
        r'<tr><td>occurred_at</td><td>2</td><td class="prose">occurred_at &#x27;not a date&#x27;',
        page,
    )
    assert "jane.doe" not in page and "bob.smith" not in page
    assert "Per store" not in page  # one store: no per-store section


def test_the_page_fetches_nothing(reported) -> None:
    _, page = reported
    assert "<script" not in page and "<link" not in page and "<img" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page)
    assert "@import" not in page


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def test_chromium_renders_the_charts_and_numbers(reported, tmp_path: Path) -> None:
    chromium = _chromium()
    project, _ = reported
    page = project.root / "report.html"
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page.as_uri()],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dom.stdout
    assert rendered.count("<svg") == 4  # throughput, outcomes, waits, rejects
    assert f"<b>{GOOD}</b>delivered" in rendered
    assert "Events per minute" in rendered and "Outcomes per run" in rendered  # a short history
    screenshot = tmp_path / "report.png"
    shot = subprocess.run(
        [chromium, *flags, f"--screenshot={screenshot}", "--window-size=1200,2200", page.as_uri()],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000  # a blank page is a few kB


def _run(run_id: int, store: str, **summary) -> Run:
    started = datetime(2026, 11, 30, 12, tzinfo=UTC) + timedelta(hours=run_id)
    return Run(run_id, started, started + timedelta(minutes=30), 0, {"store": store, **summary})


def test_a_running_backfill_shows_its_eta_and_several_stores_get_lines() -> None:
    now = datetime.now(UTC)
    running = Run(
        3,
        now - timedelta(hours=1),
        None,
        None,
        {
            "store": "s-b",
            "running": True,
            "progress_at": now.isoformat(),
            "run_id": 3,
            "extracted": 300_000,
            "total_rows": 2_000_000,
            "delivered": 290_000,
            "rate_per_s": 4.9,
            "eta_s": 350_000.0,
            "eta_whole_source": True,
        },
    )
    history = History(
        "orders",
        [_run(1, "s-a", delivered=10), _run(2, "s-b", delivered=7), running],
        totals={"delivered": 17},
        hourly=[("2026-11-30 13:00", {"delivered": 17})],
        per_store={"s-a": Counter(delivered=10), "s-b": Counter(delivered=7, failed=2)},
    )
    page = render(history)
    eta = re.search(r'<p class="running" id="eta">([^<]*)</p>', page)
    assert eta is not None
    assert eta.group(1) == (
        "run 3 running: read 300,000 of 2,000,000, delivered 290,000, 4.9/s, "
        "ETA 4d 1h (whole source)"
    )
    assert '<figure id="stores"' in page
    assert "<tr><td>s-a</td><td>10</td><td>0</td><td>0</td>" in page
    assert "<tr><td>s-b</td><td>7</td><td>0</td><td>2</td>" in page


def test_history_counts_events_per_hour_on_every_database(url: str) -> None:
    store = StateStore(url)
    p, other = (Scope(name, "http://127.0.0.1:8787", "s-1") for name in ("p", "other"))
    try:
        store.record_many(p, 1, [outcome(n, Status.DELIVERED) for n in range(5)])
        store.record_many(p, 1, [outcome(n, Status.FAILED, error="HTTP 500") for n in range(5, 7)])
        store.record_many(other, 1, [outcome(n, Status.DELIVERED) for n in range(9)])
        earlier = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
        with store.engine.begin() as connection:  # two events an hour earlier, as a long run has
            connection.execute(
                sa.update(events)
                .where(
                    events.c.pipeline == "p",
                    events.c.event_id.in_([outcome(n, Status.DELIVERED).event.id for n in (0, 1)]),
                )
                .values(last_at=earlier)
            )
        history = load_history(store, "p")
        recent = load_history(store, "other")
    finally:
        store.close()
    assert recent.bucket == "minute" and sum(recent.hourly[-1][1].values()) <= 9
    assert sum(sum(counts.values()) for _, counts in recent.hourly) == 9
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", recent.hourly[0][0])
    assert history.bucket == "hour"
    assert history.totals == {"delivered": 5, "failed": 2}
    assert history.hourly[0] == ("2026-11-30 09:00", {"delivered": 2})
    assert len(history.hourly) == 2
    assert history.hourly[1][1] == {"delivered": 3, "failed": 2}
