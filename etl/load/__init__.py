"""Loading (SPEC §7): post events to the API under one store's rate limit, with retries.

limiter.py  evenly spaced send slots for one store, paused by the API's headers
retry.py    what an answer means (deliver, reject, retry, renew the token) and back-off
loader.py   the concurrent workers, token renewal, abort and shutdown
transport.py  a lean HTTP/1.1 keep-alive transport under httpx.AsyncClient (the hot path)
"""

from __future__ import annotations

import logging

from etl.load.limiter import Limiter
from etl.load.loader import Loader, LoadStats

__all__ = ["Limiter", "LoadStats", "Loader"]

# httpx logs every request at INFO: a backfill would flood a host application's log
# (orchestrators log at INFO). Quieted here, in the library, unless the host set a level.
if logging.getLogger("httpx").level == logging.NOTSET:
    logging.getLogger("httpx").setLevel(logging.WARNING)
