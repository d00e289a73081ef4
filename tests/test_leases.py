"""Leases, the round and the pending queue on a real PostgreSQL state (SPEC §11)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fleet_helpers import postgres_state

from etl.events import Event, Outcome, Status
from etl.state import Scope, StateStore
from etl.state.leases import READER, Lease, LeaseBoard
from etl.state.queue import LEASE, WorkQueue
from etl.state.store import outcome_row

SCOPE = Scope("leased", "http://api", "store-a")
LEASE_S = 1.0


@pytest.fixture
def engine(postgres_engine: object) -> Iterator[sa.Engine]:
    with postgres_state() as url:
        engine = sa.create_engine(url)
        yield engine
        engine.dispose()


def board(engine: sa.Engine, worker: str) -> LeaseBoard:
    return LeaseBoard(engine, SCOPE.pipeline, SCOPE.base_url, worker, LEASE_S)


def queue(engine: sa.Engine, worker: str, shards: int = 4) -> WorkQueue:
    return WorkQueue(engine, SCOPE.pipeline, SCOPE.base_url, worker, shards)


def two_workers_with_work(engine: sa.Engine, n: int) -> tuple[LeaseBoard, LeaseBoard]:
    """Workers a and b in one round; a holds the reader lease and enqueued `n` events."""
    a, b = board(engine, "a"), board(engine, "b")
    a.join()
    b.join()
    reader = a.acquire_reader()
    assert reader is not None
    assert queue(engine, "a").enqueue(reader, events(n))
    return a, b


def events(n: int, version: int = 0) -> list[tuple[str, Event]]:
    return [
        ("store-a", Event(f"e-{i}", f'{{"i": {i}, "v": {version}}}'.encode(), cursor=i))
        for i in range(n)
    ]


def fenced(lease: Lease, event: Event, status: Status = Status.DELIVERED) -> dict[str, object]:
    row = outcome_row(SCOPE, 1, Outcome(event, status, 1))
    return {**row, LEASE: lease}


def test_only_one_worker_holds_the_reader_lease_until_it_expires(engine: sa.Engine) -> None:
    a, b = board(engine, "a"), board(engine, "b")
    assert (a.join(), b.join()) == (1, 1)
    reader = a.acquire_reader()
    assert reader == Lease(*READER, epoch=1)
    assert b.acquire_reader() is None
    time.sleep(LEASE_S + 0.2)
    assert b.acquire_reader() == Lease(*READER, epoch=2)  # a takeover bumps the epoch
    assert a.renew([reader]) == []  # a's epoch is gone: it lost the lease


def test_partitions_with_work_are_split_between_workers_without_overlap(
    engine: sa.Engine,
) -> None:
    a, b = two_workers_with_work(engine, 40)
    first, second = a.acquire(2), b.acquire(10)
    assert len(first) == 2 and len(second) == 2  # four shards hold work
    assert not {x.partition for x in first} & {x.partition for x in second}
    assert a.acquire(10) == []  # every partition is held
    assert sum(a.progress().work.values()) == 40


def test_a_fenced_outcome_of_a_lost_lease_is_refused_and_the_event_stays_pending(
    engine: sa.Engine,
) -> None:
    a, b = two_workers_with_work(engine, 1)
    [held] = a.acquire(1)
    [(_, event)] = queue(engine, "a").take(held, 0, 10)
    time.sleep(LEASE_S + 0.2)
    [taken] = b.acquire(1)
    assert taken.epoch == held.epoch + 1
    assert queue(engine, "a").record([fenced(held, event)]) == 1  # the stale holder: refused
    store = StateStore(str(engine.url.render_as_string(hide_password=False)))
    assert store.known(SCOPE, [event.id]) == {}
    assert queue(engine, "b").record([fenced(taken, event)]) == 0
    assert store.known(SCOPE, [event.id]) == {event.id: (event.payload_hash, Status.DELIVERED)}
    store.close()
    assert a.progress().work == {}


def test_a_changed_body_replaces_the_pending_one_and_goes_to_the_back(engine: sa.Engine) -> None:
    a = board(engine, "a")
    a.join()
    reader = a.acquire_reader()
    assert reader is not None
    work = queue(engine, "a", shards=1)
    assert work.enqueue(reader, events(3))
    assert work.enqueue(reader, events(3)[1:2])  # unchanged: stays where it is
    assert work.enqueue(reader, events(1, version=1))  # changed: replaced, to the back
    [held] = a.acquire(1)
    taken = work.take(held, 0, 10)
    assert [e.id for _, e in taken] == ["e-1", "e-2", "e-0"]
    assert taken[-1][1].body == b'{"i": 0, "v": 1}'
    assert [e.cursor for _, e in taken] == [1, 2, 0]
    # Sent with the old body while the reader replaced it: it stays pending, to be sent again.
    old = events(1)[0][1]
    assert work.record([fenced(held, old)]) == 0
    assert a.progress().work == {("store-a", 0): 3}


def test_a_stale_reader_cannot_enqueue_nor_finish_the_read(engine: sa.Engine) -> None:
    a, b = board(engine, "a"), board(engine, "b")
    a.join()
    b.join()
    stale = a.acquire_reader()
    assert stale is not None
    time.sleep(LEASE_S + 0.2)
    fresh = b.acquire_reader()
    assert fresh is not None
    assert not queue(engine, "a").enqueue(stale, events(2))
    assert not a.finish_read(stale)
    assert b.finish_read(fresh)
    progress = a.progress()
    assert (progress.read_done, progress.finished) == (True, True)


def test_a_new_round_starts_only_when_no_other_worker_is_alive(engine: sa.Engine) -> None:
    a, b = board(engine, "a"), board(engine, "b")
    a.join()
    reader = a.acquire_reader()
    assert reader is not None and a.finish_read(reader)
    assert b.join() == 1  # a is alive: b joins its round, already read
    assert b.acquire_reader() is None
    a.leave()
    b.leave()
    assert a.join() == 2  # nobody alive and the last round was read: a new one
    assert a.acquire_reader() is not None
    assert a.progress().live_workers == 1


def test_failed_outcomes_are_counted_for_the_round(engine: sa.Engine) -> None:
    a = board(engine, "a")
    a.join()
    reader = a.acquire_reader()
    assert reader is not None
    work = queue(engine, "a", shards=1)
    assert work.enqueue(reader, events(2))
    [held] = a.acquire(1)
    rows = [fenced(held, e, Status.FAILED) for _, e in work.take(held, 0, 10)]
    assert work.record(rows) == 0
    assert a.progress().failed == 2
    assert a.progress().work == {}
