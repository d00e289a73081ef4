"""Several `etl run` processes of ONE pipeline sharing its work through leases (SPEC §11).

Real worker processes, a real sandbox (whose per-event receipts count duplicates
exactly) and a real PostgreSQL state in a schema of its own. Lease 3 s.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from fleet_helpers import STORE, orders_project, postgres_state, spawn_run
from test_load_limits import max_in_window

from etl.sandbox.process import SandboxProcess

LEASE_S = 3.0
CONCURRENCY = 4


@pytest.fixture
def pg_state(postgres_engine: object) -> Iterator[str]:
    with postgres_state() as url:
        yield url


def leased_project(
    tmp_path: Path,
    server: SandboxProcess,
    state: str,
    rows: int,
    rate: float,
    shards: int = 8,
    incremental: bool = False,
    **destination: object,
) -> Path:
    """One pipeline file every worker runs: `workers:` on, a PostgreSQL state."""
    file = orders_project(
        tmp_path,
        "leased",
        server.base_url,
        server.token,
        rows,
        state,
        rate_limit=rate,
        concurrency=CONCURRENCY,
        **destination,
    )
    definition = yaml.safe_load(file.read_text())
    definition["workers"] = {"lease": LEASE_S, "shards": shards}
    if incremental:
        definition["source"]["incremental"] = {"cursor": "shipped_at"}
    file.write_text(yaml.safe_dump(definition))
    return file


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `condition` every 0.1 s; the monotonic time it held; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=timeout)
    return process.returncode, stderr


def state_counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        counts = dict(
            connection.execute(
                sa.text("SELECT status, count(*) FROM etl_events GROUP BY status")
            ).all()
        )
        counts["pending"] = connection.execute(
            sa.text("SELECT count(*) FROM etl_pending")
        ).scalar_one()
    engine.dispose()
    return counts


def holders(url: str) -> dict[tuple[str, int], str | None]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT store_id, shard, holder FROM etl_leases WHERE shard >= 0 "
                "AND expires_at > extract(epoch FROM clock_timestamp())"
            )
        ).all()
    engine.dispose()
    return {(store, shard): holder for store, shard, holder in rows}


def test_one_worker_alone_delivers_everything_once_moves_the_watermark_and_resends_nothing(
    tmp_path: Path,
    sandbox: Callable[..., SandboxProcess],
    pg_state: str,
) -> None:
    server = sandbox(rate_limit=None)
    file = leased_project(tmp_path, server, pg_state, rows=60, rate=200, incremental=True)
    report = tmp_path / "report.json"
    code, stderr = finish(spawn_run(file, "--report-json", str(report)))
    assert code == 0, stderr[-2000:]
    got = json.loads(report.read_text())
    assert (got["extracted"], got["delivered"], got["failed"]) == (60, 60, 0)
    # The round read everything and nothing failed: the watermark is the highest cursor.
    assert got["watermark"] == "2024-03-28T12:30:00Z"  # as the source spells it
    stats = server.stats(STORE)
    assert stats["count"] == 60 and set(stats["receipts"].values()) == {1}
    assert state_counts(pg_state) == {"delivered": 60, "pending": 0}
    code, stderr = finish(
        spawn_run(file, "--report-json", str(report), "--since", "2024-01-01T00:00:00Z")
    )
    assert code == 0, stderr[-2000:]
    got = json.loads(report.read_text())
    assert (got["extracted"], got["skipped_unchanged"], got["delivered"]) == (60, 60, 0)
    assert server.stats(STORE)["requests"] == 60
    code, stderr = finish(spawn_run(file, "--report-json", str(report)))  # from the watermark
    assert code == 0, stderr[-2000:]
    got = json.loads(report.read_text())
    # Nothing after the watermark: nothing read (SPEC §6, "greater than").
    assert (got["extracted"], got["skipped_unchanged"], got["delivered"]) == (0, 0, 0)


def test_four_workers_of_one_pipeline_hold_the_store_budget(
    tmp_path: Path,
    sandbox: Callable[..., SandboxProcess],
    pg_state: str,
) -> None:
    rate, rows = 20, 160
    server = sandbox(rate_limit=rate)
    file = leased_project(tmp_path, server, pg_state, rows=rows, rate=rate)
    results = [finish(process) for process in [spawn_run(file) for _ in range(4)]]
    assert [code for code, _ in results] == [0] * 4, [err[-800:] for _, err in results]
    stats = server.stats(STORE)
    assert stats["status_counts"] == {"200": rows}  # not one 429, nothing sent twice
    assert stats["count"] == rows and set(stats["receipts"].values()) == {1}
    times = sorted(stats["request_times"])
    # As in test_shared_budget: a sender descheduled while the others start costs one at most.
    assert max_in_window([t for t in times if t >= times[0] + 2.0]) <= rate
    assert max_in_window(times) <= rate + 1
    assert state_counts(pg_state) == {"delivered": rows, "pending": 0}


def test_a_killed_worker_costs_at_most_its_in_flight_requests_and_its_partitions_move(
    tmp_path: Path,
    sandbox: Callable[..., SandboxProcess],
    pg_state: str,
) -> None:
    rows = 240
    server = sandbox(rate_limit=None, latency_ms=100)
    file = leased_project(tmp_path, server, pg_state, rows=rows, rate=24)
    workers = [spawn_run(file) for _ in range(3)]
    victim = workers[1]
    tag = f":{victim.pid}:"
    wait_for(
        lambda: any(h and tag in h for h in holders(pg_state).values()),
        60,
        "the victim to hold a partition",
    )
    wait_for(lambda: server.stats(STORE)["count"] >= rows // 4, 60, "a quarter delivered")
    held = [p for p, h in holders(pg_state).items() if h and tag in h]
    victim.kill()
    killed_at = time.monotonic()
    victim.wait(10)
    if held:
        moved = wait_for(
            lambda: (
                all((h := holders(pg_state).get(p)) and tag not in h for p in held)
                or state_counts(pg_state)["pending"] == 0
            ),
            LEASE_S + 15,
            "the victim's partitions to be taken over",
        )
        print(f"taken over {moved - killed_at:.1f} s after the kill")
    results = [finish(w) for w in (workers[0], workers[2])]
    assert [code for code, _ in results] == [0, 0], [err[-800:] for _, err in results]
    stats = server.stats(STORE)
    assert stats["count"] == rows
    resent = sum(n - 1 for n in stats["receipts"].values())
    assert resent <= CONCURRENCY
    assert state_counts(pg_state) == {"delivered": rows, "pending": 0}


def test_a_worker_frozen_past_its_lease_sends_nothing_more_and_exits_3(
    tmp_path: Path,
    sandbox: Callable[..., SandboxProcess],
    pg_state: str,
) -> None:
    rows = 120
    server = sandbox(rate_limit=None, latency_ms=200)  # requests in flight when it stops
    file = leased_project(tmp_path, server, pg_state, rows=rows, rate=20)
    frozen, other = spawn_run(file), spawn_run(file)
    tag = f":{frozen.pid}:"
    wait_for(
        lambda: any(h and tag in h for h in holders(pg_state).values()),
        60,
        "the frozen one to hold a partition",
    )
    wait_for(lambda: server.stats(STORE)["count"] >= 10, 60, "some delivered")
    frozen.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        code, stderr = finish(other)  # takes over after expiry and finishes the round
        assert code == 0, stderr[-2000:]
        assert state_counts(pg_state) == {"delivered": rows, "pending": 0}
        time.sleep(max(0.0, 2 * LEASE_S - (time.monotonic() - stopped)))  # twice the lease
        before = server.stats(STORE)["requests"]
    finally:
        frozen.send_signal(signal.SIGCONT)
    code, stderr = finish(frozen, timeout=60)
    assert code == 3, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "its leases ran out" in errors[0], stderr[-2000:]
    assert "sends nothing more" in errors[0]
    assert server.stats(STORE)["requests"] == before  # not one request after waking
    assert server.stats(STORE)["count"] == rows
    assert state_counts(pg_state) == {"delivered": rows, "pending": 0}  # no late overwrite


def test_the_kubernetes_example_runs_the_same_leased_command_in_every_pod() -> None:
    job = yaml.safe_load(
        (Path(__file__).parents[1] / "examples/kubernetes/leased-workers.yaml").read_text()
    )
    spec = job["spec"]
    [container] = spec["template"]["spec"]["containers"]
    assert "completionMode" not in spec and spec["completions"] == spec["parallelism"] >= 2
    assert "etl run /pipelines/orders_shipped.yaml" in container["args"][0]
    assert "--partition" not in container["args"][0]


def test_two_workers_share_a_store_column_pipeline_each_event_sent_once(
    tmp_path: Path,
    sandbox: Callable[..., SandboxProcess],
    pg_state: str,
) -> None:
    from test_many_stores import STORES, Stores

    server = sandbox(rate_limit=None)
    stores = STORES
    project = Stores.allowed(tmp_path, server, stores, 20, rate_limit=40)
    definition = yaml.safe_load(project.file.read_text())
    definition.update(workers={"lease": LEASE_S, "shards": 2}, state=pg_state)
    project.file.write_text(yaml.safe_dump(definition))
    workers = [spawn_run(project.file) for _ in range(2)]
    results = [finish(worker) for worker in workers]
    assert [code for code, _ in results] == [0, 0], [err[-800:] for _, err in results]
    for store in stores:
        stats = server.stats(store)
        assert stats["count"] == 20 and set(stats["receipts"].values()) == {1}
    assert state_counts(pg_state) == {"delivered": 60, "pending": 0}


def test_a_killed_reader_is_replaced_and_the_re_read_sends_nothing_twice(
    tmp_path: Path,
    sandbox: Callable[..., SandboxProcess],
    pg_state: str,
) -> None:
    """The source is a PostgreSQL query that sleeps 1 s every 20 rows (chunks of 20), so
    the reader is killed mid-read; another worker takes the reader lease after expiry,
    reads again from the start, and diffing plus the queue keep every event single."""
    from fixtures_db import POSTGRES_URL

    rows = 120
    server = sandbox(rate_limit=None)
    file = leased_project(tmp_path, server, pg_state, rows=rows, rate=40)
    definition = yaml.safe_load(file.read_text())
    definition["source"] = {
        "type": "sql",
        "url": POSTGRES_URL,
        "chunk_size": 20,
        "query": (
            "SELECT 'r-' || i AS order_id, 'c-' || (i % 7) AS customer_id, "
            "'2024-03-01T12:30:00Z' AS shipped_at FROM generate_series(1, 120) AS i "
            "WHERE i % 20 <> 0 OR pg_sleep(1)::text = ''"
        ),
    }
    file.write_text(yaml.safe_dump(definition))
    workers = [spawn_run(file) for _ in range(3)]
    engine = sa.create_engine(pg_state)

    def reader() -> str | None:
        with engine.connect() as connection:
            return connection.execute(
                sa.text(
                    "SELECT holder FROM etl_leases WHERE shard = -1 "
                    "AND expires_at > extract(epoch FROM clock_timestamp())"
                )
            ).scalar()

    try:
        wait_for(
            lambda: (
                state_counts(pg_state)["pending"] + state_counts(pg_state).get("delivered", 0) >= 20
            ),
            60,
            "the first chunk enqueued",
        )
        holder = reader()
        assert holder is not None
        [victim] = [w for w in workers if f":{w.pid}:" in holder]
        victim.kill()
        victim.wait(10)
        wait_for(
            lambda: (h := reader()) is not None and h != holder,
            LEASE_S + 15,
            "another worker to take the reader lease",
        )
    finally:
        engine.dispose()
    results = [finish(w) for w in workers if w is not victim]
    assert [code for code, _ in results] == [0, 0], [err[-800:] for _, err in results]
    stats = server.stats(STORE)
    assert stats["count"] == rows
    assert sum(n - 1 for n in stats["receipts"].values()) <= CONCURRENCY
    assert state_counts(pg_state) == {"delivered": rows, "pending": 0}
