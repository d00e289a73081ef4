"""The machine's state as one line (SPEC §2, exit 3): a state store that cannot be opened,
read or written — unreachable server, read-only folder, full disk — names what and where,
never with a traceback, never with a password or a bound value (bodies carry PII)."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from etl.errors import StateError


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite state store; None for a server database or `:memory:`."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def describe_store(url: str) -> str:
    """Where the store is, fit to print: the SQLite file, or the URL without its password."""
    try:
        path = sqlite_path(url)
        return str(path) if path else sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(an unreadable URL)"


@contextmanager
def state_errors(url: str, doing: str) -> Iterator[None]:
    """Turn database and file-system errors into `StateError("state store X: cannot ...")`."""
    try:
        yield
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        where = describe_store(url)
        raise StateError(f"state store {where}: cannot {doing}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """The cause in one line, with what to do about the usual ones."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        text = str(exc.orig)
    elif isinstance(exc, OSError):
        text = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    else:
        text = str(exc)
    text = " ".join(text.split()) or type(exc).__name__
    lowered = text.lower()
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "disk is full" in lowered:
        return f"{text} (free some space, then rerun to resume)"
    if (
        "readonly" in lowered
        or "read-only" in lowered
        or "permission denied" in lowered
        or ("unable to open database file" in lowered)
    ):
        return f"{text} (the state folder must be writable)"
    return text
