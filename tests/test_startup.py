"""What `etl` imports before it knows the command: only what every command needs.

SQLAlchemy, httpx, Starlette and uvicorn were a quarter of the start-up of each
command; they load where they are used (state, real runs, the sandbox).
"""

from __future__ import annotations

import subprocess
import sys

DEFERRED = ("sqlalchemy", "httpx", "starlette", "uvicorn")


def test_the_command_line_starts_without_the_deferred_libraries() -> None:
    code = (
        "import sys, etl.cli, etl.pipeline; "
        f"print(sorted(m for m in {DEFERRED!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
