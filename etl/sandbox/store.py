"""Where the sandbox keeps the events it accepted: in memory, or in a SQLite file.

Both stores upsert by (store id, event id), the way the API overwrites an event
sent again with the same id. The SQLite store lets a demo show, after the
sandbox has stopped, exactly what arrived (`sqlite3 FILE 'select * from events'`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson


class EventStore:
    """Events per store, upserted by id; the last body sent for an id wins."""

    def upsert(self, store_id: str, event_id: str, body: dict[str, Any]) -> None:
        """Keep `body` as the event `event_id` of `store_id`, replacing an earlier one."""
        raise NotImplementedError

    def events(self, store_id: str) -> list[dict[str, Any]]:
        """The bodies held for `store_id`, in the order their ids first arrived."""
        raise NotImplementedError

    def count(self, store_id: str) -> int:
        """How many distinct event ids `store_id` holds."""
        raise NotImplementedError

    def clear(self) -> None:
        """Forget every event of every store."""
        raise NotImplementedError


class MemoryStore(EventStore):
    """The default: gone when the sandbox stops."""

    def __init__(self) -> None:
        self._stores: dict[str, dict[str, dict[str, Any]]] = {}

    def upsert(self, store_id: str, event_id: str, body: dict[str, Any]) -> None:
        self._stores.setdefault(store_id, {})[event_id] = body

    def events(self, store_id: str) -> list[dict[str, Any]]:
        return list(self._stores.get(store_id, {}).values())

    def count(self, store_id: str) -> int:
        return len(self._stores.get(store_id, {}))

    def clear(self) -> None:
        self._stores.clear()


class SqliteStore(EventStore):
    """Events in a SQLite file, kept across restarts of the sandbox.

    WAL with synchronous=NORMAL: a commit per request costs no fsync, and a crash
    of the sandbox (not of the machine) loses nothing that was answered 200.
    """

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS events ("
            " store_id TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,"
            " PRIMARY KEY (store_id, id))"
        )

    def upsert(self, store_id: str, event_id: str, body: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO events (store_id, id, body) VALUES (?, ?, ?)"
            " ON CONFLICT (store_id, id) DO UPDATE SET body = excluded.body",
            (store_id, event_id, orjson.dumps(body).decode()),
        )

    def events(self, store_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT body FROM events WHERE store_id = ? ORDER BY rowid", (store_id,)
        )
        return [orjson.loads(body) for (body,) in rows]

    def count(self, store_id: str) -> int:
        (count,) = self._db.execute(
            "SELECT count(*) FROM events WHERE store_id = ?", (store_id,)
        ).fetchone()
        return int(count)

    def clear(self) -> None:
        self._db.execute("DELETE FROM events")


def open_store(path: Path | None) -> EventStore:
    """A SQLite store at `path`, or a memory store when `path` is None."""
    return MemoryStore() if path is None else SqliteStore(path)
