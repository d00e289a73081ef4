"""Following a run from outside (SPEC §12): Prometheus metrics, JSON logs, `etl status` ETA.

Each test runs the real CLI in a subprocess against the real sandbox process; the
run is slowed by a low `rate_limit` so that it is still going while it is watched.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_run_end_to_end import STORE, Project, csv_source, orders, with_bad_rows

ROWS = 30
#: Bound on every polling loop (seconds); a run of ROWS events at 5/s lasts about 6 s.
POLL_S = 40.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
    """Every sample as {(name, labels): value}; None when the server is not (yet) up."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.TransportError:
        return None
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float:
    wanted = {"pipeline": "orders_e2e", "store": STORE, **labels}
    return samples[(name, frozenset(wanted.items()))]


@pytest.fixture
def slow_project(tmp_path: Path, sandbox):
    server = sandbox(rate_limit=None)
    rows = with_bad_rows(orders(ROWS))
    source = csv_source(tmp_path, pd.concat([rows.tail(2), rows.head(ROWS)]))  # rejects first
    project = Project(tmp_path, server.base_url, server.token, source, rate_limit=5, concurrency=1)
    return server, project


def test_metrics_scraped_mid_run_match_what_the_sandbox_received(slow_project) -> None:
    server, project = slow_project
    port = _free_port()
    process = project.spawn(
        "--metrics-port", str(port), "--report-json", str(project.root / "report.json")
    )
    try:
        deadline, samples = time.monotonic() + POLL_S, None
        while time.monotonic() < deadline and process.poll() is None:
            before = server.stats(STORE)
            samples = _scrape(port)
            after = server.stats(STORE)
            if (
                samples is not None
                and _value(samples, "etl_events_total", outcome="delivered") >= 5
            ):
                break
            time.sleep(0.2)
        assert samples is not None, "the metrics server never answered"
        _, stderr = process.communicate(timeout=POLL_S)
    finally:
        process.kill()
    assert process.returncode == 1, stderr  # two rows rejected

    delivered = _value(samples, "etl_events_total", outcome="delivered")
    # concurrency 1: at most one request is between the sandbox's count and ours.
    assert before["count"] - 1 <= delivered <= after["count"]
    assert 5 <= delivered < ROWS  # truly mid-run
    answered = _value(samples, "etl_http_requests_total", status="200")
    assert before["status_counts"]["200"] - 1 <= answered <= after["status_counts"]["200"]
    assert _value(samples, "etl_http_429_total") == 0 == after["status_counts"].get("429", 0)
    assert _value(samples, "etl_rejected_rows_total", rule="customer_identity") == 1
    assert _value(samples, "etl_rejected_rows_total", rule="occurred_at") == 1
    assert _value(samples, "etl_source_rows") == ROWS + 2  # the CSV's typing pass counted it
    assert _value(samples, "etl_rows_read_total") >= 16  # one chunk at least
    assert _value(samples, "etl_limiter_wait_seconds_total") > 0  # 5 req/s held it back
    assert _value(samples, "etl_pause_429_seconds_total") == 0
    assert _value(samples, "etl_queue_depth") > 0
    eta = _value(samples, "etl_eta_seconds")
    assert 0 < eta < 60  # about (30 - delivered) / 5 s
    assert abs(_value(samples, "etl_run_start_time_seconds") - time.time()) < POLL_S + 60

    report = project.report()
    assert report["delivered"] == ROWS == server.stats(STORE)["count"]
    assert _scrape(port) is None  # the server stopped with the run


def test_a_taken_metrics_port_is_one_line_and_exit_2(slow_project) -> None:
    _, project = slow_project
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = project.run("--metrics-port", str(port))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: --metrics-port {port}: cannot listen on 127.0.0.1: Address already in use"
    ]


def test_json_logs_are_one_object_per_line_with_counts_and_no_token(slow_project) -> None:
    server, project = slow_project
    result = project.etl(
        "--log-format", "json", "run", str(project.file), "--progress-interval", "0.5"
    )
    assert result.returncode == 1, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]  # every line parses
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    progress = [record for record in records if "eta_s" in record]
    assert len(progress) >= 3  # a ~6 s run, a line every 0.5 s
    assert all(
        record["pipeline"] == "orders_e2e" and record["store"] == STORE for record in progress
    )
    assert all(record["total_rows"] == ROWS + 2 for record in progress)
    delivered = [record["delivered"] for record in progress]
    assert delivered == sorted(delivered) and delivered[-1] > 0
    summary = records[-1]["summary"]
    assert (summary["delivered"], summary["rejected"], summary["store"]) == (ROWS, 2, STORE)
    assert server.token not in result.stderr


def test_json_logs_carry_errors_as_json_and_exit_3(slow_project) -> None:
    _, project = slow_project
    project.env["YOTPO_TOKEN"] = "wrong-token-123"
    result = project.etl("--log-format", "json", "run", str(project.file))
    assert result.returncode == 3, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    error = records[-1]
    assert error["level"] == "ERROR" and "refused the token" in error["message"]
    assert records[-2]["summary"]["outcome"] == "aborted"
    assert "wrong-token-123" not in result.stderr


def test_log_lines_mask_emails_and_phone_numbers() -> None:
    code = (
        "import logging; from etl.logs import configure; configure('json', verbose=False); "
        "logging.getLogger('etl').warning('row of %s (%s) refused', "
        "'ann.lee@example.com', '+14155552671')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    record = json.loads(result.stderr)
    assert record["message"] == "row of a***@example.com (+1********71) refused"


def test_status_of_a_running_pipeline_gives_the_whole_source_eta(slow_project) -> None:
    server, project = slow_project
    project.write(
        server.base_url, csv_source(project.root, orders(ROWS)), rate_limit=2, concurrency=1
    )
    process = project.spawn()  # ~15 s: `etl status` takes a second or two to start
    try:
        deadline, line = time.monotonic() + POLL_S, ""
        while time.monotonic() < deadline and process.poll() is None:
            status = project.etl("status", str(project.file))
            found = [x for x in status.stdout.splitlines() if "running: read" in x]
            line = found[0] if found else line
            if line and "delivered 0," not in line:
                break
            time.sleep(0.3)
        process.communicate(timeout=POLL_S)
    finally:
        process.kill()
    assert f"of {ROWS}" in line, line
    assert "ETA" in line and "(whole source)" in line, line
    after = project.etl("status", str(project.file))
    assert "running: read" not in after.stdout  # the final summary replaced the snapshot


def test_json_logs_stay_json_with_verbose_after_the_subcommand(slow_project) -> None:
    _, project = slow_project
    result = project.etl(
        "--log-format",
        "json",
        "run",
        str(project.file),
        "--dry-run",
        "-v",
        "--progress-interval",
        "0.1",
    )
    assert result.returncode == 1, result.stderr  # two rows rejected
    records = [json.loads(line) for line in result.stderr.splitlines()]
    summary = records[-1]["summary"]
    assert (summary["mode"], summary["written"], summary["rejected"]) == ("dry-run", ROWS, 2)
