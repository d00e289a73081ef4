"""State through the CLI: per destination (going live), one run at a time, --retry-rejected,
masked status, `etl status --json`, and the machine's state as exit 3 in one line."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from test_run_end_to_end import STORE, Project, csv_source, orders

import etl
from etl.events import Status


def one_error_line(stderr: str) -> str:
    """The whole of stderr, which must be exactly one `error:` line."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_the_same_pipeline_pointed_at_another_destination_sends_everything(
    tmp_path: Path, sandbox
) -> None:
    a, b = sandbox(rate_limit=None), sandbox(rate_limit=None)
    source = csv_source(tmp_path, orders(30))
    proj = Project(tmp_path, a.base_url, a.token, source)
    report = tmp_path / "report.json"
    assert proj.run().returncode == 0
    assert a.stats(STORE)["count"] == 30

    proj.write(b.base_url + "/", source)  # a trailing slash names the same destination
    assert proj.run("--report-json", str(report)).returncode == 0
    assert (proj.report()["delivered"], proj.report()["skipped_unchanged"]) == (30, 0)
    assert b.stats(STORE)["count"] == 30

    proj.write(a.base_url + "/", source)
    assert proj.run("--report-json", str(report)).returncode == 0
    assert (proj.report()["delivered"], proj.report()["skipped_unchanged"]) == (0, 30)
    assert a.stats(STORE)["requests"] == 30

    shown = proj.etl("status", str(proj.file), "--json")
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["totals"] == {"delivered": 60}
    assert [(d["base_url"], d["store_id"], d["totals"]) for d in status["destinations"]] == sorted(
        [(a.base_url, STORE, {"delivered": 30}), (b.base_url, STORE, {"delivered": 30})]
    )
    assert [run["base_url"] for run in status["runs"]] == [a.base_url, b.base_url, a.base_url]

    text = proj.etl("status", str(proj.file))
    assert text.returncode == 0, text.stderr
    assert f"  {a.base_url} store {STORE}: events delivered 30; watermark None" in text.stdout
    assert f"  {b.base_url} store {STORE}: events delivered 30; watermark None" in text.stdout
    assert "orders_e2e: events delivered 60" in text.stdout


def test_the_watermark_of_one_destination_does_not_hide_rows_from_another(
    tmp_path: Path, sandbox
) -> None:
    a, b = sandbox(rate_limit=None), sandbox(rate_limit=None)
    source = csv_source(tmp_path, orders(12), incremental={"cursor": "updated_at"})
    proj = Project(tmp_path, a.base_url, a.token, source)
    report = tmp_path / "report.json"
    assert proj.run().returncode == 0
    proj.write(b.base_url, source)
    assert proj.run("--report-json", str(report)).returncode == 0
    assert (proj.report()["extracted"], proj.report()["delivered"]) == (12, 12)
    assert b.stats(STORE)["count"] == 12
    proj.write(a.base_url, source)
    assert proj.run("--report-json", str(report)).returncode == 0
    assert (proj.report()["extracted"], a.stats(STORE)["requests"]) == (0, 12)
    status = json.loads(proj.etl("status", str(proj.file), "--json").stdout)
    assert [d["watermark"] for d in status["destinations"]] == ["2024-05-01T00:00:00Z"] * 2


def test_a_second_run_refuses_at_once_and_a_killed_holder_blocks_nobody(
    tmp_path: Path, sandbox
) -> None:
    server = sandbox(rate_limit=None, latency_ms=20)
    proj = Project(
        tmp_path, server.base_url, server.token, csv_source(tmp_path, orders(300)), rate_limit=20
    )
    holder = proj.spawn()
    deadline = time.monotonic() + 60
    while server.stats(STORE)["count"] < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    second = proj.run()
    assert time.monotonic() - started < 10  # refuses at once, does not wait for the holder
    assert second.returncode == 3
    line = one_error_line(second.stderr)
    match = re.fullmatch(
        r"error: another run of this pipeline holds the state \(pid (\d+) on (\S+), started "
        r"(\S+); lock (\S+)\); wait for it to finish or stop it",
        line,
    )
    assert match, line
    assert (int(match[1]), match[2]) == (holder.pid, socket.gethostname())
    assert match[4] == str(tmp_path / ".etl" / "state.db.orders_e2e.lock")
    assert server.stats(STORE)["count"] < 300

    holder.kill()
    holder.wait(timeout=10)
    proj.write(server.base_url, csv_source(tmp_path, orders(300)), rate_limit=1000)
    rerun = proj.run()
    assert rerun.returncode == 0, rerun.stderr
    assert server.stats(STORE)["count"] == 300


