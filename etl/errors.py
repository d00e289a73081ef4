"""Every error the library raises, sorted by what the caller does next.

    EtlError                      root: catch this to catch everything of ours
    ├── DefinitionError           the pipeline file is wrong: fix it (exit 2)
    ├── OptionError               a command-line option's value cannot be used (exit 2)
    ├── AbortError                the run cannot go on: nothing more is sent (exit 3)
    │   ├── AuthError             the API refused the token (401/403)
    │   ├── SourceError           the source is unreachable or unreadable
    │   ├── TooManyFailures       consecutive failures suggest the API is down
    │   ├── Unreachable           the API never answered: connection refused, DNS failure
    │   ├── ConfigRefused         the API keeps answering a non-row 4xx (404, 405, ...)
    │   └── StateError            the state store is unreachable, read-only, full or busy
    └── RunInterrupted            SIGINT/SIGTERM: state committed, summary printed (exit 130)

Per-request outcomes (retriable vs rejected) are not exceptions that escape the
loader: they become `delivered` / `rejected` / `failed` outcomes recorded in state.
Messages never contain a token, a secret, or an unmasked email or phone number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class EtlError(Exception):
    """Root of every error raised by yotpo-events-etl."""

    exit_code = 1
    #: The run's RunReport when the error ended a run (its summary is still worth printing).
    report: Any = None


class DefinitionError(EtlError):
    """One or more problems in a pipeline definition, each naming file and key."""

    exit_code = 2

    def __init__(self, file: Path | str, problems: list[tuple[str, str]]) -> None:
        self.file = str(file)
        self.problems = problems
        super().__init__("\n".join(f"{self.file}: {key}: {problem}" for key, problem in problems))


class OptionError(EtlError):
    """A command-line option's value cannot be used (say, `--metrics-port` is taken)."""

    exit_code = 2


class AbortError(EtlError):
    """The run stopped early; state is committed and a rerun resumes."""

    exit_code = 3


class StoresAborted(AbortError):
    """Some stores of a many-store run aborted (SPEC §10); the others finished."""

    def __init__(self, message: str, stores: dict[str, str]) -> None:
        super().__init__(message)
        self.stores = stores  # store id -> why it aborted


class AuthError(AbortError):
    """The API refused the credentials (HTTP 401/403) and no secret could renew them."""


class SourceError(AbortError):
    """The source could not be reached or read (file, encoding, database)."""


class TooManyFailures(AbortError):
    """Too many consecutive requests failed after all retries: the API looks down."""


class Unreachable(AbortError):
    """No connection to the API could be made, and no request has succeeded yet."""


class ConfigRefused(AbortError):
    """The API keeps answering the same non-row 4xx (404, 405, 410, 415, ...).

    Such an answer judges the configuration (path, base URL, store), not the event, so
    the events it answered are left without an outcome: a rerun after the fix sends them.
    """


class RunInterrupted(EtlError):
    """The run was stopped by SIGINT/SIGTERM after a clean shutdown."""

    exit_code = 130


class StateError(AbortError):
    """The state store cannot be used: unreachable, read-only, full, or held by another run."""


class LeaseLost(AbortError):
    """This worker's leases ran out before it could renew them (it was frozen, or cut off
    from the state database, for longer than the lease): another worker took its work."""
