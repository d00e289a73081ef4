"""Which limiter a run gets: one shared per-store budget, or today's in-process one (SPEC §11).

A store's rate limit belongs to the store, not to the pipeline or the process, so
every `etl run` that sends to the same store (any pipeline, any machine) must draw
from one budget. It is kept where the workers already meet:

| the definition has                         | the budget lives in                        |
|--------------------------------------------|--------------------------------------------|
| `destination.rate_limit_url: redis://...`  | Redis (a Lua script on the server's TIME)  |
| a PostgreSQL `state:` URL                  | the state database (one row per store)     |
| neither (a SQLite state)                   | this process (`etl.load.limiter.Limiter`)  |

    limiter = limiter_for(pipeline.destination, pipeline.state_url)
"""

from __future__ import annotations

import httpx

from etl.definition import Destination
from etl.load.budgets.shared import BudgetUnavailable, SharedLimiter
from etl.load.limiter import Limiter

__all__ = ["BudgetUnavailable", "SharedLimiter", "budget_key", "limiter_for"]


def budget_key(destination: Destination) -> str:
    """The budget's name: the normalised base URL and the store id, never the pipeline.

    `HTTPS://API.yotpo.com:443/` and `https://api.yotpo.com` are one API, so one budget.
    """
    url = httpx.URL(destination.base_url)
    default = {"http": 80, "https": 443}.get(url.scheme)
    port = f":{url.port}" if url.port not in (None, default) else ""
    path = url.path.rstrip("/")
    return f"{url.scheme}://{url.host}{port}{path}|{destination.store_id}"


def limiter_for(destination: Destination, state_url: str | None = None) -> Limiter:
    """The limiter for one store: shared through Redis or PostgreSQL when configured."""
    key = budget_key(destination)
    if destination.rate_limit_url is not None:
        try:
            from etl.load.budgets.redis_lua import RedisBudget
        except ImportError:
            raise BudgetUnavailable(
                "destination.rate_limit_url needs the redis package: "
                "pip install 'yotpo-events-etl[redis]'"
            ) from None

        coordinator = RedisBudget(destination.rate_limit_url.get_secret_value(), key)
        return SharedLimiter(destination.rate_limit, coordinator)
    if state_url is not None and state_url.startswith("postgresql"):
        from etl.load.budgets.postgres import PostgresBudget

        return SharedLimiter(destination.rate_limit, PostgresBudget(state_url, key))
    return Limiter(destination.rate_limit)
