"""A misconfigured or dead destination (mostly through the CLI): abort fast, say why, lose nothing.

A 404 from a wrong `destination.path` or a refused token judges the configuration, not
the rows: the run exits 3 and a rerun after the fix delivers every event (SPEC §5, §7).
"""

from __future__ import annotations

import socket
import sqlite3
import time
from pathlib import Path

import pytest
from test_load import body, deliver, destination, make_events
from test_run_end_to_end import STORE, Project, csv_source, orders

from etl.errors import Unreachable

ROWS = 60


def recorded_statuses(root: Path) -> dict[str, int]:
    """Event outcomes the state file holds, by status."""
    with sqlite3.connect(root / ".etl" / "state.db") as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        table = next(name for name in tables if name.endswith("events"))
        return dict(db.execute(f"SELECT status, count(*) FROM {table} GROUP BY status").fetchall())


def test_a_wrong_path_aborts_with_the_status_and_url_and_the_fixed_rerun_delivers_all(
    tmp_path: Path, sandbox
) -> None:
    server = sandbox(rate_limit=None)
    source = csv_source(tmp_path, orders(ROWS))
    wrong = "/core/v3/stores/{store_id}/custom_event"  # a letter short
    proj = Project(tmp_path, server.base_url, server.token, source, path=wrong)

    first = proj.run("--report-json", str(tmp_path / "report.json"))
    assert first.returncode == 3, first.stderr
    url = f"{server.base_url}/core/v3/stores/{STORE}/custom_event"
    assert f"HTTP 404 to 3 requests in a row at {url}" in first.stderr
    assert server.token not in first.stderr + first.stdout
    assert "Traceback" not in first.stderr
    assert proj.report()["rejected"] == 0 and proj.report()["delivered"] == 0
    assert "rejected" not in recorded_statuses(tmp_path)

    proj.write(server.base_url, source)  # the default path
    second = proj.run("--report-json", str(tmp_path / "report.json"))
    assert second.returncode == 0, second.stderr
    assert proj.report()["delivered"] == ROWS
    assert server.stats(STORE)["count"] == ROWS


def test_a_refused_token_aborts_and_the_fixed_rerun_delivers_all(tmp_path: Path, sandbox) -> None:
    server = sandbox(rate_limit=None)
    proj = Project(tmp_path, server.base_url, "stale-token", csv_source(tmp_path, orders(ROWS)))

    first = proj.run()
    assert first.returncode == 3, first.stderr
    assert "refused the token" in first.stderr and "stale-token" not in first.stderr
    assert server.stats(STORE)["count"] == 0
    assert set(recorded_statuses(tmp_path)) <= {"failed"}

    proj.env["YOTPO_TOKEN"] = server.token
    second = proj.run("--report-json", str(tmp_path / "report.json"))
    assert second.returncode == 0, second.stderr
    assert proj.report()["delivered"] == ROWS
    assert server.stats(STORE)["count"] == ROWS


def test_a_dead_port_aborts_within_seconds_naming_the_host_and_the_error(tmp_path: Path) -> None:
    with socket.socket() as unused:  # bound, never listening: every connection is refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        base_url = f"http://127.0.0.1:{port}"
        proj = Project(
            tmp_path, base_url, "some-token", csv_source(tmp_path, orders(300)), max_retries=8
        )
        for args in (["--limit", "5"], []):
            started = time.monotonic()
            result = proj.run(*args, "--report-json", str(tmp_path / "report.json"))
            elapsed = time.monotonic() - started

            assert result.returncode == 3, result.stderr
            assert f"the API at http://127.0.0.1:{port} cannot be reached" in result.stderr
            assert "ConnectError" in result.stderr and "Connect call failed" in result.stderr
            assert "Traceback" not in result.stderr
            report = proj.report()
            assert report["outcome"] == "aborted" and report["delivered"] == 0
            assert "ConnectError" in report["last_error"]
            assert report["requests"] <= 3 * 8  # three tries of each worker's first event
            assert elapsed < 15


def test_a_dead_port_with_only_a_secret_aborts_while_generating_the_token() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        dest = destination(
            base_url=f"http://127.0.0.1:{port}", token=None, secret="s3cret-value", max_retries=8
        )
        started = time.monotonic()
        with pytest.raises(
            Unreachable,
            match=f"the API at http://127.0.0.1:{port} cannot be "
            r"reached \(ConnectError: could not connect",
        ) as raised:
            deliver(dest, make_events([body(n) for n in range(10)]))
        assert time.monotonic() - started < 15  # three tries, not eight at full back-off
    assert "s3cret-value" not in str(raised.value)
