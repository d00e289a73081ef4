"""One run of a pipeline at a time on a SQLite state (SPEC §6), one opener at a time.

An exclusive `flock` on a small file beside the database. The kernel releases it when
the holder's process ends in any way (`kill -9` included), so a dead holder never blocks
the next run; the file only records who holds it (pid, host, start) for the refusal.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from etl.errors import StateError


class RunLock:
    """A held lock; `release` (or the process's end) lets the next run in."""

    def __init__(self, path: Path, descriptor: int) -> None:
        self.path = path
        self._descriptor: int | None = descriptor

    @classmethod
    def acquire(cls, path: Path) -> RunLock:
        """Take the lock at once or raise `StateError` naming the holder."""
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(descriptor)
            os.close(descriptor)
            raise StateError(
                f"another run of this pipeline holds the state ({holder}; lock {path}); "
                "wait for it to finish or stop it"
            ) from None
        except BaseException:
            os.close(descriptor)
            raise
        written = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(written).encode(), 0)
        return cls(path, descriptor)

    def release(self) -> None:
        """Let the next run in (closing the descriptor drops the lock)."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


def _holder(descriptor: int) -> str:
    """Who holds the lock, as the holder wrote it."""
    try:
        holder = json.loads(os.pread(descriptor, 4096, 0) or b"{}")
    except ValueError:
        holder = {}
    if not holder:
        return "it is starting"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started_at')}"


@contextmanager
def opening(path: Path) -> Iterator[None]:
    """Wait for, then hold, the right to open (create, upgrade) the SQLite file at `path`.

    SQLite's busy timeout does not cover every race of a fresh file: two connections
    switching it to WAL at once can deadlock, and SQLite then fails one of them at once
    with "database is locked" instead of waiting. Openers queue here instead.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path.with_name(f"{path.name}.open.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
