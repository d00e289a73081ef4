"""What `etl` imports: only what the command at hand needs.

SQLAlchemy, httpx, Starlette and uvicorn were a quarter of the start-up of every
command; they load where they are used (state, real runs, the sandbox).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from specs import signups_project

DEFERRED = ("sqlalchemy", "httpx", "starlette", "uvicorn")


def loaded_after(code: str) -> str:
    """What `code` prints, then which deferred libraries it loaded, in a fresh interpreter."""
    script = f"{code}\nimport sys\nprint(sorted(m for m in {DEFERRED!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "YOTPO_TOKEN": "token"},
    )
    return done.stdout.strip()


def test_the_command_line_starts_without_the_deferred_libraries() -> None:
    assert loaded_after("import etl.cli, etl.pipeline") == "[]"


def test_dry_run_and_validate_without_state_load_none_of_them(tmp_path: Path) -> None:
    file = signups_project(
        tmp_path,
        [
            {"email": "ann@shop.io", "phone": "", "signed_up_at": "2024-03-01T10:00:00Z"},
            {"email": "bob@shop.io", "phone": "", "signed_up_at": "2024-03-02"},
        ],
    )
    code = (
        "import etl\n"
        f"pipeline = etl.load_pipeline({str(file)!r})\n"
        "print(etl.run(pipeline, etl.RunOptions(dry_run=True, progress=False)).written)\n"
        "print(etl.validate_pipeline(pipeline)[0].valid)"
    )
    assert loaded_after(code).splitlines() == ["2", "2", "[]"]
    assert not (tmp_path / ".etl" / "state.db").exists()
