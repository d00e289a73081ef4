"""A pipeline file as a Dagster asset, one static partition per store (extra `[dagster]`).

Dagster schedules, retries and shows history; the asset only calls `etl.run`, so a
materialisation behaves exactly as `etl run` does (state, resume, diffing):

    # definitions.py
    import dagster as dg
    from etl.integrations.dagster import pipeline_asset

    orders = pipeline_asset("pipelines/orders_shipped.yaml")
    defs = dg.Definitions(assets=[orders])

Partitions are the pipeline's stores: the one constant `destination.store_id`, or, when
the rows name their stores (`store_id: {column: ...}`, SPEC §10), the stores of its
`destination.credentials` file; pass `stores=[...]` to declare them yourself (a
`token_file` folder lists none). A materialisation of a store of such a pipeline reads
the source and sends only that store's rows, with its own runs, watermark and run lock,
so different stores materialise at the same time and the same store only once at a
time (on a SQLite state the second is refused: a Failure). A run that aborts (exit 3) raises
`dagster.Failure` carrying the summary; every materialisation carries the report's
counts as metadata. Exit 1 (some rows rejected or failed) still materialises: the
counts say how many, and the failed ones are retried by the next materialisation.
"""

# No `from __future__ import annotations`: Dagster inspects the context annotation itself.
import io
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import dagster as dg

from etl.definition import Pipeline, parse_pipeline
from etl.errors import AbortError
from etl.partition import OneStore
from etl.pipeline import RunOptions, load_pipeline, run
from etl.report import RunReport, print_summary
from etl.store_credentials import StoreCredentials

#: The report's fields attached to every materialisation, in this order.
METADATA_FIELDS = (
    "exit_code",
    "outcome",
    "extracted",
    "valid",
    "rejected",
    "skipped_unchanged",
    "retried_from_last_run",
    "delivered",
    "failed",
    "requests",
    "http_retries",
    "http_429",
    "duration_s",
    "requests_per_s",
)


def pipeline_stores(pipeline: Pipeline) -> list[str]:
    """The stores a pipeline sends to: its partitions (none while its store id is unset,
    nor for a per-row store column without a credentials file)."""
    destination = pipeline.destination
    if destination.store_column is not None:
        if destination.credentials is None:
            return []
        return sorted(StoreCredentials(destination, pipeline.file).allow_list or ())
    store = destination.store_id
    return [store] if isinstance(store, str) and store else []


def pipeline_asset(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    stores: Sequence[str] | None = None,
    options: RunOptions | None = None,
    group_name: str | None = None,
) -> dg.AssetsDefinition:
    """An asset named after the pipeline (or `name`), partitioned by store, that runs it.

    The file is parsed here only to name the asset and find its stores (so its
    `${VAR}`s must be set where the code location loads); it is parsed again, fresh,
    at every materialisation.
    """
    file = Path(path).resolve()
    pipeline = parse_pipeline(file) if name is None or stores is None else None
    asset_name = name or (pipeline.name if pipeline else file.stem)
    keys = (
        list(stores or ()) if stores is not None or pipeline is None else pipeline_stores(pipeline)
    )

    @dg.asset(
        name=asset_name,
        partitions_def=dg.StaticPartitionsDefinition(keys),
        group_name=group_name,
        description=f"Events of {file.name} delivered to Yotpo, one partition per store.",
    )
    def materialise(context: dg.AssetExecutionContext) -> dg.MaterializeResult[None]:
        return materialise_store(
            file,
            context.partition_key,
            options or RunOptions(progress=False),
            keys if stores is not None else None,
        )

    return materialise


def materialise_store(
    file: Path, store: str, options: RunOptions, stores: Sequence[str] | None = None
) -> dg.MaterializeResult[None]:
    """Run the pipeline for `store` (one of `stores`, by default the pipeline's own);
    Failure (with the summary) if the run aborted."""
    pipeline = load_pipeline(file)
    known = list(stores) if stores is not None else pipeline_stores(pipeline)
    if store not in known:
        raise dg.Failure(
            description=f"{file}: partition {store!r} is not a store of this pipeline "
            f"(it sends to {', '.join(known)})"
        )
    if pipeline.destination.store_column is not None:
        options = replace(options, stores=OneStore(store))
    elif store != pipeline.destination.store_id:
        raise dg.Failure(
            description=f"{file}: sends to store {pipeline.destination.store_id!r} "
            f"only, not to partition {store!r}"
        )
    try:
        report = run(pipeline, options)
    except AbortError as exc:
        report = exc.report  # None when the run was refused before it began (state held)
        raise dg.Failure(
            description=f"{exc}\n\n{summary_text(report)}" if report else str(exc),
            metadata=report_metadata(report) if report else {"exit_code": exc.exit_code},
        ) from None
    return dg.MaterializeResult(metadata=report_metadata(report))


def report_metadata(report: RunReport) -> dict[str, int | float | str]:
    """The counts Dagster shows next to a materialisation."""
    data = report.to_dict()
    metadata = {key: data[key] for key in METADATA_FIELDS}
    metadata.update({f"rejected_{rule}": n for rule, n in sorted(data["rejected_by_rule"].items())})
    return metadata


def summary_text(report: RunReport) -> str:
    """The end-of-run table as plain text, for a Failure's description."""
    out = io.StringIO()
    print_summary(report, out)
    return out.getvalue()
