"""The sandbox as a separate process: started, awaited until healthy, stopped.

Shared by the pytest fixture, `make demo` and the benchmarks, so each talks to
the same real server over loopback that a user runs with `etl sandbox`.

    with start_sandbox(SandboxConfig(rate_limit=None), port=0) as server:
        httpx.post(f"{server.base_url}/core/v3/stores/s1/custom_events", ...)
        server.stats("s1")["status_counts"]
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from types import TracebackType
from typing import IO, Any

import httpx

from etl.errors import EtlError
from etl.sandbox.config import SandboxConfig

#: A healthy start takes ~0.3 s; a CI run once saw one take over 10 s on a busy machine.
STARTUP_TIMEOUT = 30.0
_READY = re.compile(rb"sandbox listening on (http://\S+)")


class SandboxStartError(EtlError):
    """The sandbox process did not become healthy in time; carries its stderr."""


class SandboxProcess:
    """A running sandbox process and a small client for its read-back routes."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        base_url: str,
        config: SandboxConfig,
        stderr: IO[bytes],
    ) -> None:
        self.process = process
        self.base_url = base_url
        self.config = config
        self.token = config.token
        self.secret = config.secret
        self.pid = process.pid
        self._stderr = stderr
        self._client = httpx.Client(
            base_url=base_url, timeout=10.0, verify=False
        )  # plain HTTP on loopback

    def events(self, store_id: str) -> list[dict[str, Any]]:
        """The event bodies the sandbox holds for `store_id`."""
        found: list[dict[str, Any]] = self._get(f"/_sandbox/stores/{store_id}/events")["events"]
        return found

    def stats(self, store_id: str) -> dict[str, Any]:
        """The `/stats` JSON of `store_id` (count, receipts, status_counts, requests, times)."""
        stats: dict[str, Any] = self._get(f"/_sandbox/stores/{store_id}/stats")
        return stats

    def reset(self) -> None:
        """Forget every event, stat and rate-limit bucket; restart the seeded faults."""
        self._client.post("/_sandbox/reset").raise_for_status()

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after `timeout` s) and wait for it."""
        self._client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr.close()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def _get(self, path: str) -> Any:
        response = self._client.get(path)
        response.raise_for_status()
        return response.json()


def command_line(config: SandboxConfig, port: int = 0, host: str = "127.0.0.1") -> list[str]:
    """The `python -m etl.sandbox` command that serves `config`."""
    args = [sys.executable, "-m", "etl.sandbox", "--host", host, "--port", str(port)]
    for spec in fields(SandboxConfig):
        value = getattr(config, spec.name)
        if spec.name == "rate_limit":
            value = 0 if value is None else value
        if value is not None:
            args += [f"--{spec.name.replace('_', '-')}", str(value)]
    return args


def start_sandbox(config: SandboxConfig, port: int | None = None) -> SandboxProcess:
    """Start the sandbox (a free port when `port` is None); return once it answers its health check.

    Raises SandboxStartError, with the process's stderr, when it is not healthy within
    STARTUP_TIMEOUT seconds.
    """
    # stderr outlives this call: the SandboxProcess owns it (a file, so a chatty server never
    # blocks on a full pipe) and closes it in stop().
    stderr = tempfile.TemporaryFile()  # noqa: SIM115
    with _stdout_pair() as (written, read):
        process = subprocess.Popen(
            command_line(config, port or 0), stdout=written, stderr=stderr, stdin=subprocess.DEVNULL
        )
        base_url = _wait_ready(process, read, time.monotonic() + STARTUP_TIMEOUT)
    if base_url is None:
        if process.poll() is None:
            process.send_signal(signal.SIGUSR1)  # its stacks to stderr: where it hangs
            time.sleep(0.5)
            process.kill()
        code = process.wait()
        stderr.seek(0)
        output = stderr.read().decode(errors="replace").strip() or "(no output)"
        stderr.close()
        raise SandboxStartError(
            f"the sandbox was not healthy within {STARTUP_TIMEOUT:.0f} s (exit code {code}); "
            f"its stderr:\n{output}"
        )
    return SandboxProcess(process, base_url, config, stderr)


@contextmanager
def _stdout_pair() -> Iterator[tuple[IO[bytes], IO[bytes]]]:
    """The child's stdout file, opened twice: appended to by the child, read by us.

    Two opens, not one shared file: a shared one has one offset, so our `seek(0)` to
    re-read could make the child's next line overwrite the "listening on" line, which
    was then never found (a start that hung for the whole timeout with no output).
    """
    descriptor, name = tempfile.mkstemp(prefix="etl-sandbox-", suffix=".out")
    os.close(descriptor)
    try:
        with open(name, "ab") as written, open(name, "rb") as read:
            yield written, read
    finally:
        os.unlink(name)


def _wait_ready(process: subprocess.Popen[bytes], stdout: IO[bytes], deadline: float) -> str | None:
    """The base URL once the process printed it and answers /_sandbox/health; None if never."""
    base_url = None
    with httpx.Client(timeout=1.0, verify=False) as http:
        while time.monotonic() < deadline and process.poll() is None:
            if base_url is None:
                stdout.seek(0)
                found = _READY.search(stdout.read())
                base_url = found.group(1).decode() if found else None
            if base_url is not None and _healthy(http, base_url):
                return base_url
            time.sleep(0.02)
    return None


def _healthy(http: httpx.Client, base_url: str) -> bool:
    try:
        return http.get(f"{base_url}/_sandbox/health").status_code == 200
    except httpx.TransportError:
        return False
