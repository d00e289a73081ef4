"""Pending work that every worker can see: events read but not yet sent (SPEC §11).

The reader enqueues each new or changed event with its body under its partition
(store, shard); the holder of a partition drains it in `seq` order, and its outcome
is recorded *fenced*: in ONE transaction that first checks, under a share lock on the
lease row, that the holder's epoch is still current, then writes the outcome into
`etl_events` and takes the event off the queue. A worker that lost the partition
(it froze, or was cut off, and another took over) can therefore never overwrite the
new holder's record with a late "delivered": its write is refused and counted.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from etl.events import Event, Status
from etl.partition import bucket
from etl.state.leases import KEY, MATCHING, Lease, lease_arrays
from etl.state.schema import decode_value, encode_value, events, leases, pending
from etl.state.store import event_update, merged_rows, upsert

_BATCH = (
    "unnest(CAST(:stores AS text[]), CAST(:ids AS text[]), CAST(:hashes AS text[])) "
    "AS b(store_id, event_id, payload_hash)"
)
_SAME_EVENT = (
    "q.pipeline = :pipeline AND q.base_url = :base_url AND q.store_id = b.store_id "
    "AND q.event_id = b.event_id"
)
#: Pending events whose body the reader has just read changed: replaced, to the back.
_DELETE_CHANGED = sa.text(
    f"DELETE FROM etl_pending q USING {_BATCH} "
    f"WHERE {_SAME_EVENT} AND q.payload_hash <> b.payload_hash"
)
#: Pending events just sent, unless the reader replaced the body meanwhile.
_DELETE_SENT = sa.text(
    f"DELETE FROM etl_pending q USING {_BATCH} "
    f"WHERE {_SAME_EVENT} AND q.payload_hash = b.payload_hash"
)

#: Marks a fenced outcome row with the lease it was sent under (taken off before writing).
LEASE = "_lease"


class WorkQueue:
    """The queue of one pipeline and base URL; `shards` partitions per store."""

    def __init__(
        self, engine: sa.Engine, pipeline: str, base_url: str, worker: str, shards: int
    ) -> None:
        self.engine = engine
        self.worker = worker
        self.shards = shards
        self._key = {"pipeline": pipeline, "base_url": base_url}

    def shard_of(self, event_id: str) -> int:
        """The shard of an event: its id's stable hash mod `shards`."""
        return bucket(event_id, self.shards)

    def enqueue(self, reader: Lease, batch: list[tuple[str, Event]]) -> bool:
        """Make (store, event) pairs pending, if `reader` is still the reader's lease.

        An event already pending with the same body stays as it is; a changed one is
        replaced and goes to the back of its partition. False: the lease was lost, and
        nothing was written.
        """
        rows = [
            {
                **self._key,
                "store_id": store,
                "shard": self.shard_of(event.id),
                "event_id": event.id,
                "payload_hash": event.payload_hash,
                "body": event.body,
                "cursor": encode_value(event.cursor),
            }
            for store, event in batch
        ]
        params = {**self._key, "me": self.worker, **lease_arrays([reader])}
        with self.engine.begin() as connection:
            if (
                connection.execute(
                    sa.text(
                        f"SELECT 1 FROM etl_leases WHERE {KEY} AND holder = :me AND {MATCHING} "
                        "FOR SHARE"
                    ),
                    params,
                ).first()
                is None
            ):
                return False
            if not rows:
                return True
            partitions = {(row["store_id"], row["shard"]) for row in rows}
            connection.execute(
                postgresql.insert(leases).on_conflict_do_nothing(),
                [
                    {
                        **self._key,
                        "store_id": store,
                        "shard": shard,
                        "holder": None,
                        "epoch": 0,
                        "expires_at": 0.0,
                    }
                    for store, shard in sorted(partitions)
                ],
            )
            connection.execute(_DELETE_CHANGED, {**self._key, **_triples(rows)})
            connection.execute(postgresql.insert(pending).on_conflict_do_nothing(), rows)
        return True

    def take(self, lease: Lease, after: int, limit: int) -> list[tuple[int, Event]]:
        """Up to `limit` pending events of a partition with `seq` above `after`, in order."""
        query = (
            sa.select(
                pending.c.seq,
                pending.c.event_id,
                pending.c.body,
                pending.c.payload_hash,
                pending.c.cursor,
            )
            .where(
                pending.c.pipeline == self._key["pipeline"],
                pending.c.base_url == self._key["base_url"],
                pending.c.store_id == lease.store,
                pending.c.shard == lease.shard,
                pending.c.seq > after,
            )
            .order_by(pending.c.seq)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            (
                int(seq),
                Event(event_id, bytes(body), payload_hash, decode_value(cursor), lease.store),
            )
            for seq, event_id, body, payload_hash, cursor in rows
        ]

    def record(self, rows: list[dict[str, Any]]) -> int:
        """Write fenced outcome rows (`etl.state.store.outcome_row` plus `LEASE`) in one
        transaction; return how many were refused because their lease is no longer current."""
        held = sorted({row[LEASE] for row in rows})
        params = {**self._key, "me": self.worker, **lease_arrays(held)}
        with self.engine.begin() as connection:
            current = {
                Lease(store, int(shard), int(epoch))
                for store, shard, epoch in connection.execute(
                    sa.text(
                        f"SELECT store_id, shard, epoch FROM etl_leases WHERE {KEY} "
                        f"AND holder = :me AND {MATCHING} FOR SHARE"
                    ),
                    params,
                )
            }
            accepted = [
                {k: v for k, v in row.items() if k != LEASE}
                for row in rows
                if row[LEASE] in current
            ]
            if accepted:
                connection.execute(upsert(connection, events, event_update), merged_rows(accepted))
                connection.execute(_DELETE_SENT, {**self._key, **_triples(accepted)})
                failed = sum(row["status"] == Status.FAILED.value for row in accepted)
                if failed:
                    connection.execute(
                        sa.text(f"UPDATE etl_rounds SET failed = failed + :n WHERE {KEY}"),
                        {**self._key, "n": failed},
                    )
        return len(rows) - len(accepted)


def _triples(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Rows' (store, event id, payload hash) as the three arrays `_BATCH` unnests."""
    return {
        "stores": [row["store_id"] for row in rows],
        "ids": [row["event_id"] for row in rows],
        "hashes": [row["payload_hash"] for row in rows],
    }
