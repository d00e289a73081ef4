"""Set-up shared by the fleet tests (shared budget, partitions, Dagster): pipeline folders
sending to one store, a PostgreSQL state in a schema of its own, a TCP forwarder that
plays a coordinator going down and coming back."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
import yaml
from fixtures_db import POSTGRES_URL

from etl.state import StateStore

STORE = "store-fleet"


def orders_project(
    root: Path, name: str, base_url: str, token: str, rows: int, state: str, **destination: Any
) -> Path:
    """`root/name.yaml` over `root/name.csv`: `rows` orders whose ids start with `name`."""
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "order_id": [f"{name}-{i}" for i in range(rows)],
            "customer_id": [f"c-{i % 7}" for i in range(rows)],
            "shipped_at": [f"2024-03-{1 + i % 28:02d}T12:30:00Z" for i in range(rows)],
        }
    ).to_csv(root / f"{name}.csv", index=False)
    file = root / f"{name}.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "source": {"type": "csv", "path": f"{name}.csv"},
                "event": {
                    "source": "fleet",
                    "event_name": "Order Shipped",
                    "occurred_at": "shipped_at",
                    "id": {"key": ["order_id"]},
                    "customer": {"external_id": "customer_id"},
                    "properties": {"order_id": "order_id"},
                },
                "destination": {
                    "store_id": "${YOTPO_STORE_ID}",
                    "token": token,
                    "base_url": base_url,
                    "timeout": 5,
                    "max_retries": 2,
                    **destination,
                },
                "state": state,
            }
        )
    )
    return file


def etl_env(store: str = STORE) -> dict[str, str]:
    """The environment of an `etl` subprocess: the store id, nothing from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOTPO_", "ETL_"))}
    return {**env, "YOTPO_STORE_ID": store}


def spawn_run(
    file: Path, *args: str, store: str = STORE, stderr: Any = subprocess.PIPE
) -> subprocess.Popen[str]:
    """`etl run FILE ARGS` as a separate process, output captured (stderr: or to a file)."""
    return subprocess.Popen(
        [sys.executable, "-m", "etl", "run", str(file), *args],
        env=etl_env(store),
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


@contextmanager
def postgres_state() -> Iterator[str]:
    """A PostgreSQL state URL whose tables live in a fresh schema, dropped afterwards.

    The state's tables are made here, once: workers started together on an empty schema
    race to create them (the state store does not yet survive that race).
    """
    schema = f"s_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    try:
        StateStore(url).close()
        yield url
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def free_port() -> int:
    """A loopback port nothing listens on (yet)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Forwarder:
    """Forwards 127.0.0.1:`port` to `target` once started: a coordinator that was down."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port, self.target = port, target
        self._server = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(self.target, timeout=5)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    source.settimeout(None)
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
