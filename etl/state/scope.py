"""Whose state a row is: a pipeline and the destination its events were sent to (SPEC §6).

The same pipeline rehearsed on the sandbox and then pointed at the live store must start
from nothing there, while the sandbox keeps its history; so every outcome, watermark and
run is keyed by the pipeline name, the base URL (without a trailing slash) and the store.
The store is a column of its own so that a pipeline loading many stores (SPEC §10) keys
each row by the store it went to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from etl.definition import Pipeline

#: Rows written before state had destinations (schema version 1) carry this destination
#: until the first pipeline that opens the store with a destination adopts them.
LEGACY = ("", "")


def normalise_base_url(base_url: str) -> str:
    """`https://api.yotpo.com/` and `https://api.yotpo.com` are one destination."""
    return base_url.rstrip("/")


@dataclass(frozen=True)
class Scope:
    """A pipeline and one destination of it: the key of everything the store keeps."""

    pipeline: str
    base_url: str
    store_id: str

    @classmethod
    def of(cls, pipeline: Pipeline) -> Scope:
        """The scope of a pipeline's (single) destination; its store id must be known."""
        destination = pipeline.destination
        if not destination.store_id:
            raise ValueError(f"pipeline {pipeline.name} has no store id: it has no state scope")
        return cls(pipeline.name, normalise_base_url(destination.base_url), destination.store_id)

    def values(self) -> dict[str, str]:
        """The key columns as a row's values."""
        return {"pipeline": self.pipeline, "base_url": self.base_url, "store_id": self.store_id}

    def where(self, table: sa.Table) -> Any:
        """The SQL condition selecting this scope's rows of `table`."""
        return sa.and_(
            table.c.pipeline == self.pipeline,
            table.c.base_url == self.base_url,
            table.c.store_id == self.store_id,
        )
