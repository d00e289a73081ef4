"""One worker's coordinator (etl/workers.py) in-process, on a real PostgreSQL state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from fleet_helpers import postgres_state

from etl.definition import Workers
from etl.errors import LeaseLost
from etl.events import Event, EventBatch, Outcome, Status
from etl.state import Scope, StateStore
from etl.workers import LeasedWork

SCOPE = Scope("coordinated", "http://api", "store-w")


@pytest.fixture
def url(postgres_engine: object) -> Iterator[str]:
    with postgres_state() as state:
        yield state


def batches(n: int) -> AsyncIterator[EventBatch]:
    async def gen() -> AsyncIterator[EventBatch]:
        yield EventBatch.of(
            [Event(f"e-{i}", f'{{"i": {i}}}'.encode(), store="store-w") for i in range(n)]
        )

    return gen()


def test_a_worker_alone_reads_drains_records_and_ends_the_round(url: str) -> None:
    async def scenario() -> tuple[bool, list[str]]:
        async with LeasedWork(url, SCOPE, 1, Workers(lease=3, shards=2)) as work:
            read = await work.read(batches(5))
            sent = []
            async for event in work.events():
                assert work.may_send(event)
                sent.append(event.id)
                await work.record(Outcome(event, Status.DELIVERED, 1), SCOPE)
            return read, sent

    read, sent = asyncio.run(scenario())
    assert read and sorted(sent) == [f"e-{i}" for i in range(5)]
    store = StateStore(url)
    assert {k: v[1] for k, v in store.known(SCOPE, sent).items()} == dict.fromkeys(
        sent, Status.DELIVERED
    )
    store.close()


def test_past_its_deadline_a_worker_sends_nothing_and_fails_with_lease_lost(url: str) -> None:
    async def scenario() -> tuple[bool, BaseException | None]:
        async with LeasedWork(url, SCOPE, 1, Workers(lease=1, shards=1)) as work:
            await work.read(batches(3))
            feed = aiter(work.events())
            event = await asyncio.wait_for(anext(feed), 30)
            assert work.may_send(event)
            time.sleep(1.0)  # the event loop frozen as by SIGSTOP: CLOCK_MONOTONIC runs on
            allowed = work.may_send(event)
            assert work.lost is not None
            return allowed, work.lost.exception()

    allowed, lost = asyncio.run(scenario())
    assert not allowed
    assert isinstance(lost, LeaseLost) and lost.exit_code == 3
    assert "its leases ran out (1 s) before they could be renewed" in str(lost)
