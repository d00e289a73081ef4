"""SIGTERM while a long SQL query runs: the query is cancelled on the server and the run exits
130 within the destination's timeout, instead of waiting for the query to end (SPEC §7)."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from fixtures_db import POSTGRES_URL, postgres_engine  # noqa: F401
from test_run_end_to_end import Project

TIMEOUT_S = 5


def running(engine: sa.Engine, marker: str) -> int:
    """Backends of the run (named `marker`) running a statement: a FETCH from its cursor."""
    with engine.connect() as connection:
        return connection.execute(
            sa.text("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                    "AND application_name = :marker"),
            {"marker": marker},
        ).scalar_one()


def wait_for(predicate, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_sigterm_cancels_a_slow_postgres_query_and_exits_130_within_the_timeout(
    tmp_path: Path, sandbox, postgres_engine: sa.Engine  # noqa: F811
) -> None:
    server = sandbox(rate_limit=None)
    marker = f"nap_{uuid.uuid4().hex[:10]}"
    query = (
        f"WITH {marker} AS MATERIALIZED (SELECT pg_sleep(120) AS slept) "
        "SELECT 'o-' || g AS order_id, 'c-1' AS customer_id, "
        "'2024-03-01T12:30:00Z' AS shipped_at, 1.5 AS order_total "
        f"FROM generate_series(1, 3) AS g CROSS JOIN {marker}"
    )
    source = {"type": "sql", "url": f"{POSTGRES_URL}?application_name={marker}", "query": query}
    proj = Project(tmp_path, server.base_url, server.token, source, timeout=TIMEOUT_S)
    process = proj.spawn("--report-json", str(tmp_path / "report.json"))
    try:
        started = wait_for(lambda: running(postgres_engine, marker) == 1, 60)
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
    assert wait_for(lambda: running(postgres_engine, marker) == 0, 5)  # cancelled server-side
    assert server.stats("store-e2e")["requests"] == 0
