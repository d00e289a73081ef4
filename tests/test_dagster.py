"""The Dagster asset (extra `[dagster]`): Dagster's own in-process execution on an ephemeral
instance, against the real sandbox process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
from fleet_helpers import STORE, orders_project

from etl.integrations.dagster import pipeline_asset
from etl.sandbox.process import SandboxProcess

ROWS = 15


@pytest.fixture(autouse=True)
def store_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOTPO_STORE_ID", STORE)


def materialise(
    asset: dg.AssetsDefinition, instance: dg.DagsterInstance, partition: str = STORE
) -> dg.ExecuteInProcessResult:
    return dg.materialize([asset], instance=instance, partition_key=partition, raise_on_error=False)


def metadata_of(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    [event] = result.asset_materializations_for_node(result.job_def.nodes[0].name)
    return {key: value.value for key, value in event.metadata.items()}


def test_one_partition_per_store_materialised_with_the_reports_counts(
    tmp_path: Path, sandbox: Callable[..., SandboxProcess]
) -> None:
    server = sandbox(rate_limit=None)
    file = orders_project(
        tmp_path, "dag_orders", server.base_url, server.token, ROWS, ".etl/state.db"
    )
    asset = pipeline_asset(file)
    assert asset.key == dg.AssetKey("dag_orders")
    assert asset.partitions_def.get_partition_keys() == [STORE]
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialise(asset, instance)
        assert result.success
        metadata = metadata_of(result)
    assert {
        k: metadata[k] for k in ("exit_code", "extracted", "delivered", "failed", "http_429")
    } == {"exit_code": 0, "extracted": ROWS, "delivered": ROWS, "failed": 0, "http_429": 0}
    assert sorted(e["properties"]["order_id"] for e in server.events(STORE)) == sorted(
        f"dag_orders-{i}" for i in range(ROWS)
    )


def test_a_second_materialisation_of_the_partition_sends_nothing_again(
    tmp_path: Path, sandbox: Callable[..., SandboxProcess]
) -> None:
    # Run one after the other: two at the same time need the one-run-at-a-time state lock.
    server = sandbox(rate_limit=None)
    file = orders_project(
        tmp_path, "dag_twice", server.base_url, server.token, ROWS, ".etl/state.db"
    )
    asset = pipeline_asset(file)
    with dg.DagsterInstance.ephemeral() as instance:
        first, second = materialise(asset, instance), materialise(asset, instance)
        assert first.success and second.success
        counts = [metadata_of(r) for r in (first, second)]
    assert [(c["delivered"], c["skipped_unchanged"]) for c in counts] == [(ROWS, 0), (0, ROWS)]
    assert set(server.stats(STORE)["receipts"].values()) == {1}  # nothing sent twice
    assert server.stats(STORE)["count"] == ROWS


def test_an_aborted_run_is_a_dagster_failure_with_the_summary(
    tmp_path: Path, sandbox: Callable[..., SandboxProcess]
) -> None:
    server = sandbox(rate_limit=None)
    file = orders_project(
        tmp_path, "dag_refused", server.base_url, "not-the-token", ROWS, ".etl/state.db"
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialise(pipeline_asset(file), instance)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    error = failure.step_failure_data
    assert error.user_failure_data is not None
    description = error.user_failure_data.description
    assert description.startswith(f"the API refused the token for store {STORE!r} (HTTP 401)")
    assert "dag_refused: run aborted" in description  # the summary table's title
    assert "not-the-token" not in description
    assert error.user_failure_data.metadata["exit_code"].value == 3
    assert server.stats(STORE)["count"] == 0


def test_a_partition_that_is_not_a_store_of_the_pipeline_fails(
    tmp_path: Path, sandbox: Callable[..., SandboxProcess]
) -> None:
    server = sandbox(rate_limit=None)
    file = orders_project(
        tmp_path, "dag_other", server.base_url, server.token, ROWS, ".etl/state.db"
    )
    asset = pipeline_asset(file, stores=[STORE, "another-store"])
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialise(asset, instance, "another-store")
    assert not result.success
    assert server.stats(STORE)["count"] == 0


def test_two_materialisations_of_one_partition_at_once_deliver_once(
    tmp_path: Path, sandbox: Callable[..., SandboxProcess]
) -> None:
    """The SQLite state's run lock refuses the second (exit 3): one delivers, nothing twice."""
    import threading

    server = sandbox(rate_limit=10)  # 15 events: 1.5 s, so the two surely overlap
    file = orders_project(
        tmp_path, "dag_race", server.base_url, server.token, ROWS, ".etl/state.db", rate_limit=10
    )
    asset = pipeline_asset(file)
    start = threading.Barrier(2, timeout=30)
    results: list[dg.ExecuteInProcessResult] = []

    def materialise_when_both_ready() -> None:
        with dg.DagsterInstance.ephemeral() as instance:
            start.wait()
            results.append(materialise(asset, instance))

    threads = [threading.Thread(target=materialise_when_both_ready) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(r.success for r in results) == [False, True]
    [won] = [r for r in results if r.success]
    [lost] = [r for r in results if not r.success]
    assert metadata_of(won)["delivered"] == ROWS
    [failure] = [e for e in lost.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    refusal = failure.step_failure_data.user_failure_data
    assert refusal.description.startswith("another run of this pipeline holds the state")
    assert refusal.metadata["exit_code"].value == 3
    assert server.stats(STORE)["count"] == ROWS
    assert set(server.stats(STORE)["receipts"].values()) == {1}  # nothing sent twice


def test_a_store_column_pipeline_has_a_partition_per_store_each_sending_only_its_rows(
    tmp_path: Path, sandbox: Callable[..., SandboxProcess]
) -> None:
    """Partitions from the credentials file; two materialisations of one store at the same
    time: one is refused by that store's run lock, no event goes twice; another store's
    materialisation runs alongside."""
    import threading

    from test_many_stores import STORES, Stores

    server = sandbox(rate_limit=None)
    stores = STORES
    project = Stores.allowed(tmp_path, server, stores, 4, rate_limit=2)  # 4 a store: 1.5 s
    asset = pipeline_asset(project.file)
    assert asset.partitions_def.get_partition_keys() == stores
    start = threading.Barrier(3, timeout=30)
    results: dict[str, list[dg.ExecuteInProcessResult]] = {"shop-a": [], "shop-b": []}

    def materialise_when_all_ready(store: str) -> None:
        with dg.DagsterInstance.ephemeral() as instance:
            start.wait()
            results[store].append(materialise(asset, instance, store))

    threads = [
        threading.Thread(target=materialise_when_all_ready, args=(store,))
        for store in ("shop-a", "shop-a", "shop-b")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(r.success for r in results["shop-a"]) == [False, True]
    [won] = [r for r in results["shop-a"] if r.success]
    assert (metadata_of(won)["extracted"], metadata_of(won)["delivered"]) == (4, 4)
    [other] = results["shop-b"]
    assert other.success and metadata_of(other)["delivered"] == 4
    for store, count in (("shop-a", 4), ("shop-b", 4), ("shop-c", 0)):
        stats = server.stats(store)
        assert stats["count"] == count and set(stats["receipts"].values()) <= {1}
