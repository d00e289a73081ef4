"""Leases on the partitions of one pipeline's work, in a PostgreSQL state (SPEC §11).

A partition is (store, shard of the event-id hash); one more lease, shard -1 of store
"", is the reader's: one worker at a time reads the source and enqueues what is new or
changed (`etl.state.queue`). Every lease row has a holder, an expiry on the database's
clock (`clock_timestamp()`, so the workers' clocks never matter) and a fencing `epoch`
that grows on every takeover; a write for a partition is accepted only while the
writer's epoch is the current one.

Free or expired partitions that have pending work are taken with `SELECT ... FOR UPDATE
SKIP LOCKED`: concurrent workers each get different rows at once, none waits on
another. Workers also keep a heartbeat row, so each takes a fair share
(`ceil(partitions with work / live workers)`) and a newcomer gets work to do.

A *round* is the work of workers that run together: it starts when a worker joins
while no other is alive and the previous round's source was read to the end, and it
ends when the source is read and nothing is pending in any partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

#: The reader's lease: a partition no event belongs to.
READER = ("", -1)
_NOW = "extract(epoch FROM clock_timestamp())"
#: The SQL condition on one pipeline's rows; `MATCHING`: rows at these leases' epochs.
KEY = "pipeline = :pipeline AND base_url = :base_url"
MATCHING = (
    "(store_id, shard, epoch) IN (SELECT * FROM unnest("
    "CAST(:stores AS text[]), CAST(:shards AS integer[]), CAST(:epochs AS integer[])))"
)


@dataclass(frozen=True, order=True)
class Lease:
    """A partition held at `epoch`; any write for it checks the epoch is still current."""

    store: str
    shard: int
    epoch: int

    @property
    def partition(self) -> tuple[str, int]:
        return (self.store, self.shard)


@dataclass(frozen=True)
class Progress:
    """Where a round stands, as every worker sees it."""

    read_done: bool
    failed: int  # failed outcomes recorded in the round
    work: dict[tuple[str, int], int]  # partition -> pending events
    live_workers: int

    @property
    def finished(self) -> bool:
        """The source was read to the end and no event is pending anywhere."""
        return self.read_done and not self.work


class LeaseBoard:
    """One worker's view of the lease table; every method is one short transaction."""

    def __init__(
        self, engine: sa.Engine, pipeline: str, base_url: str, worker: str, lease_s: float
    ) -> None:
        self.engine = engine
        self.worker = worker
        self.lease_s = lease_s
        self._key = {"pipeline": pipeline, "base_url": base_url}

    def _params(self, **more: Any) -> dict[str, Any]:
        return {**self._key, "me": self.worker, "length": self.lease_s, **more}

    def join(self) -> int:
        """Register this worker (a heartbeat row) and return the round it works in.

        Under the round's row lock, so two workers joining at once agree: the first
        alone starts a new round (if the last one was read to the end), the second joins it.
        """
        params = self._params()
        with self.engine.begin() as connection:
            run = connection.execute
            run(
                sa.text(
                    "INSERT INTO etl_rounds (pipeline, base_url, round, read_done, failed) "
                    "VALUES (:pipeline, :base_url, 1, false, 0) ON CONFLICT DO NOTHING"
                ),
                params,
            )
            round_, read_done = run(
                sa.text(f"SELECT round, read_done FROM etl_rounds WHERE {KEY} FOR UPDATE"), params
            ).one()
            run(sa.text(f"DELETE FROM etl_workers WHERE {KEY} AND expires_at < {_NOW}"), params)
            others = run(
                sa.text(f"SELECT count(*) FROM etl_workers WHERE {KEY} AND worker <> :me"), params
            ).scalar_one()
            if not others and read_done:
                round_ += 1
                run(
                    sa.text(
                        "UPDATE etl_rounds SET round = :round, read_done = false, "
                        f"failed = 0 WHERE {KEY}"
                    ),
                    {**params, "round": round_},
                )
            run(
                sa.text(
                    "INSERT INTO etl_workers (pipeline, base_url, worker, expires_at) "
                    f"VALUES (:pipeline, :base_url, :me, {_NOW} + :length) "
                    "ON CONFLICT (pipeline, base_url, worker) "
                    "DO UPDATE SET expires_at = excluded.expires_at"
                ),
                params,
            )
            run(
                sa.text(
                    "INSERT INTO etl_leases (pipeline, base_url, store_id, shard, epoch, "
                    "expires_at) VALUES (:pipeline, :base_url, :store, :shard, 0, 0) "
                    "ON CONFLICT DO NOTHING"
                ),
                {**params, "store": READER[0], "shard": READER[1]},
            )
        return int(round_)

    def heartbeat(self) -> None:
        """Keep this worker counted among the live ones for another lease length."""
        with self.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO etl_workers (pipeline, base_url, worker, expires_at) "
                    f"VALUES (:pipeline, :base_url, :me, {_NOW} + :length) "
                    "ON CONFLICT (pipeline, base_url, worker) "
                    "DO UPDATE SET expires_at = excluded.expires_at"
                ),
                self._params(),
            )

    def acquire(self, count: int) -> list[Lease]:
        """Take up to `count` free or expired partitions that have pending work."""
        if count <= 0:
            return []
        return self._take(
            _taking("""
                l.shard >= 0 AND EXISTS (
                    SELECT 1 FROM etl_pending q
                    WHERE q.pipeline = l.pipeline AND q.base_url = l.base_url
                      AND q.store_id = l.store_id AND q.shard = l.shard)
                ORDER BY l.store_id, l.shard LIMIT :count"""),
            count=count,
        )

    def acquire_reader(self) -> Lease | None:
        """Take the reader's lease if it is free or expired and the source is not read yet."""
        taken = self._take(
            _taking("""
                l.store_id = :store AND l.shard = :shard
                AND NOT (SELECT read_done FROM etl_rounds r
                         WHERE r.pipeline = l.pipeline AND r.base_url = l.base_url)"""),
            store=READER[0],
            shard=READER[1],
        )
        return taken[0] if taken else None

    def renew(self, held: list[Lease]) -> list[Lease]:
        """Extend the leases still held at their epoch; the others were lost to a takeover."""
        if not held:
            return []
        return self._take(
            sa.text(
                f"UPDATE etl_leases SET expires_at = {_NOW} + :length "
                f"WHERE {KEY} AND holder = :me AND {MATCHING} RETURNING store_id, shard, epoch"
            ),
            **lease_arrays(held),
        )

    def release(self, held: list[Lease]) -> None:
        """Give partitions back at once (their epoch unchanged: the next holder bumps it)."""
        if held:
            with self.engine.begin() as connection:
                connection.execute(
                    sa.text(
                        "UPDATE etl_leases SET holder = NULL, expires_at = 0 "
                        f"WHERE {KEY} AND holder = :me AND {MATCHING}"
                    ),
                    self._params(**lease_arrays(held)),
                )

    def finish_read(self, reader: Lease) -> bool:
        """Mark the round's source read to the end, if `reader` is still the current lease."""
        params = self._params(**lease_arrays([reader]))
        with self.engine.begin() as connection:
            current = connection.execute(
                sa.text(
                    f"SELECT 1 FROM etl_leases WHERE {KEY} AND holder = :me AND {MATCHING} "
                    "FOR UPDATE"
                ),
                params,
            ).first()
            if current is None:
                return False
            connection.execute(
                sa.text(f"UPDATE etl_rounds SET read_done = true WHERE {KEY}"), params
            )
            connection.execute(
                sa.text(
                    "UPDATE etl_leases SET holder = NULL, expires_at = 0 "
                    f"WHERE {KEY} AND {MATCHING}"
                ),
                params,
            )
        return True

    def progress(self) -> Progress:
        """The round as it stands: read or not, pending events per partition, live workers."""
        params = self._params()
        with self.engine.connect() as connection:
            read_done, failed = connection.execute(
                sa.text(f"SELECT read_done, failed FROM etl_rounds WHERE {KEY}"), params
            ).one()
            work = connection.execute(
                sa.text(
                    f"SELECT store_id, shard, count(*) FROM etl_pending WHERE {KEY} "
                    "GROUP BY store_id, shard"
                ),
                params,
            ).all()
            live = connection.execute(
                sa.text(f"SELECT count(*) FROM etl_workers WHERE {KEY} AND expires_at >= {_NOW}"),
                params,
            ).scalar_one()
        return Progress(
            bool(read_done),
            int(failed),
            {(store, int(shard)): int(n) for store, shard, n in work},
            int(live),
        )

    def leave(self) -> None:
        """Drop this worker's heartbeat and give back whatever it still holds."""
        params = self._params()
        with self.engine.begin() as connection:
            connection.execute(
                sa.text(f"DELETE FROM etl_workers WHERE {KEY} AND worker = :me"), params
            )
            connection.execute(
                sa.text(
                    "UPDATE etl_leases SET holder = NULL, expires_at = 0 "
                    f"WHERE {KEY} AND holder = :me"
                ),
                params,
            )

    def _take(self, statement: sa.TextClause, **params: Any) -> list[Lease]:
        with self.engine.begin() as connection:
            rows = connection.execute(statement, self._params(**params)).all()
        return sorted(Lease(store, int(shard), int(epoch)) for store, shard, epoch in rows)


def _taking(condition: str) -> sa.TextClause:
    """Take the free or expired lease rows meeting `condition` (on `l`), skipping any row
    another worker has locked, and bump their epoch: a takeover."""
    return sa.text(f"""
        WITH chosen AS (
            SELECT l.store_id, l.shard FROM etl_leases l
            WHERE l.pipeline = :pipeline AND l.base_url = :base_url
              AND (l.holder IS NULL OR l.expires_at < {_NOW}) AND {condition}
            FOR UPDATE SKIP LOCKED)
        UPDATE etl_leases t SET holder = :me, epoch = t.epoch + 1, expires_at = {_NOW} + :length
        FROM chosen c
        WHERE t.pipeline = :pipeline AND t.base_url = :base_url
          AND t.store_id = c.store_id AND t.shard = c.shard
        RETURNING t.store_id, t.shard, t.epoch""")


def lease_arrays(leases: list[Lease]) -> dict[str, list[Any]]:
    """Leases as the three parallel arrays `MATCHING` unnests."""
    return {
        "stores": [lease.store for lease in leases],
        "shards": [lease.shard for lease in leases],
        "epochs": [lease.epoch for lease in leases],
    }
