"""yotpo-events-etl: backfill and sync historical customer events into Yotpo.

The Python API for orchestrators (Airflow, Dagster, cron wrappers); the `etl`
command is a thin layer over it.

    >>> import etl
    >>> pipeline = etl.load_pipeline("pipelines/orders_shipped.yaml")
    >>> report = etl.run(pipeline, etl.RunOptions(limit=100))
    >>> report.delivered, report.exit_code

Names are imported lazily so that light entry points (the sandbox server) do not
pay for pandas and pandera at start-up.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AbortError": "etl.errors",
    "AuthError": "etl.errors",
    "DefinitionError": "etl.errors",
    "EtlError": "etl.errors",
    "Pipeline": "etl.definition",
    "RunInterrupted": "etl.errors",
    "RunOptions": "etl.pipeline",
    "RunReport": "etl.report",
    "SourceError": "etl.errors",
    "StateError": "etl.errors",
    "StatusReport": "etl.state.status",
    "TooManyFailures": "etl.errors",
    "load_pipeline": "etl.pipeline",
    "run": "etl.pipeline",
    "run_async": "etl.pipeline",
    "status": "etl.state.status",
    "validate_pipeline": "etl.pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'etl' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
