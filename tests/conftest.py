"""Shared test set-up: a clean environment for every test, and the fixture plugins."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["fixtures_db", "fixtures_http", "fixtures_sandbox"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop variables a developer's shell may carry, so tests see only what they set."""
    for name in list(os.environ):
        if name.startswith(("YOTPO_", "ETL_", "WAREHOUSE_")):
            monkeypatch.delenv(name, raising=False)
