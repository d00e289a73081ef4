"""Writes `state_v1.db`: a state file made by real runs of the code of schema version 1.

Kept with the file it made so the upgrade test (tests/test_state_migration.py) says
what is inside: pipeline `orders_fixture` over `orders.csv` with an incremental cursor,
run through the CLI against the sandbox three times:

1. four orders delivered (o-1..o-4) with cursor 2024-05-01;
2. o-5 (cursor 05-02) answered 404 by a sandbox serving another path (recorded
   `rejected` then), which moved the watermark to 2024-05-02T00:00:00Z;
3. o-6 (cursor 05-03) answered 500 with max_retries 0 (recorded `failed`, its body kept).

Run from the repository root with the code of that version checked out:
`.venv/bin/python tests/data/make_state_v1.py`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from etl.sandbox.config import SandboxConfig
from etl.sandbox.process import start_sandbox

STORE = "store-fixture"
HERE = Path(__file__).parent


def orders(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": [f"o-{i}" for i in range(1, n + 1)],
            "customer_id": [f"c-{i}" for i in range(1, n + 1)],
            "shipped_at": [f"2024-03-0{i}T12:30:00Z" for i in range(1, n + 1)],
            "updated_at": [f"2024-05-0{max(i - 3, 1)}T00:00:00Z" for i in range(1, n + 1)],
        }
    )


def write_project(root: Path, rows: int, base_url: str, **destination: object) -> Path:
    """The fixture's pipeline file (state `state.db` beside it) over the first `rows` orders."""
    orders(rows).to_csv(root / "orders.csv", index=False)
    file = root / "pipe.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "name": "orders_fixture",
                "source": {
                    "type": "csv",
                    "path": "orders.csv",
                    "incremental": {"cursor": "updated_at"},
                },
                "event": {
                    "source": "shop",
                    "event_name": "order_shipped",
                    "occurred_at": "shipped_at",
                    "id": {"key": ["order_id"]},
                    "customer": {"external_id": "customer_id"},
                    "properties": {"order_id": "order_id"},
                },
                "destination": {
                    "store_id": STORE,
                    "token": "sandbox-token",
                    "base_url": base_url,
                    "rate_limit": 100,
                    "timeout": 5,
                    **destination,
                },
                "state": "state.db",
            }
        )
    )
    return file


def run(root: Path, rows: int, base_url: str, **destination: object) -> int:
    file = write_project(root, rows, base_url, **destination)
    command = [sys.executable, "-m", "etl", "run", str(file)]
    return subprocess.run(command, env=os.environ, capture_output=True, check=False).returncode


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        with start_sandbox(SandboxConfig(rate_limit=None)) as server:
            assert run(root, 4, server.base_url) == 0
        with start_sandbox(SandboxConfig(rate_limit=None, path="/elsewhere/{store_id}")) as server:
            assert run(root, 5, server.base_url) == 1
        with start_sandbox(SandboxConfig(rate_limit=None, fail_rate=1.0, seed=1)) as server:
            assert run(root, 6, server.base_url, max_retries=0) == 1
        shutil.copy(root / "state.db", HERE / "state_v1.db")


if __name__ == "__main__":
    main()
