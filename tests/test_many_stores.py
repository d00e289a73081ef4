"""Many stores from one definition (SPEC §10): the real CLI against the real sandbox process."""

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

import pandas as pd
import pytest
import yaml

from etl.transform import event_id

STORES = ["shop-a", "shop-b", "shop-c"]


def rows(stores: list[str], per_store: int, *, sort_by_store: bool = True) -> pd.DataFrame:
    """`per_store` orders for each store; grouped by store (the common export) or interleaved."""
    records = [
        {
            "shop_id": store,
            "order_id": f"{store}-o{i}",
            "customer_id": f"c-{i % 5}",
            "shipped_at": f"2024-03-{1 + i % 28:02d}T12:30:00Z",
            "updated_at": 100 + i,
        }
        for store in stores
        for i in range(per_store)
    ]
    frame = pd.DataFrame(records)
    if not sort_by_store:
        frame = frame.sort_values("order_id", key=lambda s: s.str.rsplit("o", n=1).str[-1])
    return frame


class Stores:
    """A pipeline folder loading many stores through the CLI."""

    def __init__(
        self, root: Path, base_url: str, source: dict[str, Any], **destination: Any
    ) -> None:
        self.root, self.file = root, root / "pipe.yaml"
        self.base_url = base_url
        definition = {
            "name": "many_stores",
            "source": source,
            "event": {
                "source": "shopify_backfill",
                "event_name": "order_shipped",
                "occurred_at": "shipped_at",
                "id": {"key": ["order_id"]},
                "customer": {"external_id": "customer_id"},
                "properties": {"order_id": "order_id"},
            },
            "destination": {
                "store_id": {"column": "shop_id"},
                "base_url": base_url,
                "rate_limit": 1000,
                "concurrency": 4,
                "timeout": 5,
                "max_retries": 1,
                **destination,
            },
        }
        self.file.write_text(yaml.safe_dump(definition))

    @classmethod
    def allowed(
        cls,
        root: Path,
        server: Any,
        stores: list[str],
        per_store: int,
        chunk_size: int = 8,
        **destination: Any,
    ) -> Stores:
        """`per_store` orders of each store in one CSV, every store in the credentials file
        with the sandbox's token."""
        source = csv(root, rows(stores, per_store), chunk_size)
        project = cls(root, server.base_url, source, credentials="stores.yaml", **destination)
        project.credentials({store: server.token for store in stores})
        return project

    def credentials(self, tokens: dict[str, str]) -> None:
        (self.root / "stores.yaml").write_text(
            yaml.safe_dump({store: {"token": token} for store, token in tokens.items()})
        )

    def etl(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "etl", *args],
            check=False,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=120,
            cwd="/",
        )

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.etl(
            "run", str(self.file), "--report-json", str(self.root / "r.json"), *args, env=env
        )

    def report(self) -> dict[str, Any]:
        return json.loads((self.root / "r.json").read_text())


def csv(root: Path, frame: pd.DataFrame, chunk_size: int = 8, **extra: Any) -> dict[str, Any]:
    frame.to_csv(root / "orders.csv", index=False)
    return {"type": "csv", "path": "orders.csv", "chunk_size": chunk_size, **extra}


def watermark(project: Stores) -> Any:
    status = project.etl("status", str(project.file), "--json")
    assert status.returncode == 0, status.stderr
    marks = {d["store_id"]: d["watermark"] for d in json.loads(status.stdout)["destinations"]}
    return marks.get("*")


def expected_ids(store: str, per_store: int) -> set[str]:
    return {
        event_id(store, "shopify_backfill", "order_shipped", [f"{store}-o{i}"])
        for i in range(per_store)
    }


@pytest.mark.parametrize("count", [2, 3])
def test_each_store_gets_its_own_rows_from_one_csv(tmp_path: Path, sandbox, count: int) -> None:
    server = sandbox(rate_limit=None)
    stores = STORES[:count]
    project = Stores.allowed(tmp_path, server, stores, 10)
    result = project.run()
    assert result.returncode == 0, result.stderr
    for store in stores:  # the ids hash each row's own store, as a constant store id would
        assert {event["id"] for event in server.events(store)} == expected_ids(store, 10)
        assert all(e["properties"]["order_id"].startswith(store) for e in server.events(store))
    report = project.report()
    assert report["delivered"] == 10 * count
    assert {s: f["delivered"] for s, f in report["stores"].items()} == {s: 10 for s in stores}
    assert server.token not in result.stderr + json.dumps(report)


def test_each_store_gets_its_own_rows_from_one_sql_source(tmp_path: Path, sandbox) -> None:
    server = sandbox(rate_limit=None)
    with sqlite3.connect(tmp_path / "shop.db") as connection:
        rows(STORES, 6).to_sql("orders", connection, index=False)
    source = {
        "type": "sql",
        "url": "sqlite:///shop.db",
        "query": "SELECT * FROM orders",
        "chunk_size": 5,
    }
    project = Stores(tmp_path, server.base_url, source, token_file=str(tmp_path / "s/{store_id}"))
    (tmp_path / "s").mkdir()
    for store in STORES:  # the secret-mount convention: a trailing newline is ignored
        (tmp_path / "s" / store).write_text(server.token + "\n")
    result = project.run()
    assert result.returncode == 0, result.stderr
    for store in STORES:
        assert {event["id"] for event in server.events(store)} == expected_ids(store, 6)


