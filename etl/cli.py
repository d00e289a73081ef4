"""The `etl` command: a thin click layer over the library (SPEC §2).

It parses options, calls `etl.pipeline`, prints, and maps errors to exit codes:
0 all delivered, 1 some rows rejected or failed, 2 usage or definition error,
3 run aborted, 130 interrupted.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from functools import partial, wraps
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from etl.definition import parse_pipeline
from etl.errors import DefinitionError, EtlError, RunInterrupted
from etl.logs import LOG_FORMATS, json_logs
from etl.logs import configure as configure_logs
from etl.memory import bound_arrow_memory, bound_malloc
from etl.partition import Partition, not_mine
from etl.pipeline import RunOptions, load_pipeline, run, validate_pipeline
from etl.report import RunReport, print_summary
from etl.sandbox.command import sandbox_command
from etl.watch import running_line

PIPELINE = click.argument("pipeline_file", metavar="PIPELINE.yaml", type=click.Path(dir_okay=False))
PIPELINES = click.argument(
    "pipeline_files",
    metavar="PIPELINE.yaml...",
    nargs=-1,
    required=True,
    type=click.Path(dir_okay=False),
)


def _configure_logging(verbose: bool, log_format: str | None = None) -> None:
    # -v after the subcommand comes after the group's set-up: it keeps the group's format.
    configure_logs(log_format or ("json" if json_logs() else "text"), verbose=verbose)
    # One line per request would drown the progress lines of a million-event run.
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose else logging.WARNING)


def _verbose(_ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        _configure_logging(True)


VERBOSE = click.option(
    "-v",
    "--verbose",
    is_flag=True,
    expose_value=False,
    callback=_verbose,
    help="Log debug details (never tokens or unmasked PII).",
)


def _outcome(command: Callable[[], int]) -> int:
    """Run one command; our errors become one-line messages and SPEC §2 exit codes."""
    try:
        return command()
    except DefinitionError as exc:
        for line in str(exc).splitlines():
            _error(line)
        return exc.exit_code
    except EtlError as exc:
        if exc.report is not None:
            _summary(exc.report)
        _error(str(exc))
        return exc.exit_code


def _error(line: str) -> None:
    """`error: ...` on stderr; a level-ERROR JSON line with `--log-format json`."""
    if json_logs():
        logging.getLogger("etl").error("error: %s", line)
    else:
        click.echo(f"error: {line}", err=True)


def _summary(report: RunReport) -> None:
    """The end-of-run summary: a table, or one JSON log line with `--log-format json`."""
    if json_logs():
        logging.getLogger("etl").info(
            "%s: %s %s",
            report.pipeline,
            report.mode,
            report.outcome,
            extra={"summary": report.to_dict()},
        )
    else:
        print_summary(report)


def _exits_cleanly(command: Callable[..., int]) -> Callable[..., None]:
    """Exit with the command's SPEC §2 code, never a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        sys.exit(_outcome(lambda: command(*args, **kwargs)))

    return wrapper


def _each_file(command: Callable[..., int]) -> Callable[..., None]:
    """Run the command for every PIPELINE.yaml given; exit with the worst code."""

    @wraps(command)
    def wrapper(pipeline_files: tuple[str, ...], **kwargs: Any) -> None:
        worst = 0
        for file in pipeline_files:
            code = _outcome(partial(command, file, **kwargs))
            worst = max(worst, code)
            if code == RunInterrupted.exit_code:
                break  # the user asked to stop: the remaining files wait for the next run
        sys.exit(worst)

    return wrapper


def _timestamp_or_number(
    _ctx: click.Context, param: click.Parameter, value: str | None
) -> str | None:
    """--since/--until: an ISO 8601 date or timestamp, or a number; else a usage error."""
    if value is None:
        return value
    try:
        float(value)
        return value
    except ValueError:
        pass
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither an ISO 8601 timestamp (2024-03-01 or 2024-03-01T12:30:00Z) "
            "nor a number",
            param=param,
        ) from None
    return value


