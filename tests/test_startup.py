"""What `etl` imports: only what the command at hand needs.

SQLAlchemy, httpx, Starlette and uvicorn were a quarter of the start-up of every
command; they load where they are used (state, real runs, the sandbox).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

DEFERRED = ("sqlalchemy", "httpx", "starlette", "uvicorn")


def loaded_after(code: str) -> str:
    """What `code` prints, then which deferred libraries it loaded, in a fresh interpreter."""
    script = f"{code}\nimport sys\nprint(sorted(m for m in {DEFERRED!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_the_command_line_starts_without_the_deferred_libraries() -> None:
    assert loaded_after("import etl.cli, etl.pipeline") == "[]"


def test_dry_run_and_validate_without_state_load_none_of_them(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(
        "order_id,customer_id,shipped_at\no-1,c-1,2024-03-01T12:30:00Z\no-2,c-2,2024-03-02\n"
    )
    file = tmp_path / "pipe.yaml"
    file.write_text(yaml.safe_dump({
        "name": "startup",
        "source": {"type": "csv", "path": "orders.csv"},
        "event": {
            "source": "shop",
            "event_name": "order_shipped",
            "occurred_at": "shipped_at",
            "id": {"key": ["order_id"]},
            "customer": {"external_id": "customer_id"},
        },
        "destination": {"store_id": "store", "token": "t"},
    }))
    code = (
        "import etl\n"
        f"pipeline = etl.load_pipeline({str(file)!r})\n"
        "print(etl.run(pipeline, etl.RunOptions(dry_run=True, progress=False)).written)\n"
        "print(etl.validate_pipeline(pipeline)[0].valid)"
    )
    assert loaded_after(code).splitlines() == ["2", "2", "[]"]
    assert not (tmp_path / ".etl" / "state.db").exists()
