"""Opening a pipeline, and the public entry points of a run (a façade over `etl.runner`).

>>> import etl
>>> pipeline = etl.load_pipeline("pipelines/orders_shipped.yaml")
>>> report = etl.run(pipeline, etl.RunOptions(dry_run=True))
>>> report.exit_code
1
"""

from __future__ import annotations

import os
from typing import Any

from etl.definition import Pipeline, parse_pipeline
from etl.errors import DefinitionError
from etl.extract import open_extractor
from etl.runner.execute import run, run_async, validate_pipeline
from etl.runner.plan import RunOptions

__all__ = ["RunOptions", "load_pipeline", "run", "run_async", "validate_pipeline"]


def load_pipeline(path: str | os.PathLike[str]) -> Pipeline:
    """Parse a pipeline file and check that every mapped column exists in the source."""
    pipeline = parse_pipeline(path)
    extractor = open_extractor(pipeline.source)
    available = set(extractor.columns())
    has = ", ".join(sorted(available))
    missing = [
        (key, f"column {column!r} is not in the source (it has: {has})")
        for column, key in pipeline.column_keys().items()
        if column not in available
    ]
    missing += [
        (f"source.columns.{column}", f"column {column!r} is not in the source (it has: {has})")
        for column in pipeline.source.columns
        if column not in available
    ]
    missing += _unsendable(pipeline, extractor, available)
    if missing:
        raise DefinitionError(pipeline.file, missing)
    return pipeline


def _unsendable(pipeline: Pipeline, extractor: Any, available: set[str]) -> list[tuple[str, str]]:
    """Mapped, undeclared columns of a type JSON cannot carry (Parquet binary, durations)."""
    unsendable = getattr(extractor, "unsendable", None)
    keys = pipeline.column_keys()
    columns = [c for c in keys if c in available and c not in pipeline.source.columns]
    if unsendable is None or not columns:
        return []
    return [
        (
            keys[column],
            f"column {column!r} is of type {kind}, which no JSON value can carry "
            f"(map another column, or declare it in source.columns, e.g. string)",
        )
        for column, kind in unsendable(columns).items()
    ]
