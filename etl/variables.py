"""`${VAR}` and `${VAR:-default}` in pipeline files, from the environment and `.env` files.

Why a module of its own: where a value comes from is a question users ask ("why does
the run use this store?"), and the order must be the same everywhere (SPEC §3): the
real environment, then `.env` in the pipeline file's folder, then `.env` in the
working directory. `.env` files are read with python-dotenv's parser and never
written into `os.environ`, so a library caller's process is left as it was.

A variable a command does not need (a token for `etl validate`) is not an error at
parse time: `Substitution.missing` records it per key, and the caller decides.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def environment(pipeline_folder: Path, cwd: Path | None = None) -> dict[str, str]:
    """The variables a pipeline sees: `os.environ` over the folder's `.env` over the cwd's."""
    from dotenv import dotenv_values  # only when a file is parsed: keeps `etl --help` light

    merged: dict[str, str] = {}
    folders = [(cwd or Path.cwd()).resolve(), pipeline_folder.resolve()]
    for folder in dict.fromkeys(folders):  # later wins: the pipeline's folder over the cwd
        dotenv = folder / ".env"
        if dotenv.is_file():
            merged.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    merged.update(os.environ)
    return merged


@dataclass
class Substitution:
    """Replaces variables in a parsed YAML tree, remembering which were missing where."""

    variables: Mapping[str, str]
    #: dotted key -> the problem ("environment variable X is not set"), first one per key.
    missing: dict[str, str] = field(default_factory=dict)

    def apply(self, node: Any, key: str = "") -> Any:
        """A copy of `node` with every `${VAR}` / `${VAR:-default}` replaced."""
        if isinstance(node, dict):
            return {k: self.apply(v, f"{key}.{k}" if key else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [self.apply(v, f"{key}[{i}]") for i, v in enumerate(node)]
        if not isinstance(node, str):
            return node
        return _VARIABLE.sub(lambda match: self._value(match, key), node)

    def _value(self, match: re.Match[str], key: str) -> str:
        name, default = match["name"], match["default"]
        value = self.variables.get(name)
        if value:
            return value
        if default is not None:
            return default
        problem = "is empty" if value == "" else "is not set"
        self.missing.setdefault(key, f"environment variable {name} {problem} (nor in a .env file)")
        return ""
