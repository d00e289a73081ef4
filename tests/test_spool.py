"""A store's Feed (etl/load/spool.py): bounded memory, events spilled to disk, order kept."""

from __future__ import annotations

import asyncio
from pathlib import Path

from etl.events import Event
from etl.load.spool import SPILL_BATCH, Feed


def event(n: int) -> Event:
    return Event(f"id-{n}", b'{"n":%d}' % n, None, n, "shop-a")


def test_events_beyond_the_memory_depth_go_to_disk_and_come_back_in_order(tmp_path: Path) -> None:
    spool = tmp_path / "a.spool"
    feed = Feed(depth=8, spool=spool)
    total = 8 + 3 * SPILL_BATCH + 5
    for n in range(total):
        feed.put(event(n))
    assert feed.held == 8 + 5  # the memory part and the batch not yet written
    assert feed.spilled == total - 8
    assert spool.stat().st_size > 0
    feed.close()

    async def drain() -> list[Event]:
        return [item async for item in feed]

    got = asyncio.run(drain())
    assert [e.id for e in got] == [f"id-{n}" for n in range(total)]
    assert [(e.cursor, e.store) for e in got[-2:]] == [(total - 2, "shop-a"), (total - 1, "shop-a")]
    assert got[100].body == b'{"n":100}'
    assert not spool.exists()  # read back to the end: the file is gone


def test_new_events_queue_behind_spilled_ones_while_a_consumer_takes(tmp_path: Path) -> None:
    feed = Feed(depth=2, spool=tmp_path / "b.spool")

    async def scenario() -> list[str]:
        taken: list[str] = []
        for n in range(2 + SPILL_BATCH):
            feed.put(event(n))
        taken += [(await anext(feed)).id for _ in range(3)]
        for n in range(2 + SPILL_BATCH, 2 + SPILL_BATCH + 4):
            feed.put(event(n))
        feed.close()
        taken += [item.id async for item in feed]
        return taken

    assert asyncio.run(scenario()) == [f"id-{n}" for n in range(2 + SPILL_BATCH + 4)]


def test_discarding_an_aborted_store_counts_what_it_held(tmp_path: Path) -> None:
    feed = Feed(depth=4, spool=tmp_path / "c.spool")
    for n in range(4 + SPILL_BATCH + 1):
        feed.put(event(n))
    assert feed.discard() == 4 + SPILL_BATCH + 1
    assert not (tmp_path / "c.spool").exists()