class _Group(click.Group):
    """The `etl` group: an error nobody planned for is one line and exit 3, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(RunInterrupted.exit_code)
        except Exception as exc:  # the last line of defence, by design
            from etl import crash

            try:
                line = crash.describe(exc)
            except Exception:  # even the report failed: still one line
                line = f"internal error ({type(exc).__name__})"
            click.echo(f"error: {line}", err=True)
            ctx.exit(crash.EXIT_CODE)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="yotpo-events-etl", prog_name="etl")
@click.option(
    "-v", "--verbose", is_flag=True, help="Log debug details (never tokens or unmasked PII)."
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    help="json: every log, progress and summary line as one JSON object on stderr.",
)
def main(verbose: bool, log_format: str) -> None:
    """Backfill and sync historical customer events into Yotpo.

    \b
    Examples:
      etl validate pipelines/orders_shipped.yaml
      etl run pipelines/orders_shipped.yaml --dry-run --output out.jsonl
      etl run pipelines/orders_shipped.yaml --report-json report.json
      etl status pipelines/orders_shipped.yaml
      etl report pipelines/orders_shipped.yaml --html report.html
      etl sandbox --port 8787
      etl init sample_data/orders_shipped.csv
    """
    _configure_logging(verbose, log_format)
    # What the imports made lives as long as the process: out of the collector's sight,
    # its full passes (during the run, and several at exit) stop walking 130,000 objects.
    gc.freeze()
    bound_arrow_memory()
    bound_malloc()


def _partition(context: click.Context, parameter: click.Parameter, value: str | None) -> Any:
    try:
        return None if value is None else Partition.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


_RUN_EPILOG = """\b
Exit codes: 0 every valid row delivered; 1 completed, some rows rejected or failed;
2 usage or definition error; 3 aborted (token refused, source or API unreachable,
full disk); 130 interrupted (state committed). With several files: the worst.
\b
Written beside the pipeline file: state in .etl/state.db (or the `state:` key),
rejected rows in .etl/rejects/<pipeline>/<run id>.csv."""


@main.command("run", epilog=_RUN_EPILOG)
@PIPELINES
@VERBOSE
@click.option(
    "--dry-run", is_flag=True, help="Do everything but HTTP; nothing is written to state."
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --dry-run: write the bodies that would be sent, one JSON per line.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Read at most N source rows.")
@click.option(
    "--since",
    callback=_timestamp_or_number,
    metavar="TIMESTAMP|NUMBER",
    help="Incremental: only rows whose cursor is greater than this (overrides the "
    "watermark). ISO 8601 (2024-03-01, 2024-03-01T12:30:00Z) or a number.",
)
@click.option(
    "--until",
    callback=_timestamp_or_number,
    metavar="TIMESTAMP|NUMBER",
    help="Incremental: only rows whose cursor is at most this; same format as --since.",
)
@click.option("--full-refresh", is_flag=True, help="Ignore state: resend every event.")
@click.option(
    "--retry-rejected",
    is_flag=True,
    help="Resend the events the API rejected before (after you fixed the cause), first.",
)
@click.option(
    "--report-json",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the run summary as JSON to this path.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    metavar="N",
    help="Serve Prometheus metrics on http://HOST:N/metrics while the run lasts.",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics server binds (0.0.0.0 to scrape from another pod).",
)
@click.option(
    "--progress-interval",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between progress log lines when not on a terminal.",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="With --dry-run over CSV/Parquet: validate and transform in N forked processes "
    "(faster on N cores; each holds its own chunk in memory).",
)
@click.option(
    "--partition",
    metavar="K/N",
    callback=_partition,
    help="Take only the stores whose hash mod N is K (e.g. a Job's completion index).",
)
@_each_file
def run_command(
    pipeline_file: str,
    dry_run: bool,
    output: Path | None,
    limit: int | None,
    since: str | None,
    until: str | None,
    full_refresh: bool,
    retry_rejected: bool,
    report_json: Path | None,
    metrics_port: int | None,
    metrics_host: str,
    progress_interval: float,
    processes: int,
    partition: Partition | None,
) -> int:
    """Extract, validate, transform and load one or more pipelines.

    Resumable: rerun after any stop and it continues; unchanged events are skipped.

    \b
    Example:
      etl run pipelines/orders_shipped.yaml --limit 1000 --report-json report.json
    """
    if output is not None and not dry_run:
        raise click.UsageError("--output goes with --dry-run")
    if len(click.get_current_context().params["pipeline_files"]) > 1 and (output or report_json):
        raise click.UsageError("--output and --report-json take one PIPELINE.yaml at a time")
    if partition is not None and (skip := not_mine(parse_pipeline(pipeline_file), partition)):
        click.echo(skip)
        return 0
    pipeline = load_pipeline(pipeline_file)
    options = RunOptions(
        dry_run=dry_run,
        output=output,
        limit=limit,
        since=since,
        until=until,
        full_refresh=full_refresh,
        retry_rejected=retry_rejected,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        progress_interval=progress_interval,
        progress=False if json_logs() else None,
        stores=partition,
        processes=processes,
    )
    try:
        report = run(pipeline, options)
    except EtlError as exc:
        if report_json is not None and exc.report is not None:
            exc.report.write_json(report_json)
        raise
    _summary(report)
    if report_json is not None:
        report.write_json(report_json)
    return report.exit_code


@main.command("validate")
@PIPELINES
@VERBOSE
@_each_file
def validate_command(pipeline_file: str) -> int:
    """Check every row against the API's rules; write rejects to the quarantine file.

    Prints every mapped column's type as read (declared or inferred), the JSON type it is
    sent as and its null count, then the rejects by rule. Needs no destination
    credentials. Exits 0 when every row is valid, 1 when some were rejected, 2 for a
    definition error (with several files: the worst).

    \b
    Example:
      etl validate pipelines/orders_shipped.yaml
    """
    report, examples = validate_pipeline(load_pipeline(pipeline_file))
    console = Console(file=sys.stdout, highlight=False)
    console.print(
        f"{report.pipeline}: {report.extracted:,} rows read, {report.valid:,} valid, "
        f"{report.rejected:,} rejected"
    )
    types = Table("column", "read as", "sent as (JSON)", "nulls", title="column types")
    for column in report.columns:
        how = "declared" if column["declared"] else "inferred"
        types.add_row(
            column["column"],
            f"{column['read_as']} ({how})",
            column["sent_as"],
            f"{column['nulls']:,}",
        )
    console.print(types)
    if report.rejected:
        table = Table("rule", "rows", "examples (masked)")
        for rule, count in report.rejected_by_rule.most_common():
            table.add_row(rule, f"{count:,}", "\n".join(examples.get(rule, [])))
        console.print(table)
        console.print(f"quarantine file: {report.quarantine_file}")
    return report.exit_code


@main.command("status")
@PIPELINE
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON document.")
@VERBOSE
@_exits_cleanly
def status_command(pipeline_file: str, as_json: bool) -> int:
    """Show what the state store knows: runs, and per destination (base URL and store)
    the totals per status, watermark and last errors (emails and phones masked).

    Needs no credentials. Exits 3 when the state store cannot be read.

    \b
    Example:
      etl status pipelines/orders_shipped.yaml --json
    """
    from etl.state.status import status  # SQLAlchemy: a fifth of the start-up, only where used

    report = status(parse_pipeline(pipeline_file))
    if as_json:
        click.echo(report.to_json())
        return 0
    console = Console(file=sys.stdout, highlight=False)
    console.print(f"{report.pipeline}: events {_totals(report.totals)}")
    for destination in report.destinations:
        console.print(
            f"  {destination.base_url or '(no destination)'} store "
            f"{destination.store_id or '-'}: events {_totals(destination.totals)}; "
            f"watermark {destination.watermark}"
        )
    for line in filter(None, (running_line(record.summary or {}) for record in report.runs)):
        console.print(line)
    runs = Table(
        "run",
        "store",
        "started",
        "ended",
        "exit",
        "extracted",
        "delivered",
        "rejected",
        "failed",
        "skipped",
        "pending",
        title="recent runs",
    )
    for record in report.runs:
        s = record.summary or {}
        runs.add_row(
            str(record.id),
            record.store_id or "",
            f"{record.started_at:%Y-%m-%d %H:%M:%S}",
            f"{record.ended_at:%Y-%m-%d %H:%M:%S}" if record.ended_at else "running / killed",
            "" if record.exit_code is None else str(record.exit_code),
            *(
                str(s.get(key, ""))
                for key in ("extracted", "delivered", "rejected", "failed", "skipped_unchanged")
            ),
            str(_pending(s)),
        )
    console.print(runs)
    errors = Table("store", "event id", "error (masked)", "when", title="last errors")
    for destination in report.destinations:
        for event_id, error, when in destination.last_errors:
            errors.add_row(destination.store_id, event_id, error, f"{when:%Y-%m-%d %H:%M:%S}")
    if errors.row_count:
        console.print(errors)
    return 0


@main.command("report")
@PIPELINE
@click.option(
    "--html",
    "html_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write one self-contained HTML page (opens offline) to this path.",
)
@VERBOSE
@_exits_cleanly
def report_command(pipeline_file: str, html_file: Path) -> int:
    """Write an offline HTML report from the state store: runs, throughput, rejects, ETA.

    \b
    Example:
      etl report pipelines/orders_shipped.yaml --html report.html
    """
    from etl.history import load_history
    from etl.html_report import write_report
    from etl.state import StateStore

    pipeline = parse_pipeline(pipeline_file)
    store = StateStore(pipeline.state_url)
    try:
        customer = pipeline.event.customer
        history = load_history(
            store, pipeline.name, email=customer.email, phone=customer.phone_number
        )
    finally:
        store.close()
    size = write_report(history, html_file)
    click.echo(f"{html_file}: {len(history.runs)} runs, {size / 1024:,.0f} KiB", err=True)
    return 0


def _totals(totals: dict[Any, int]) -> str:
    return ", ".join(f"{status.value} {count:,}" for status, count in totals.items()) or "none"


def _pending(summary: dict[str, Any]) -> int | str:
    """Valid events a run read but neither sent nor skipped (it was stopped or limited)."""
    if not summary:
        return ""
    done = sum(summary.get(k, 0) for k in ("skipped_unchanged", "delivered", "failed"))
    done += summary.get("rejected_by_rule", {}).get("api", 0)
    pending: int = max(summary.get("valid", 0) + summary.get("retried_from_last_run", 0) - done, 0)
    return pending


@main.command("init")
@click.argument("source", metavar="SOURCE")
@click.option("--table", help="SQL source: the table to read.")
@click.option("--query", help="SQL source: the query to read (instead of --table).")
@click.option("--name", help="The pipeline's name [default: from the file or table].")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the pipeline [default: NAME.yaml here].",
)
@click.option("--force", is_flag=True, help="Overwrite --output if it exists.")
@VERBOSE
@_exits_cleanly
def init_command(
    source: str,
    table: str | None,
    query: str | None,
    name: str | None,
    output: Path | None,
    force: bool,
) -> int:
    """Write a starter pipeline for a CSV/Parquet path or a SQL URL (with --table or --query).

    Every column is listed, the mapping is guessed from names and types, each guess
    commented. Check the guesses, then `etl validate` the file.

    \b
    Examples:
      etl init sample_data/orders_shipped.csv --output pipelines/my_orders.yaml
      etl init postgresql://localhost/shop --table orders
    """
    from etl.scaffold import scaffold

    target = output or Path(f"{name or 'pipeline'}.yaml")
    if target.exists() and not force:
        raise click.UsageError(f"{target} exists; give --force to overwrite it")
    text = scaffold(source, target, table=table, query=query, name=name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    click.echo(
        f"wrote {target}; check the guesses (comments), then: etl validate {target}", err=True
    )
    return 0


main.add_command(sandbox_command, "sandbox")