class _JudgingApi(BaseHTTPRequestHandler):
    """Answers 422 naming the customer's email while `judging`, then 201; counts ids."""

    protocol_version = "HTTP/1.1"
    judging = True
    received: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append(body["id"])
        if type(self).judging:
            status, answer = (
                422,
                {
                    "error": {
                        "field": "customer.email",
                        "message": f"{body['customer']['email']} is blocked",
                    }
                },
            )
        else:
            status, answer = 201, {"id": body["id"]}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def judging_api() -> Iterator[tuple[str, type[_JudgingApi]]]:
    handler = type("Api", (_JudgingApi,), {"judging": True, "received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_retry_rejected_resends_what_the_api_refused_and_status_masks_the_email(
    tmp_path: Path, judging_api, monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url, api = judging_api
    for name in ("YOTPO_STORE_ID", "YOTPO_TOKEN"):  # for etl.status() in this process
        monkeypatch.setenv(name, STORE)
    frame = orders(6).assign(email=[f"buyer{i}@example.com" for i in range(6)])
    source = csv_source(tmp_path, frame)
    proj = Project(tmp_path, base_url, "t0ken", source)
    definition = proj.file.read_text().replace(
        "external_id: customer_id", "email: email\n    external_id: customer_id"
    )
    proj.file.write_text(definition)
    report = tmp_path / "report.json"
    assert proj.run("--report-json", str(report)).returncode == 1
    assert proj.report()["rejected_by_rule"] == {"api": 6}

    proj.env["COLUMNS"] = "250"  # one table row per error
    shown = proj.etl("status", str(proj.file))
    assert shown.returncode == 0, shown.stderr
    assert "buyer" not in shown.stdout
    assert shown.stdout.count("customer.email: b***@example.com is blocked") == 6
    status = json.loads(proj.etl("status", str(proj.file), "--json").stdout)
    [destination] = status["destinations"]
    assert {e["error"] for e in destination["last_errors"]} == {
        "customer.email: b***@example.com is blocked"
    }
    library = etl.status(proj.file)
    assert library.totals == {Status.REJECTED: 6}
    assert "buyer" not in library.to_json()

    api.judging = False  # the cause was fixed on the API's side
    api.received.clear()
    assert proj.run("--report-json", str(report)).returncode == 0
    assert (proj.report()["skipped_unchanged"], api.received) == (6, [])

    assert proj.run("--retry-rejected", "--report-json", str(report)).returncode == 0
    got = proj.report()
    assert (got["retried_from_last_run"], got["delivered"], got["skipped_unchanged"]) == (6, 6, 6)
    assert sorted(api.received) == sorted(set(api.received)) and len(api.received) == 6
    assert etl.status(proj.file).totals == {Status.DELIVERED: 6}


def test_status_of_a_pipeline_without_state_creates_nothing(tmp_path: Path, sandbox) -> None:
    proj = Project(tmp_path, "http://127.0.0.1:9", "t", csv_source(tmp_path, orders(2)))
    shown = proj.etl("status", str(proj.file), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {
        "pipeline": "orders_e2e",
        "totals": {},
        "destinations": [],
        "runs": [],
    }
    assert not (tmp_path / ".etl").exists()


def test_an_unreachable_state_database_is_one_line_and_exit_3(tmp_path: Path) -> None:
    proj = Project(tmp_path, "http://127.0.0.1:9", "t", csv_source(tmp_path, orders(2)))
    unreachable = "state: postgresql+psycopg://etl:pw@127.0.0.1:9/x\n"
    proj.file.write_text(proj.file.read_text() + unreachable)
    for args in (("run", str(proj.file)), ("status", str(proj.file))):
        result = proj.etl(*args)
        assert result.returncode == 3, result.stderr
        line = one_error_line(result.stderr)
        assert line.startswith(
            "error: state store postgresql+psycopg://etl:***@127.0.0.1:9/x: cannot open: "
        ), line
        assert "pw" not in line
