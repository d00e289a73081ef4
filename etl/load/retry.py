"""What an answer means for its event (SPEC §7), and how long to wait before trying again.

    2xx                       delivered
    401, 403                  the token was refused: renew it once, else abort the run
    429                       retried after the API's reset (every worker of the store pauses)
    5xx, 408, timeout, connection  retried after back-off
    400, 422                  rejected with the API's message: the answer judges the row
    other 4xx                 the configuration is wrong (404 path, 405, 410, 415...): retried
                              like a 5xx, and the loader aborts when it keeps coming (SPEC §5)

The waits come from the API's headers when they make sense and from the back-off
schedule otherwise: a `Retry-After: 0`, a missing or a garbage value must never
turn into an immediate retry loop that burns every attempt in a second.

No retry library (tenacity, stamina): the back-off is one line, and the part that
matters, a 429 pausing every worker of the store through the shared limiter, is
not a per-call retry policy that such a library models.
"""

from __future__ import annotations

import enum
import math
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
import orjson

#: The longest back-off between two tries of one event, seconds.
BACKOFF_CAP_S = 30.0
#: A reset longer than this is not believed (it would stall a run for hours on one header).
RESET_CAP_S = 3600.0
#: How much of an unstructured error body is kept.
MESSAGE_CHARS = 200


class Verdict(enum.Enum):
    """The class of an answer, which decides the next step."""

    DELIVERED = "delivered"
    REJECTED = "rejected"
    AUTH = "auth"
    THROTTLED = "throttled"
    RETRY = "retry"
    CONFIG = "config"


#: The answers that judge the row itself (SPEC §5); every other 4xx judges the configuration.
ROW_STATUSES = frozenset({400, 422})


def classify(status: int) -> Verdict:
    """The verdict of an HTTP status code."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in (401, 403):
        return Verdict.AUTH
    if status == 429:
        return Verdict.THROTTLED
    if status in ROW_STATUSES:
        return Verdict.REJECTED
    if 400 <= status < 500 and status != 408:
        return Verdict.CONFIG
    return Verdict.RETRY  # 5xx and anything unexpected: the API may answer better later


def backoff(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed try number `attempt` (1 -> 0.5-1 s, doubling, capped)."""
    draw = (rng or random).uniform(0.5, 1.0)
    return min(BACKOFF_CAP_S, 2.0 ** (attempt - 1)) * draw


def _seconds(value: str | None) -> float | None:
    """A believable positive number of seconds, else None (missing, zero, negative, garbage)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return min(seconds, RESET_CAP_S)


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds or as an HTTP date (RFC 9110 allows both)."""
    seconds = _seconds(value)
    if seconds is not None or value is None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return _seconds(str((when - datetime.now(UTC)).total_seconds()))


def _is_zero(value: str | None) -> bool:
    try:
        return value is not None and float(value) <= 0
    except ValueError:
        return False


def throttle_reset(headers: httpx.Headers) -> float | None:
    """How long a 429 says to wait: Retry-After, else RateLimit-Reset, else the minute pair.

    None means no usable value: the caller falls back to the back-off schedule.
    """
    for wait in (
        _retry_after(headers.get("retry-after")),
        _seconds(headers.get("ratelimit-reset")),
        _seconds(headers.get("x-ratelimit-reset-minute")),
    ):
        if wait is not None:
            return wait
    return None


def pause_cause(response: httpx.Response) -> str:
    """Why the API made us wait, for the log: the status and the header that said how long."""
    headers = response.headers
    for name in ("Retry-After", "RateLimit-Reset", "X-RateLimit-Reset-Minute"):
        if (value := headers.get(name)) is not None:
            return f"HTTP {response.status_code}, {name}: {value[:40]}"
    return f"HTTP {response.status_code}, back-off"


def quota_spent(headers: httpx.Headers) -> float | None:
    """Seconds to hold every send because an answer said no request is left in the window.

    `RateLimit-Remaining: 0` with `RateLimit-Reset`, or the per-minute pair
    `X-RateLimit-Remaining-Minute: 0` with `X-RateLimit-Reset-Minute`; None when there
    is budget left or the API does not say.
    """
    if _is_zero(headers.get("ratelimit-remaining")):
        return _seconds(headers.get("ratelimit-reset"))
    if _is_zero(headers.get("x-ratelimit-remaining-minute")):
        return _seconds(headers.get("x-ratelimit-reset-minute")) or _seconds(
            headers.get("ratelimit-reset")
        )
    return None


def api_message(response: httpx.Response) -> str:
    """The API's reason for refusing an event, readable: `field: message` when it names one."""
    try:
        error = orjson.loads(response.content).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    if isinstance(error, dict) and error.get("message"):
        field = error.get("field")
        return f"{field}: {error['message']}" if field else str(error["message"])
    if isinstance(error, str) and error:
        return error
    text = response.text.strip()[:MESSAGE_CHARS]
    return f"HTTP {response.status_code}: {text}" if text else f"HTTP {response.status_code}"


def transport_error(exc: httpx.TransportError) -> str:
    """A transport failure in a few words (the class says what; never a header or a body)."""
    detail = str(exc).strip()
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
