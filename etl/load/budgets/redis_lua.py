"""A store's rate budget in Redis: one atomic Lua script on the server's own clock.

The script reads `TIME`, computes the slot exactly as the PostgreSQL statement
does, and keeps `last` and `paused` in a hash and the last floor(rate) slots in a
list; both expire after a day idle so abandoned budgets do not pile up.
"""

from __future__ import annotations

from typing import Any

import redis

from etl.load.budgets.shared import MARGIN_S, SLACK_S, CoordinatorDown, Grant

#: Keys are `etl:budget:{budget}` (the hash) and `etl:budget:{budget}:recent` (the window);
#: the braces make both land on one Redis Cluster slot.
PREFIX = "etl:budget:"
IDLE_EXPIRY_S = 86_400

_SCRIPT = f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local spacing, window, pause = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '-1e300')
local paused = math.max(tonumber(redis.call('HGET', KEYS[1], 'paused') or '0'), now + pause)
local slot = math.max(last + spacing, paused, now - {SLACK_S})
if window > 0 and redis.call('LLEN', KEYS[2]) >= window then
  slot = math.max(slot, tonumber(redis.call('LINDEX', KEYS[2], -window)) + 1 + {MARGIN_S})
end
local s, p = string.format('%.6f', slot), string.format('%.6f', paused)
redis.call('HSET', KEYS[1], 'last', s, 'paused', p)
if window > 0 then
  redis.call('RPUSH', KEYS[2], s)
  redis.call('LTRIM', KEYS[2], -window, -1)
end
redis.call('EXPIRE', KEYS[1], {IDLE_EXPIRY_S})
redis.call('EXPIRE', KEYS[2], {IDLE_EXPIRY_S})
return {{s, string.format('%.6f', now), p}}
"""


class RedisBudget:
    """One store's slots in Redis at `url` (`redis://host:port/db`, `rediss://` for TLS)."""

    def __init__(self, url: str, budget: str, timeout_s: float = 5.0) -> None:
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        where = self.client.connection_pool.connection_kwargs
        self.where = f"redis {where.get('host')}:{where.get('port')}/{where.get('db', 0)}"
        self.keys = [f"{PREFIX}{{{budget}}}", f"{PREFIX}{{{budget}}}:recent"]
        self._script = self.client.register_script(_SCRIPT)

    def reserve(self, spacing: float, window: int, pause_s: float) -> Grant:
        """Reserve the next slot; CoordinatorDown when Redis cannot be reached."""
        args = [spacing, window, pause_s]
        slot, now, paused = self._call(self._script, keys=self.keys, args=args)
        return Grant(slot=float(slot), now=float(now), paused_until=float(paused))

    def now(self) -> float:
        """Redis's clock (TIME), seconds since the epoch."""
        seconds, micros = self._call(self.client.time)
        return float(seconds) + float(micros) / 1e6

    @staticmethod
    def _call(function: Any, **kwargs: Any) -> Any:
        try:
            return function(**kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CoordinatorDown(message) from None

    def close(self) -> None:
        """Close the pool's connections."""
        self.client.close()
