"""The diff of a re-run over a backfill that is already delivered.

The events are those of the realistic export's first 1,000,000 rows
(benchmarks/realistic.py): their real ids and payload hashes, as a run records them.
Phase 1 records them as delivered with `record_many` in batches of 50,000
(a SQLite file in a temporary folder). Phase 2 decides, in chunks of 50,000 ids as the
pipeline does, that every one of them is unchanged: `known()` plus comparing hashes.
Target: phase 2 well under a minute on a 2-core machine. Phase 3 measures `record`'s
group commit: 20,000 outcomes awaited by 64 concurrent workers, as the loader does
(the sandbox runs at ~2,500 events/s; the store must keep ahead of it).

    python -m benchmarks.state_diff
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from benchmarks import realistic
from etl.definition import parse_pipeline
from etl.events import Event, Outcome, Status
from etl.extract import open_extractor
from etl.state import Scope, StateStore
from etl.transform import Transformer
from etl.validate import Validator

ROWS = 1_000_000
CHUNK = 50_000
PIPELINE = Scope("bench", "https://api.yotpo.com", "store-bench")
AWAITED = 20_000
WORKERS = 64


def _keys() -> list[tuple[str, str]]:
    """(id, payload hash) of every event the realistic rows give (rejects give none)."""
    pipeline = parse_pipeline(realistic.pipeline(realistic.parquet(ROWS), "bench_state_diff"))
    validator = Validator(pipeline.event)
    transformer = Transformer(pipeline.event, pipeline.destination.store_id)
    keys = []
    for chunk in open_extractor(pipeline.source).chunks(pipeline.mapped_columns(), None):
        batch = transformer.to_batch(validator.split(chunk).valid)
        keys += [(event.id, event.payload_hash) for event in batch.events()]
    return keys


def _events(keys: list[tuple[str, str]], start: int) -> list[Event]:
    return [
        Event(id=event_id, body=b"{}", payload_hash=payload_hash, cursor=start + n)
        for n, (event_id, payload_hash) in enumerate(keys)
    ]


async def _awaited(store: StateStore, events: list[Event]) -> float:
    """Seconds for WORKERS tasks to record `events`, each awaiting its commit before the next."""
    queue = iter(events)

    async def worker() -> None:
        for event in queue:
            await store.record(PIPELINE, 1, Outcome(event, Status.DELIVERED, 1))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return time.perf_counter() - started


def main() -> None:
    keys = _keys()
    delivered, awaited = keys[:-AWAITED], keys[-AWAITED:]
    events = len(delivered)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.db"
        store = StateStore(f"sqlite:///{path}")
        run = store.begin_run(PIPELINE)

        started = time.perf_counter()
        for start in range(0, events, CHUNK):
            batch = _events(delivered[start : start + CHUNK], start)
            store.record_many(PIPELINE, run, (Outcome(e, Status.DELIVERED, 1) for e in batch))
        recorded_s = time.perf_counter() - started

        to_send = 0
        diff_s = 0.0
        for start in range(0, events, CHUNK):
            batch = _events(delivered[start : start + CHUNK], start)  # made outside the timing
            started = time.perf_counter()
            known = store.known(PIPELINE, [e.id for e in batch])
            to_send += sum(known.get(e.id) != (e.payload_hash, Status.DELIVERED) for e in batch)
            diff_s += time.perf_counter() - started
        commits = store.commits
        awaited_s = asyncio.run(_awaited(store, _events(awaited, events)))
        commits = store.commits - commits
        store.close()
        size = sum(p.stat().st_size for p in Path(folder).iterdir())

    assert to_send == 0, f"{to_send} unchanged events were judged changed"
    print(
        f"record_many: {events:,} delivered events in {recorded_s:.1f}s "
        f"({events / recorded_s:,.0f}/s)"
    )
    print(
        f"diff: {events:,} unchanged events judged in {diff_s:.1f}s "
        f"({events / diff_s:,.0f}/s), 0 to send"
    )
    print(
        f"record: {AWAITED:,} outcomes awaited by {WORKERS} workers in {awaited_s:.1f}s "
        f"({AWAITED / awaited_s:,.0f}/s, {commits:,} commits)"
    )
    print(f"state file: {size / 1e6:.0f} MB ({size / events:.0f} bytes/event)")


if __name__ == "__main__":
    main()
