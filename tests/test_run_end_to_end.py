"""`etl run` as a user runs it: the real CLI in a subprocess against the real sandbox process."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
import yaml

STORE = "store-e2e"
GOOD_ROWS = 40


def orders(n: int, *, start: int = 0, updated: str = "2024-05-01T00:00:00Z") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": [f"o-{i}" for i in range(start, start + n)],
            "customer_id": [f"c-{i % 7}" for i in range(start, start + n)],
            "shipped_at": [f"2024-03-{1 + i % 28:02d}T12:30:00Z" for i in range(start, start + n)],
            "order_total": [round(10 + i * 0.25, 2) for i in range(start, start + n)],
            "updated_at": [updated] * n,
        }
    )


class Project:
    """A pipeline folder with its data, run through the CLI."""

    def __init__(
        self, root: Path, base_url: str, token: str, source: dict[str, Any], **destination: Any
    ) -> None:
        self.root = root
        self.file = root / "pipe.yaml"
        self.env = {**os.environ, "YOTPO_STORE_ID": STORE, "YOTPO_TOKEN": token}
        self.write(base_url, source, **destination)

    def write(self, base_url: str, source: dict[str, Any], **destination: Any) -> None:
        definition = {
            "name": "orders_e2e",
            "source": source,
            "event": {
                "source": "shopify_backfill",
                "event_name": "Order Shipped",
                "occurred_at": "shipped_at",
                "id": {"key": ["order_id"]},
                "customer": {"external_id": "customer_id"},
                "properties": {"order_id": "order_id", "total": "order_total"},
            },
            "destination": {
                "store_id": "${YOTPO_STORE_ID}",
                "token": "${YOTPO_TOKEN}",
                "base_url": base_url,
                "rate_limit": 1000,
                "concurrency": 8,
                "timeout": 5,
                "max_retries": 2,
                **destination,
            },
        }
        self.file.write_text(yaml.safe_dump(definition))

    def etl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "etl", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            cwd="/",
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.etl("run", str(self.file), *args)

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "etl", "run", str(self.file), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd="/",
        )

    def report(self) -> dict[str, Any]:
        return json.loads((self.root / "report.json").read_text())


def csv_source(root: Path, frame: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    frame.to_csv(root / "orders.csv", index=False)
    return {"type": "csv", "path": "orders.csv", "chunk_size": 16, **extra}


def with_bad_rows(frame: pd.DataFrame) -> pd.DataFrame:
    bad = pd.DataFrame(
        {
            "order_id": ["bad-1", "bad-2"],
            "customer_id": [None, "c-9"],
            "shipped_at": ["2024-03-02T10:00:00Z", "not a date"],
            "order_total": [1.0, 2.0],
            "updated_at": ["2024-05-01T00:00:00Z"] * 2,
        }
    )
    return pd.concat([frame, bad], ignore_index=True)


@pytest.fixture
def project(tmp_path: Path, sandbox):
    server = sandbox(rate_limit=None)
    return server, Project(
        tmp_path,
        server.base_url,
        server.token,
        csv_source(tmp_path, with_bad_rows(orders(GOOD_ROWS))),
    )


def test_a_run_delivers_exactly_what_the_dry_run_shows_and_quarantines_the_rest(project) -> None:
    server, proj = project
    dry = proj.run("--dry-run", "--output", str(proj.root / "out.jsonl"))
    assert dry.returncode == 1, dry.stderr  # two rows are rejected
    bodies = [orjson.loads(line) for line in (proj.root / "out.jsonl").read_bytes().splitlines()]
    assert len(bodies) == GOOD_ROWS
    assert server.stats(STORE)["requests"] == 0  # a dry run sends nothing

    result = proj.run("--report-json", str(proj.root / "report.json"))
    assert result.returncode == 1, result.stderr
    stored = {event["id"]: event for event in server.events(STORE)}
    assert stored == {body["id"]: body for body in bodies}
    first = next(body for body in bodies if body["properties"]["order_id"] == "o-0")
    assert first["event_name"] == "order_shipped"
    assert first["occurred_at"] == "2024-03-01T12:30:00Z"
    assert first["customer"] == {"external_id": "c-0"}
    assert first["properties"] == {"order_id": "o-0", "total": 10.0}

    report = proj.report()
    assert (report["extracted"], report["valid"], report["delivered"], report["failed"]) == (
        GOOD_ROWS + 2,
        GOOD_ROWS,
        GOOD_ROWS,
        0,
    )
    assert report["rejected_by_rule"] == {"customer_identity": 1, "occurred_at": 1}
    quarantine = pd.read_csv(report["quarantine_file"])
    assert sorted(quarantine["order_id"]) == ["bad-1", "bad-2"]
    assert set(quarantine["reject_rule"]) == {"customer_identity", "occurred_at"}
    assert "delivered" in result.stderr  # the summary table
    assert server.token not in result.stderr + result.stdout + json.dumps(report)


def test_a_rerun_skips_unchanged_events_and_resends_only_changed_ones(project) -> None:
    server, proj = project
    assert proj.run().returncode == 1
    again = proj.run("--report-json", str(proj.root / "report.json"))
    assert again.returncode == 1
    assert (proj.report()["skipped_unchanged"], proj.report()["requests"]) == (GOOD_ROWS, 0)

    frame = pd.read_csv(proj.root / "orders.csv")
    frame.loc[frame["order_id"] == "o-3", "order_total"] = 999.5
    frame.to_csv(proj.root / "orders.csv", index=False)
    proj.run("--report-json", str(proj.root / "report.json"))
    assert (proj.report()["delivered"], proj.report()["skipped_unchanged"]) == (1, GOOD_ROWS - 1)
    changed = [e for e in server.events(STORE) if e["properties"]["order_id"] == "o-3"]
    assert changed[0]["properties"]["total"] == 999.5

    proj.run("--full-refresh", "--report-json", str(proj.root / "report.json"))
    assert proj.report()["delivered"] == GOOD_ROWS
    assert server.stats(STORE)["count"] == GOOD_ROWS


def test_a_wrong_token_aborts_fast_with_exit_3(tmp_path: Path, sandbox) -> None:
    server = sandbox(rate_limit=None)
    proj = Project(
        tmp_path, server.base_url, "wrong-token-value", csv_source(tmp_path, orders(300))
    )
    result = proj.run()
    assert result.returncode == 3, result.stderr
    assert "refused" in result.stderr.lower()
    assert "wrong-token-value" not in result.stderr + result.stdout
    assert server.stats(STORE)["requests"] <= 8 + 2
    assert "Traceback" not in result.stderr


def test_failed_events_are_retried_first_on_the_next_run(tmp_path: Path, sandbox) -> None:
    broken = sandbox(rate_limit=None, fail_rate=1.0, seed=3)
    proj = Project(
        tmp_path, broken.base_url, broken.token, csv_source(tmp_path, orders(10)), max_retries=1
    )
    assert proj.run("--report-json", str(tmp_path / "report.json")).returncode == 1
    assert proj.report()["failed"] == 10

    # The same destination (state is kept per base URL and store), healthy again.
    port = int(broken.base_url.rsplit(":", 1)[1])
    broken.stop()
    healthy = sandbox(port=port, rate_limit=None)
    assert healthy.base_url == broken.base_url
    assert proj.run("--report-json", str(tmp_path / "report.json")).returncode == 0
    report = proj.report()
    assert (report["retried_from_last_run"], report["delivered"], report["skipped_unchanged"]) == (
        10,
        10,
        10,
    )
    assert healthy.stats(STORE)["count"] == 10
    assert healthy.stats(STORE)["requests"] == 10


def test_incremental_sync_sends_exactly_the_new_and_changed_rows(tmp_path: Path, sandbox) -> None:
    server = sandbox(rate_limit=None)
    database = tmp_path / "warehouse.sqlite"
    with sqlite3.connect(database) as connection:
        orders(20).to_sql("orders", connection, index=False)
    source = {
        "type": "sql",
        "url": f"sqlite:///{database}",
        "query": "SELECT * FROM orders",
        "chunk_size": 8,
        "incremental": {"cursor": "updated_at"},
    }
    proj = Project(tmp_path, server.base_url, server.token, source)
    assert proj.run().returncode == 0
    with sqlite3.connect(database) as connection:
        orders(5, start=100, updated="2024-05-02T00:00:00Z").to_sql(
            "orders", connection, index=False, if_exists="append"
        )
        connection.execute(
            "UPDATE orders SET order_total = 1.5, updated_at = '2024-05-02T01:00:00Z' WHERE order_id IN ('o-1', 'o-2')"
        )
    assert proj.run("--report-json", str(tmp_path / "report.json")).returncode == 0
    report = proj.report()
    assert (report["extracted"], report["delivered"]) == (7, 7)
    assert report["watermark"].startswith("2024-05-02")
    assert server.stats(STORE)["count"] == 25
    assert sum(server.stats(STORE)["receipts"].values()) == 27

    status = proj.etl("status", str(proj.file))
    assert status.returncode == 0, status.stderr
    assert "delivered 25" in status.stdout


def test_kill_9_mid_run_then_rerun_loses_nothing_and_resends_at_most_concurrency(
    tmp_path: Path, sandbox
) -> None:
    server = sandbox(rate_limit=None, latency_ms=30)
    proj = Project(
        tmp_path, server.base_url, server.token, csv_source(tmp_path, orders(400)), rate_limit=100
    )
    process = proj.spawn()
    deadline = time.monotonic() + 60
    while server.stats(STORE)["count"] < 100 and time.monotonic() < deadline:
        time.sleep(0.1)
    process.kill()
    process.wait(timeout=10)
    assert 100 <= server.stats(STORE)["count"] < 400

    assert proj.run().returncode == 0
    stats = server.stats(STORE)
    assert stats["count"] == 400
    resent = sum(stats["receipts"].values()) - 400
    assert 0 <= resent <= 8


def test_sigint_stops_cleanly_with_exit_130_and_a_summary(tmp_path: Path, sandbox) -> None:
    server = sandbox(rate_limit=None)
    proj = Project(
        tmp_path, server.base_url, server.token, csv_source(tmp_path, orders(200)), rate_limit=20
    )
    process = proj.spawn("--report-json", str(tmp_path / "report.json"))
    deadline = time.monotonic() + 60
    while server.stats(STORE)["count"] < 10 and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    report = proj.report()
    assert report["outcome"] == "interrupted"
    stored = server.stats(STORE)["count"]
    assert report["delivered"] <= stored <= report["delivered"] + 8
    assert stored < 200

    assert proj.run().returncode == 0
    assert server.stats(STORE)["count"] == 200
