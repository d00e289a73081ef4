"""Static partitioning of stores for engines that hand each task an index (SPEC §11).

A Kubernetes Indexed Job, an Airflow mapped task or a shell loop runs N copies of
one `etl run`, each with `--partition K/N`; a copy takes exactly the stores whose
bucket is K:

    bucket(store_id, N) = int.from_bytes(sha256(store_id.encode("utf-8")).digest()[:8], "big") % N

The hash is stable across processes, machines and Python versions (unlike `hash()`),
so every copy agrees on who owns what without talking to the others. With a single
constant store a copy either owns the store or has nothing to do. With a per-row store
column (SPEC §10) each copy keeps only the rows of its stores (a row without a store
belongs to the store "", so exactly one copy rejects it); its runs, watermark and
SQLite run lock are its partition's own, so N copies of one pipeline never contend.
`OneStore` filters the same way to a single store (a Dagster partition).

    >>> Partition.parse("1/4").owns("my-store")
    False
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from etl.definition import Pipeline

_SPEC = re.compile(r"^(\d+)/(\d+)$")


def bucket(store_id: str, count: int) -> int:
    """The partition (0 .. count-1) that owns `store_id`."""
    digest = hashlib.sha256(store_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Partition:
    """Partition `index` of `count`: the stores whose bucket is `index`."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Partition:
        """`K/N` with 0 <= K < N; ValueError naming the problem otherwise."""
        match = _SPEC.match(text.strip())
        if match is None:
            raise ValueError(f"expected K/N (e.g. 0/4), not {text!r}")
        index, count = int(match[1]), int(match[2])
        if count < 1:
            raise ValueError(f"N must be at least 1, not {count}")
        if index >= count:
            raise ValueError(f"K must be below N (0..{count - 1}), not {index}")
        return cls(index, count)

    def owns(self, store_id: str) -> bool:
        """Whether this partition sends `store_id`'s events."""
        return bucket(store_id, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class OneStore:
    """Only the rows of one store, of a pipeline whose rows name their stores."""

    store_id: str

    def owns(self, store_id: str) -> bool:
        """Whether this filter keeps `store_id`'s rows."""
        return store_id == self.store_id

    def __str__(self) -> str:
        return self.store_id


StoreFilter = Partition | OneStore


def owned_rows(chunk: pd.DataFrame, column: str, stores: StoreFilter) -> pd.DataFrame:
    """The rows of `chunk` whose store (column `column`) `stores` owns."""
    from etl.stores import store_text

    owned = {}
    mask = []
    for value in chunk[column].astype(object).tolist():
        store = store_text(value) or ""
        if store not in owned:
            owned[store] = stores.owns(store)
        mask.append(owned[store])
    return chunk if all(mask) else chunk.loc[mask]


def not_mine(pipeline: Pipeline, partition: Partition) -> str | None:
    """The one line a run prints when `partition` owns none of its stores, else None.

    A pipeline without a store id is not skipped: the run itself reports what is missing.
    """
    store = pipeline.destination.store_id
    if not isinstance(store, str) or not store or partition.owns(store):
        return None
    owner = bucket(store, partition.count)
    return (
        f"{pipeline.name}: partition {partition} does not own store {store!r} "
        f"(its partition is {owner}/{partition.count}); nothing to read"
    )