def test_a_refused_token_aborts_that_store_alone(tmp_path: Path, sandbox) -> None:
    server = sandbox(rate_limit=None)
    source = csv(tmp_path, rows(STORES, 12), incremental={"cursor": "updated_at"})
    project = Stores(tmp_path, server.base_url, source, credentials="stores.yaml")
    project.credentials({"shop-a": server.token, "shop-b": "wrong-token-b", "shop-c": server.token})
    result = project.run()
    assert result.returncode == 3, result.stderr
    assert len(server.events("shop-a")) == 12 and len(server.events("shop-c")) == 12
    assert server.events("shop-b") == []
    report = project.report()
    assert report["outcome"] == "aborted"
    assert "1 of 3 stores aborted (shop-b: the API refused the token" in report["error"]
    assert report["stores"]["shop-b"]["aborted"].startswith("the API refused the token")
    assert report["stores"]["shop-a"]["aborted"] is None
    assert "wrong-token-b" not in result.stderr + json.dumps(report)
    assert watermark(project) is None  # shop-b's rows are unsent: the window is read again
    # Fixed: the rerun sends shop-b's events and skips what the others already have.
    project.credentials({store: server.token for store in STORES})
    again = project.run()
    assert again.returncode == 0, again.stderr
    assert {e["id"] for e in server.events("shop-b")} == expected_ids("shop-b", 12)
    assert project.report()["skipped_unchanged"] == 24
    assert watermark(project) == 111


def test_rows_of_unknown_or_malformed_stores_are_rejected_under_rule_store(
    tmp_path: Path, sandbox
) -> None:
    server = sandbox(rate_limit=None)
    frame = pd.concat(
        [
            rows(["shop-a", "shop-x"], 3),
            pd.DataFrame(
                [
                    {
                        "shop_id": "../admin",
                        "order_id": "evil",
                        "customer_id": "c",
                        "shipped_at": "2024-03-01T00:00:00Z",
                    }
                ]
            ),
        ]
    )
    project = Stores(tmp_path, server.base_url, csv(tmp_path, frame), credentials="stores.yaml")
    project.credentials({"shop-a": server.token})
    result = project.run()
    assert result.returncode == 1, result.stderr
    report = project.report()
    assert report["rejected_by_rule"] == {"store": 4}
    assert report["delivered"] == 3
    quarantine = pd.read_csv(report["quarantine_file"])
    reasons = dict(zip(quarantine["order_id"], quarantine["reject_reason"], strict=True))
    assert reasons["shop-x-o0"] == "store 'shop-x' is not in destination.credentials"
    assert reasons["evil"].startswith("'../admin' is not one URL path segment")
    assert server.stats("shop-x")["requests"] == 0


def test_a_bad_credentials_entry_is_one_line_naming_file_and_key(tmp_path: Path, sandbox) -> None:
    server = sandbox(rate_limit=None)
    project = Stores(
        tmp_path, server.base_url, csv(tmp_path, rows(STORES, 2)), credentials="stores.yaml"
    )
    (tmp_path / "stores.yaml").write_text(
        "shop-a: {token: 'tok en'}\nshop-b: {token: '${NOPE_VAR}'}\n"
    )
    result = project.run()
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert any(
        f"{tmp_path / 'stores.yaml'}: shop-a.token: contains whitespace" in line for line in lines
    )
    assert any("shop-b.token" in line and "NOPE_VAR" in line for line in lines)
    assert "Traceback" not in result.stderr
    assert "tok en" not in result.stderr


def test_a_source_sorted_by_store_feeds_every_store_at_once(tmp_path: Path, sandbox) -> None:
    """Sorted by store, 40 rows each at 10 req/s per store: every store's first request
    arrives before the first store's last one (no store waits for another's rows)."""
    server = sandbox(rate_limit=None)
    project = Stores.allowed(tmp_path, server, STORES, 40, chunk_size=10, rate_limit=10)
    result = project.run()
    assert result.returncode == 0, result.stderr
    times = {store: server.stats(store)["request_times"] for store in STORES}
    assert all(len(t) == 40 for t in times.values())
    first_done = min(max(t) for t in times.values())
    assert all(min(t) < first_done for t in times.values())
    assert project.report()["stores"]["shop-c"]["spilled"] > 0  # the reader ran ahead, to disk


