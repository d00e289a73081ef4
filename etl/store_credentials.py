"""Each store's token or secret, when a pipeline loads many stores (SPEC §10).

Two conventions: a YAML file mapping store id -> `{token: ...}` or `{secret: ...}`
(values may use `${VAR}`; the file is also the allow-list of stores), or one file per
store (`token_file: /run/secrets/yotpo/{store_id}`, the Kubernetes/Docker secret
mount; a trailing newline is ignored). The YAML file is checked whole when the run
starts, with the same checks `etl.checks` makes on a constant store id and token, so
a bad entry is one definition error naming the file and the key. A token file is read
when its store first appears; a store whose file is missing or unusable gets its rows
rejected under rule `store`, with a reason that names the file, never its content.
Every credential read is registered with `etl.redact`, so no log can show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl import checks, redact
from etl.definition import Destination
from etl.errors import DefinitionError
from etl.variables import Substitution, environment
from etl.yaml_file import YamlFileError, read_yaml

KINDS = ("token", "secret")


@dataclass(frozen=True)
class StoreSecret:
    """One store's credential: a token to send, or a secret to generate tokens from."""

    token: str | None = None
    secret: str | None = None


class StoreCredentials:
    """Each store's credential: `lookup(store)` is the secret, or why there is none."""

    def __init__(self, destination: Destination, pipeline_file: Path) -> None:
        self._template = destination.token_file
        self._shared = _shared(destination)
        self._known: dict[str, StoreSecret | str] = {}
        self.allow_list: frozenset[str] | None = None
        if destination.credentials:
            self._known.update(_read_file(Path(destination.credentials), pipeline_file))
            self.allow_list = frozenset(self._known)

    def lookup(self, store: str) -> StoreSecret | str:
        """The store's credential, or why its rows cannot be sent (the `store` reject reason)."""
        found = self._known.get(store)
        if found is not None:
            return found
        if self.allow_list is not None:
            return f"store {store!r} is not in destination.credentials"
        if self._template is None:
            if self._shared is None:
                return f"store {store!r} has no credentials"
            return self._shared
        found = self._known[store] = _read_token_file(Path(self._template.format(store_id=store)))
        return found


def _shared(destination: Destination) -> StoreSecret | None:
    """A destination-wide token or secret: the same credential for every store."""
    if destination.token is None and destination.secret is None:
        return None
    return StoreSecret(
        destination.token.get_secret_value() if destination.token else None,
        destination.secret.get_secret_value() if destination.secret else None,
    )


def _read_file(file: Path, pipeline_file: Path) -> dict[str, StoreSecret | str]:
    """The credentials file, checked whole: every problem at once, one line each."""
    key = "destination.credentials"
    if not file.is_file():
        raise DefinitionError(pipeline_file, [(key, f"no credentials file at {file}")])
    try:
        raw = read_yaml(file)
    except YamlFileError as exc:
        raise DefinitionError(file, [(exc.where, exc.problem)]) from None
    if not isinstance(raw, dict) or not raw:
        expected = "expected a mapping of store id -> {token: ...} or {secret: ...}"
        raise DefinitionError(file, [("(top level)", expected)])
    substitution = Substitution(environment(file.parent))
    raw = substitution.apply(raw)
    problems = list(substitution.missing.items())
    found: dict[str, StoreSecret | str] = {}
    for store, entry in raw.items():
        store_problem = checks.store_id_problem(str(store))
        if store_problem:
            problems.append((str(store)[:60], store_problem))
            continue
        problem, secret = _entry(entry)
        if problem:
            where, text = problem
            key = f"{store}.{where}" if where else str(store)
            if key not in substitution.missing:  # a missing variable has its line already
                problems.append((key, text))
            continue
        found[str(store)] = secret
    if problems:
        raise DefinitionError(file, problems)
    return found


def _entry(entry: Any) -> tuple[tuple[str, str] | None, StoreSecret | str]:
    """One store's `{token: ...}` or `{secret: ...}`: (key, problem) or the secret."""
    if not isinstance(entry, dict) or set(entry) - set(KINDS) or len(entry) != 1:
        return ("", "expected {token: ...} or {secret: ...}"), ""
    ((kind, value),) = entry.items()
    if not isinstance(value, str):
        return (kind, "must be a string"), ""
    problem = checks.credential_problem(value)
    if problem:
        return (kind, problem), ""
    redact.register_secret(value)
    return None, StoreSecret(**{kind: value})


def _read_token_file(file: Path) -> StoreSecret | str:
    """A store's token from its own file; the reason it is unusable, naming only the file."""
    try:
        token = file.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
    except FileNotFoundError:
        return f"no token file at {file}"
    except (OSError, UnicodeError) as exc:
        return f"cannot read token file {file}: {getattr(exc, 'strerror', None) or exc}"
    problem = checks.credential_problem(token)
    if problem:
        return f"token file {file}: {problem}"
    redact.register_secret(token)
    return StoreSecret(token=token)
