"""The machine's state is exit 3 and one line (SPEC §2): a full disk at start or mid-run,
a read-only state folder (for `etl run` and `etl status`). Real small filesystems: a
size-limited tmpfs mounted for the test (needs root; skipped where mounting is refused)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_run_end_to_end import STORE, Project, csv_source, orders
from test_state_cli import one_error_line

FULL = "database or disk is full (free some space, then rerun to resume)"


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """`tmpfs("1m")` mounts a filesystem of that size; unmounted at teardown."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"fs{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """Take all the free space of `folder`'s filesystem but `leave` bytes."""
    stats = os.statvfs(folder)
    filler = folder / "filler"
    filler.write_bytes(b"\0" * max(stats.f_bavail * stats.f_frsize - leave, 0))
    return filler


def test_a_disk_full_mid_run_aborts_with_its_summary_and_records_the_run(tmpfs, sandbox) -> None:
    root = tmpfs("1m")
    server = sandbox(rate_limit=None)
    proj = Project(root, server.base_url, server.token, csv_source(root, orders(4000)))
    filler = fill(root, leave=400_000)
    result = proj.run()
    assert result.returncode == 3, result.stderr
    state = root / ".etl" / "state.db"
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"error: state store {state}: cannot write: {FULL}"
    assert "run aborted" in result.stderr and "Traceback" not in result.stderr
    assert 0 < server.stats(STORE)["count"] < 4000

    filler.unlink()
    subprocess.run(["mount", "-o", "remount,size=32m", str(root)], check=True)  # room made
    with sqlite3.connect(state) as connection:
        runs = connection.execute("SELECT exit_code, ended_at IS NOT NULL FROM etl_runs").fetchall()
    assert runs == [(3, 1)]  # aborted, not "running"
    assert proj.run().returncode == 0
    stats = server.stats(STORE)
    assert stats["count"] == 4000
    assert sum(stats["receipts"].values()) - 4000 <= 8  # at most the requests in flight


def test_a_disk_full_at_start_is_one_line_and_exit_3(tmpfs) -> None:
    root = tmpfs("512k")
    proj = Project(root, "http://127.0.0.1:9", "t", csv_source(root, orders(3)))
    fill(root, leave=0)
    result = proj.run()
    assert result.returncode == 3, result.stderr
    state = root / ".etl" / "state.db"
    line = one_error_line(result.stderr)
    assert line.startswith(f"error: state store {state}: cannot open: "), line
    assert "space" in line or "full" in line, line


def test_a_read_only_state_folder_is_one_line_and_exit_3_for_run_and_status(tmpfs, sandbox) -> None:
    root = tmpfs("4m")
    server = sandbox(rate_limit=None)
    proj = Project(root, server.base_url, server.token, csv_source(root, orders(3)))
    assert proj.run().returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
    state = root / ".etl" / "state.db"
    for command in ("run", "status"):
        result = proj.etl(command, str(proj.file))
        assert result.returncode == 3, result.stderr
        line = one_error_line(result.stderr)
        assert line.startswith(f"error: state store {state}: cannot "), line
        assert line.endswith("(the state folder must be writable)"), line