def test_status_shows_each_store_and_the_totals(tmp_path: Path, sandbox) -> None:
    server = sandbox(rate_limit=None)
    project = Stores(
        tmp_path, server.base_url, csv(tmp_path, rows(STORES, 4)), credentials="stores.yaml"
    )
    project.credentials({"shop-a": server.token, "shop-b": server.token, "shop-c": "bad-token-c"})
    assert project.run().returncode == 3
    status = project.etl("status", str(project.file), "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    per_store = {d["store_id"]: d["totals"] for d in data["destinations"] if d["store_id"] != "*"}
    assert per_store == {"shop-a": {"delivered": 4}, "shop-b": {"delivered": 4}}
    assert data["totals"] == {"delivered": 8}
    text = project.etl("status", str(project.file))
    assert "shop-a" in text.stdout and "shop-b" in text.stdout


def test_kill_9_mid_run_loses_nothing_and_resends_at_most_the_in_flight(
    tmp_path: Path, sandbox
) -> None:
    server = sandbox(rate_limit=None, latency_ms=20)
    stores = [f"shop-{i}" for i in range(6)]
    project = Stores.allowed(
        tmp_path, server, stores, 40, chunk_size=20, rate_limit=20, concurrency=2
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "etl", "run", str(project.file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/",
    )
    deadline = time.monotonic() + 60
    while sum(server.stats(s)["count"] for s in stores) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    before = {s: server.stats(s)["requests"] for s in stores}
    assert 0 < sum(before.values()) < 240
    result = project.run()
    assert result.returncode == 0, result.stderr
    for store in stores:
        assert {e["id"] for e in server.events(store)} == expected_ids(store, 40)
        receipts = server.stats(store)["receipts"]
        resent = sum(n - 1 for n in receipts.values())
        assert resent <= 2, (store, resent)  # at most its concurrency was in flight


def test_a_store_column_of_integers_hashes_like_the_constant_store(tmp_path: Path) -> None:
    """Ids hash each row's store as text: column 1001 gives the ids of `store_id: "1001"`."""
    frame = rows(["1001", "1002"], 3)
    frame["shop_id"] = frame["shop_id"].astype(int)
    project = Stores(tmp_path, "http://127.0.0.1:9", csv(tmp_path, frame))
    result = project.etl(
        "run", str(project.file), "--dry-run", "--output", str(tmp_path / "o.jsonl")
    )
    assert result.returncode == 0, result.stderr
    ids = {json.loads(line)["id"] for line in (tmp_path / "o.jsonl").read_text().splitlines()}
    assert ids == {
        event_id(store, "shopify_backfill", "order_shipped", [f"{store}-o{i}"])
        for store in ("1001", "1002")
        for i in range(3)
    }


def test_a_single_store_state_carries_over_to_the_store_column(tmp_path: Path, sandbox) -> None:
    """A pipeline that loaded shop-a with a constant store id, then switched to the column:
    shop-a's events are the same ids in the same state rows, so nothing is sent twice."""
    server = sandbox(rate_limit=None)
    source = csv(tmp_path, rows(["shop-a"], 5))
    single = Stores(tmp_path, server.base_url, source, store_id="shop-a", token=server.token)
    assert single.run().returncode == 0
    frame = rows(["shop-a", "shop-b"], 5)
    project = Stores(tmp_path, server.base_url, csv(tmp_path, frame), credentials="stores.yaml")
    project.credentials({"shop-a": server.token, "shop-b": server.token})
    result = project.run()
    assert result.returncode == 0, result.stderr
    report = project.report()
    assert (report["skipped_unchanged"], report["delivered"]) == (5, 5)
    assert server.stats("shop-a")["requests"] == 5 and len(server.events("shop-b")) == 5


def test_partitions_of_a_store_column_pipeline_each_send_their_stores_at_once(
    tmp_path: Path, sandbox
) -> None:
    """`--partition K/N` keeps the rows whose store hashes to K; the N copies run together on
    one SQLite state (a run lock, runs and a watermark per partition) and each row goes once."""
    from etl.partition import bucket

    server = sandbox(rate_limit=None)
    stores = [f"shop-{i}" for i in range(8)]
    source = csv(tmp_path, rows(stores, 3), incremental={"cursor": "updated_at"})
    project = Stores(tmp_path, server.base_url, source, credentials="stores.yaml")
    project.credentials({store: server.token for store in stores})
    copies = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "etl",
                "run",
                str(project.file),
                "--partition",
                f"{k}/2",
                "--report-json",
                str(tmp_path / f"r{k}.json"),
            ],
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd="/",
        )
        for k in range(2)
    ]
    errors = [copy.communicate(timeout=120)[1] for copy in copies]
    assert [copy.returncode for copy in copies] == [0, 0], errors
    mine = [sorted(s for s in stores if bucket(s, 2) == k) for k in range(2)]
    assert all(mine)  # both partitions own some of the eight stores
    for k in range(2):
        report = json.loads((tmp_path / f"r{k}.json").read_text())
        assert (report["extracted"], report["delivered"]) == (3 * len(mine[k]), 3 * len(mine[k]))
    for store in stores:
        assert server.stats(store)["requests"] == 3 and len(server.events(store)) == 3
    status = project.etl("status", str(project.file), "--json")
    marks = {d["store_id"]: d["watermark"] for d in json.loads(status.stdout)["destinations"]}
    assert (marks["*0/2"], marks["*1/2"]) == (102, 102)
