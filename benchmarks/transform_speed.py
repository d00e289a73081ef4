"""Validation + transformation speed over 1,000,000 rows in 50,000-row chunks (issue 3).

Uses the same generated orders and pipeline as `benchmarks/dry_run.py`, read once into
memory, so only `Validator.split` and `Transformer.to_events` are timed (no I/O).
Target: validate + transform together >= 350,000 rows/s on a 2-core machine, so that
the end-to-end dry run can reach 200,000 rows/s.
"""

from __future__ import annotations

import time

import pyarrow.parquet as pq

from benchmarks.dry_run import DATA, make_source, write_pipeline
from etl.definition import parse_pipeline
from etl.transform import Transformer
from etl.validate import Validator

CHUNK = 50_000
TARGET = 350_000


def main() -> None:
    source = DATA / "orders_1m.parquet"
    make_source(source)
    pipeline = parse_pipeline(write_pipeline(DATA))
    frame = pq.read_table(source).to_pandas()
    chunks = [frame.iloc[start:start + CHUNK] for start in range(0, len(frame), CHUNK)]
    validator = Validator(pipeline.event)
    transformer = Transformer(pipeline.event, pipeline.destination.store_id)
    validating = transforming = 0.0
    events = rejects = 0
    for chunk in chunks:
        started = time.perf_counter()
        split = validator.split(chunk)
        middle = time.perf_counter()
        events += len(transformer.to_events(split.valid))
        validating += middle - started
        transforming += time.perf_counter() - middle
        rejects += len(split.rejects)
    rows = len(frame)
    print(f"validate:  {rows / validating:>10,.0f} rows/s ({validating:.2f}s)")
    print(f"transform: {rows / transforming:>10,.0f} rows/s ({transforming:.2f}s)")
    print(f"together:  {rows / (validating + transforming):>10,.0f} rows/s "
          f"(target >= {TARGET:,}); {events:,} events, {rejects:,} rejects")


if __name__ == "__main__":
    main()
