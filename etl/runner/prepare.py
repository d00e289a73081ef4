"""The prepare stage, in the run's worker thread: chunk -> split -> batch -> diff.

Each source chunk is split into valid rows and rejects (SPEC §5; with many stores also
the rows whose store cannot be sent to, §10), the valid rows become an EventBatch
(§4), and the events the state store already has with the same payload are taken out
(§6). What comes out is one `Prepared` chunk: everything the async side counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from etl.column_types import ColumnTypes
from etl.events import EventBatch
from etl.stores import StoreRouter
from etl.transform import Transformer
from etl.validate import Validator

if TYPE_CHECKING:
    from etl.definition import Pipeline
    from etl.runner.plan import Plan
    from etl.state import Scope, StateStore


@dataclass
class Prepared:
    """One chunk after validation, transformation and the diff."""

    chunk: pd.DataFrame  # the source rows; empty unless the plan keeps rows
    rows: int
    labels: list[Any]  # the source index label of each event of `batch`
    batch: EventBatch
    valid: int
    skipped: int
    rejects: pd.DataFrame
    skipped_cursors: list[Any] = field(default_factory=list)
    rejects_csv: str | None = None  # the rejects' quarantine lines, when made already


def limited(chunks: Iterable[pd.DataFrame], limit: int | None) -> Iterator[pd.DataFrame]:
    """The non-empty chunks of a source, cut to at most `limit` rows in all."""
    remaining = limit
    for chunk in chunks:
        if remaining is not None:
            chunk = chunk.iloc[:remaining]
            remaining -= len(chunk)
        if len(chunk):
            yield chunk
        del chunk  # not alive while the next one is read
        if remaining is not None and remaining <= 0:
            return


class Preparer:
    """Turns one source chunk into a `Prepared` one; holds no state between chunks but the
    column types it observes and the stores it has judged."""

    def __init__(
        self,
        pipeline: Pipeline,
        plan: Plan,
        types: ColumnTypes,
        router: StoreRouter | None,
        state: tuple[StateStore, Scope] | None,
    ) -> None:
        destination = pipeline.destination
        constant = destination.store_id if isinstance(destination.store_id, str) else ""
        self.plan = plan
        self.types = types
        self.router = router
        self.state = state if plan.diffs else None  # --full-refresh: nothing is diffed
        self.validator = Validator(pipeline.event, pipeline.source.columns)
        self.transformer = Transformer(pipeline.event, constant, destination.store_column)

    def prepare(self, chunk: pd.DataFrame) -> Prepared:
        """Split, transform and diff one chunk."""
        return self.diffed(self.transformed(chunk))

    def transformed(self, chunk: pd.DataFrame) -> Prepared:
        """Split and transform one chunk, counting its column types; the state is not
        read (so this runs in a preparing process too, `etl.runner.processes`)."""
        split = self.validator.split(chunk)
        self.types.observe(chunk, split.valid)
        valid, rejects = split.valid, split.rejects
        if self.router is not None:
            valid, wrong_store = self.router.split(valid, chunk)
            rejects = pd.concat([rejects, wrong_store]) if len(wrong_store) else rejects
        # The cursors as extracted (labels are source row positions, unique in a chunk).
        extracted = chunk[self.plan.cursor].loc[valid.index] if self.plan.cursor else None
        batch = (
            self.transformer.to_batch(valid, extracted)
            if self.plan.transforms
            else EventBatch.of([])
        )
        return Prepared(
            chunk if self.plan.keeps_rows else chunk.iloc[:0],  # 30 MB a chunk held in the queue
            len(chunk),
            list(valid.index) if len(batch) else [],
            batch,
            valid=len(valid),
            skipped=0,
            rejects=rejects,
        )

    def diffed(self, prepared: Prepared) -> Prepared:
        """The chunk less the events the state store has with the same payload (§6)."""
        batch = prepared.batch
        if not len(batch) or self.state is None:
            return prepared
        store, scope = self.state
        unchanged = store.unchanged(scope, batch, self.plan.resend)
        if not unchanged:
            return prepared
        skip = set(unchanged)
        keep = [row for row in range(len(batch)) if row not in skip]
        cursors = batch.cursors if batch.cursors is not None else [None] * len(batch)
        return replace(
            prepared,
            batch=batch.take(keep),
            labels=[prepared.labels[row] for row in keep],
            skipped=len(unchanged),
            skipped_cursors=[cursors[row] for row in unchanged],
        )
