"""The `sandbox` fixture: the real sandbox as a separate process on a free loopback port."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from etl.sandbox.config import SandboxConfig
from etl.sandbox.process import SandboxProcess, SandboxStartError, start_sandbox


@pytest.fixture
def sandbox() -> Iterator[Callable[..., SandboxProcess]]:
    """A factory: `sandbox(rate_limit=None, fail_rate=0.2, seed=1)` starts one process.

    Every process started stops at teardown (SIGTERM, then SIGKILL after 5 s).
    """
    started: list[SandboxProcess] = []

    def start(port: int | None = None, **config: Any) -> SandboxProcess:
        try:
            server = start_sandbox(SandboxConfig(**config), port=port)
        except SandboxStartError as exc:  # rare in CI (twice, cause unknown): say it, go on
            warnings.warn(f"sandbox start retried: {exc}", stacklevel=2)
            server = start_sandbox(SandboxConfig(**config), port=port)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()
