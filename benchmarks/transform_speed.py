"""Validation + transformation speed over 1,000,000 rows in 50,000-row chunks (issue 3).

Uses the same generated orders and pipeline as `benchmarks/dry_run.py`, read once into
memory by the project's extractor (so the chunks have the dtypes a run sees), and times
only `Validator.split` and `Transformer.to_batch` (no I/O).
Target: validate + transform together >= 350,000 rows/s on a 2-core machine, so that
the end-to-end dry run can reach 200,000 rows/s.
"""

from __future__ import annotations

import time

from benchmarks.dry_run import DATA, make_source, write_pipeline
from etl.definition import parse_pipeline
from etl.extract import open_extractor
from etl.transform import Transformer
from etl.validate import Validator

CHUNK = 50_000
TARGET = 350_000


def main() -> None:
    source = DATA / "orders_1m.parquet"
    make_source(source)
    pipeline = parse_pipeline(write_pipeline(DATA))
    extractor = open_extractor(pipeline.source.model_copy(update={"chunk_size": CHUNK}))
    chunks = list(extractor.chunks(pipeline.mapped_columns(), None))
    validator = Validator(pipeline.event)
    transformer = Transformer(pipeline.event, pipeline.destination.store_id)
    validating = transforming = 0.0
    events = rejects = 0
    for chunk in chunks:
        started = time.perf_counter()
        split = validator.split(chunk)
        middle = time.perf_counter()
        events += len(transformer.to_batch(split.valid))
        validating += middle - started
        transforming += time.perf_counter() - middle
        rejects += len(split.rejects)
    rows = sum(len(chunk) for chunk in chunks)
    print(f"validate:  {rows / validating:>10,.0f} rows/s ({validating:.2f}s)")
    print(f"transform: {rows / transforming:>10,.0f} rows/s ({transforming:.2f}s)")
    print(
        f"together:  {rows / (validating + transforming):>10,.0f} rows/s "
        f"(target >= {TARGET:,}); {events:,} events, {rejects:,} rejects"
    )


if __name__ == "__main__":
    main()
