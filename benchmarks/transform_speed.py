"""Validation + transformation speed over the realistic export's first 1,000,000 rows.

The rows (benchmarks/realistic.py) are read once into memory by the project's extractor
in 50,000-row chunks (so they have the dtypes a run sees); only `Validator.split` and
`Transformer.to_batch` are timed (no I/O), and validation is broken down by column so
the stage that dominates is named.
Target: validate + transform together >= 350,000 rows/s on a 2-core machine, so that
the end-to-end dry run can reach 200,000 rows/s.
"""

from __future__ import annotations

import time
from collections import Counter

from benchmarks import realistic
from etl.definition import parse_pipeline
from etl.extract import open_extractor
from etl.quarantine import REJECT_RULE
from etl.transform import Transformer
from etl.validate import Validator

ROWS = 1_000_000
CHUNK = 50_000
TARGET = 350_000


def main() -> None:
    pipeline = parse_pipeline(realistic.pipeline(realistic.parquet(ROWS), "bench_transform"))
    extractor = open_extractor(pipeline.source.model_copy(update={"chunk_size": CHUNK}))
    chunks = list(extractor.chunks(pipeline.mapped_columns(), None))
    validator = Validator(pipeline.event)
    transformer = Transformer(pipeline.event, pipeline.destination.store_id)
    validating = transforming = 0.0
    events = 0
    rejects: Counter[str] = Counter()
    for chunk in chunks:
        started = time.perf_counter()
        split = validator.split(chunk)
        middle = time.perf_counter()
        events += len(transformer.to_batch(split.valid))
        validating += middle - started
        transforming += time.perf_counter() - middle
        rejects.update(split.rejects[REJECT_RULE])
    rows = sum(len(chunk) for chunk in chunks)
    print(f"validate:  {rows / validating:>10,.0f} rows/s ({validating:.2f}s)")
    print(f"transform: {rows / transforming:>10,.0f} rows/s ({transforming:.2f}s)")
    print(
        f"together:  {rows / (validating + transforming):>10,.0f} rows/s "
        f"(target >= {TARGET:,}); {events:,} events, {rejects.total():,} rejects "
        f"({', '.join(f'{rule} {n:,}' for rule, n in sorted(rejects.items()))})"
    )


if __name__ == "__main__":
    main()
