"""`etl sandbox`: the click command that starts the local API emulator (SPEC §8)."""

from __future__ import annotations

from pathlib import Path

import click

from etl import wire
from etl.sandbox.config import SandboxConfig

_DEFAULTS = SandboxConfig()


@click.command(
    epilog="""\b
Example: a flaky, slow store kept in a file, to try a pipeline against:
  etl sandbox --port 8787 --latency-ms 80 --fail-rate 0.05 --drop-rate 0.01 --seed 7 --db sandbox.db
then point the pipeline at it (destination.base_url: http://127.0.0.1:8787,
token: sandbox-token) and read back what arrived:
  curl http://127.0.0.1:8787/_sandbox/stores/STORE_ID/stats"""
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    default=8787,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="0 picks a free port.",
)
@click.option(
    "--rate-limit",
    default=_DEFAULTS.rate_limit,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Requests/second per store; 0 turns the limit off.",
)
@click.option(
    "--burst", type=click.IntRange(min=1), help="Token bucket size [default: the rate, no burst]."
)
@click.option(
    "--latency-ms",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Added to every answer.",
)
@click.option(
    "--latency-jitter-ms",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="+/- uniform jitter.",
)
@click.option(
    "--fail-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Fraction answered 500.",
)
@click.option(
    "--drop-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Fraction whose connection is closed with no answer.",
)
@click.option(
    "--slow-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Fraction answered after --slow-ms more.",
)
@click.option(
    "--slow-ms", default=_DEFAULTS.slow_ms, show_default=True, type=click.FloatRange(min=0)
)
@click.option("--seed", type=int, help="Makes the injected faults reproducible.")
@click.option(
    "--token", default=_DEFAULTS.token, show_default=True, help="The accepted X-Yotpo-Token."
)
@click.option(
    "--secret",
    default=_DEFAULTS.secret,
    show_default=True,
    help="The API secret exchanged for tokens at the access-token endpoint.",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite file keeping the events [default: memory].",
)
@click.option(
    "--path",
    default=wire.DEFAULT_PATH,
    show_default=True,
    help="Path of the custom-event endpoint.",
)
def sandbox_command(host: str, port: int, rate_limit: float, **options: object) -> None:
    """Start a local server that behaves like the Yotpo custom-event API."""
    try:
        config = SandboxConfig(rate_limit=rate_limit or None, **options)  # type: ignore[arg-type]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    from etl.sandbox.server import serve  # uvicorn and Starlette load only for this command

    try:
        serve(config, host, port)
    except OSError as exc:  # the port is taken, or the host is not ours
        raise click.UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
