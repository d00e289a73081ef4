"""SIGTERM while a long SQL query runs: the query is cancelled on the server and the run exits
130 within the destination's timeout, instead of waiting for the query to end (SPEC §7)."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fixtures_db import MARIADB_URL, POSTGRES_URL, mariadb_engine, postgres_engine  # noqa: F401
from test_run_end_to_end import Project

TIMEOUT_S = 5
COLUMNS = "'c-1' AS customer_id, '2024-03-01T12:30:00Z' AS shipped_at, 1.5 AS order_total"


def wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def scalar(engine: sa.Engine, sql: str, **params: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text(sql), params).scalar_one())


def stop_while_querying(
    tmp_path: Path,
    sandbox: Callable[..., Any],
    url: str,
    query: str,
    running: Callable[[], int],
) -> None:
    """Start a run on `query`, SIGTERM it once `running()` sees the query, check the stop."""
    server = sandbox(rate_limit=None)
    source = {"type": "sql", "url": url, "query": query}
    proj = Project(tmp_path, server.base_url, server.token, source, timeout=TIMEOUT_S)
    process = proj.spawn("--report-json", str(tmp_path / "report.json"))
    try:
        started = wait_for(lambda: running() == 1, 60)
        assert started, process.communicate(timeout=5) if process.poll() is not None else "slow"
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        stopped = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 130, stderr
    assert stopped < TIMEOUT_S + 2, stopped
    assert "Traceback" not in stderr
    assert proj.report()["outcome"] == "interrupted"
    assert wait_for(lambda: running() == 0, 5)  # cancelled on the server, not left to run
    assert server.stats("store-e2e")["requests"] == 0


#: Per database: the engine fixture, the run's URL, a query that sleeps for a minute or two,
#: and a count of the run's statements still running on the server (all named by `marker`).
SLOW = {
    "postgres": (
        "postgres_engine",
        POSTGRES_URL + "?application_name={marker}",
        "WITH {marker} AS MATERIALIZED (SELECT pg_sleep(120) AS slept) "
        "SELECT 'o-' || g AS order_id, " + COLUMNS + " "
        "FROM generate_series(1, 3) AS g CROSS JOIN {marker}",
        # the run's backend busy: a FETCH from its server-side cursor
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
        "AND application_name = :marker",
    ),
    "mariadb": (
        "mariadb_engine",
        MARIADB_URL,
        "SELECT CONCAT('o-', n) AS order_id, " + COLUMNS + " "
        "FROM (SELECT 1 AS n UNION ALL SELECT 2) AS {marker} WHERE SLEEP(60) = 0",
        # the statement still in the process list (killed: gone)
        "SELECT count(*) FROM information_schema.processlist "
        "WHERE LOCATE(CONCAT(' AS ', :marker, ' WHERE SLEEP'), info) > 0 "
        "AND id <> connection_id()",
    ),
}


@pytest.mark.parametrize("database", sorted(SLOW))
def test_sigterm_cancels_a_slow_query_and_exits_130_within_the_timeout(
    tmp_path: Path, sandbox: Callable[..., Any], request: pytest.FixtureRequest, database: str
) -> None:
    fixture, url, query, running = SLOW[database]
    engine: sa.Engine = request.getfixturevalue(fixture)
    marker = f"nap_{uuid.uuid4().hex[:10]}"

    def count() -> int:
        return scalar(engine, running, marker=marker)

    stop_while_querying(
        tmp_path, sandbox, url.format(marker=marker), query.format(marker=marker), count
    )
