"""How the sandbox behaves: kept apart from the app so that `etl --help` and every
other command start without importing Starlette, uvicorn and httpx."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from etl import wire


@dataclass(frozen=True)
class SandboxConfig:
    """How the sandbox behaves; checked once when built (a bad value is a ValueError).

    | want                                | set                                   |
    |-------------------------------------|---------------------------------------|
    | the real API's pace                 | rate_limit=5.0 (the default)          |
    | no limit (benchmarks)               | rate_limit=None                       |
    | a slow network                      | latency_ms=80, latency_jitter_ms=40   |
    | a flaky API, reproducibly           | fail_rate=0.1, drop_rate=0.05, seed=7 |
    | see what arrived after a demo       | db=Path("sandbox.db")                 |
    """

    rate_limit: float | None = 5.0
    """Requests per second per store; None turns the limit off."""
    burst: int | None = None
    """Bucket size; None means max(1, int(rate_limit)), i.e. no burst above the rate."""
    latency_ms: float = 0.0
    """Latency added to every answer of the API endpoints."""
    latency_jitter_ms: float = 0.0
    """Uniform +/- jitter on latency_ms (never below zero)."""
    fail_rate: float = 0.0
    """Fraction of requests (past auth and rate limit) answered 500."""
    drop_rate: float = 0.0
    """Fraction whose TCP connection is closed with no answer at all."""
    slow_rate: float = 0.0
    """Fraction answered after an extra slow_ms."""
    slow_ms: float = 5000.0
    """The extra delay of a slow answer."""
    seed: int | None = None
    """Seed of the fault draws: the same seed gives the same sequence of faults."""
    token: str = "sandbox-token"
    """The X-Yotpo-Token accepted from the start."""
    secret: str = "sandbox-secret"
    """The API secret the access-token endpoint exchanges for a fresh token."""
    db: Path | None = None
    """SQLite file that keeps the events across restarts; None keeps them in memory."""
    path: str = wire.DEFAULT_PATH
    """Path of the custom-event endpoint; must contain {store_id}."""

    def __post_init__(self) -> None:
        problems = []
        if self.rate_limit is not None and not self.rate_limit > 0:
            problems.append(f"rate_limit must be above 0 or None, not {self.rate_limit}")
        if self.burst is not None and self.burst < 1:
            problems.append(f"burst must be at least 1, not {self.burst}")
        for name in ("latency_ms", "latency_jitter_ms", "slow_ms"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative")
        rates = {
            "fail_rate": self.fail_rate,
            "drop_rate": self.drop_rate,
            "slow_rate": self.slow_rate,
        }
        problems += [
            f"{name} must be between 0 and 1, not {rate}"
            for name, rate in rates.items()
            if not 0 <= rate <= 1
        ]
        if sum(rates.values()) > 1:
            problems.append("fail_rate + drop_rate + slow_rate must not exceed 1")
        if "{store_id}" not in self.path or not self.path.startswith("/"):
            problems.append(f"path must start with / and contain {{store_id}}, not {self.path!r}")
        if not self.token or not self.secret:
            problems.append("token and secret must not be empty")
        if problems:
            raise ValueError("invalid sandbox configuration: " + "; ".join(problems))

    @property
    def capacity(self) -> int:
        """The token bucket's size."""
        if self.burst is not None:
            return self.burst
        return max(1, int(self.rate_limit or 1))
