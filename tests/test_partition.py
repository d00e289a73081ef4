"""`etl run --partition K/N`: static partitions by the documented store hash (SPEC §11)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fleet_helpers import STORE, etl_env, orders_project

from etl.partition import Partition, bucket
from etl.sandbox.process import SandboxProcess


def etl_run(file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etl", "run", str(file), *args],
        env=etl_env(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )


def test_the_bucket_is_the_first_8_bytes_of_sha256_mod_n() -> None:
    # Fixed values: any change of the hash would silently move stores between partitions.
    assert [bucket(store, 4) for store in ("store-fleet", "s-1", "a", "d")] == [0, 2, 2, 1]
    digest = hashlib.sha256(b"shop-17").digest()
    assert bucket("shop-17", 1000) == int.from_bytes(digest[:8], "big") % 1000


def test_every_store_has_exactly_one_owner_among_n() -> None:
    stores = [f"shop-{i}" for i in range(200)]
    owners = [[k for k in range(7) if Partition(k, 7).owns(store)] for store in stores]
    assert all(len(found) == 1 for found in owners)
    assert {found[0] for found in owners} == set(range(7))  # and the 7 all get some


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("4/4", "K must be below N (0..3), not 4"),
        ("1/0", "N must be at least 1, not 0"),
        ("-1/3", "expected K/N (e.g. 0/4), not '-1/3'"),
        ("one/3", "expected K/N (e.g. 0/4), not 'one/3'"),
    ],
)
def test_a_malformed_partition_is_a_usage_error(tmp_path: Path, value: str, problem: str) -> None:
    file = orders_project(tmp_path, "parts", "http://127.0.0.1:9", "t", 3, ".etl/state.db")
    result = etl_run(file, "--partition", value)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f"Error: Invalid value for '--partition': {problem}"
    assert not (tmp_path / ".etl").exists()


def test_a_partition_that_does_not_own_the_store_reads_nothing_and_exits_0(tmp_path: Path) -> None:
    # Nothing listens at the base URL: a run that tried to send would fail (exit 1 or 3).
    file = orders_project(tmp_path, "parts", "http://127.0.0.1:9", "t", 3, ".etl/state.db")
    assert bucket(STORE, 4) == 0
    result = etl_run(file, "--partition", "3/4")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        f"parts: partition 3/4 does not own store {STORE!r} "
        "(its partition is 0/4); nothing to read\n"
    )
    assert not (tmp_path / ".etl").exists()


def test_the_owning_partition_delivers_everything(
    tmp_path: Path, sandbox: Callable[..., SandboxProcess]
) -> None:
    server = sandbox(rate_limit=None)
    file = orders_project(tmp_path, "parts", server.base_url, server.token, 12, ".etl/state.db")
    result = etl_run(file, "--partition", f"{bucket(STORE, 4)}/4")
    assert result.returncode == 0, result.stderr
    assert sorted(e["properties"]["order_id"] for e in server.events(STORE)) == sorted(
        f"parts-{i}" for i in range(12)
    )


def test_the_kubernetes_example_hands_each_pod_its_own_partition_of_n() -> None:
    import re

    import yaml

    job = yaml.safe_load(
        (Path(__file__).parents[1] / "examples/kubernetes/indexed-job.yaml").read_text()
    )
    spec = job["spec"]
    [container] = spec["template"]["spec"]["containers"]
    found = re.search(r'--partition "\$\{JOB_COMPLETION_INDEX\}/(\d+)"', container["args"][0])
    assert spec["completionMode"] == "Indexed" and found is not None
    assert int(found[1]) == spec["completions"]  # N of --partition is the number of pods
