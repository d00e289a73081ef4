"""What the CLI does with an error nobody planned for: one line, a masked report file, exit 3.

A scheduler reads exit 1 as "completed with rejects", so a crash must never exit 1; and
a traceback on a terminal helps nobody but the maintainer while it may show a token or
a customer's email. So the traceback goes, masked, to `.etl/crash/<time>-<pid>.txt` in
the working directory (or the temp folder when that is not writable), and the user gets
one line naming that file. The machine's state (a full disk, a read-only folder, an
unreachable state database) is not a crash: it is one line saying what and where.
"""

from __future__ import annotations

import os
import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path

from etl.redact import mask_free_text

#: The run's environment failed, or an internal error: SPEC §2's "aborted".
EXIT_CODE = 3


def describe(exc: BaseException) -> str:
    """The one line for the user; writes the masked traceback file when it is a crash."""
    if isinstance(exc, OSError):  # a full disk, a read-only folder, a missing mount
        where = f": {exc.filename}" if exc.filename else ""
        return mask_free_text(f"{exc.strerror or exc}{where}")
    if type(exc).__module__.startswith("sqlalchemy"):  # not imported here: it may not be loaded
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return mask_free_text(f"state database: {cause[0] if cause else type(exc).__name__}")
    report = write_report(exc)
    return (
        f"internal error ({type(exc).__name__}); the details (masked) are in {report}; "
        "please attach that file to a bug report"
    )


def write_report(exc: BaseException, folder: Path | None = None) -> Path:
    """Write the masked traceback of `exc`; return the file's path."""
    text = mask_free_text("".join(traceback.format_exception(exc)))
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}.txt"
    for base in ([folder] if folder else []) + [
        Path.cwd() / ".etl" / "crash",
        Path(tempfile.gettempdir()) / "etl-crash",
    ]:
        try:
            base.mkdir(parents=True, exist_ok=True)
            path = base / name
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return Path("(not written: no writable folder)")
