"""Log set-up for `--log-format text|json` (SPEC §2), and the fields of a progress line.

In json mode every record is one JSON object per line on stderr (python-json-logger),
for log shippers: `time`, `level`, `logger`, `message`, plus what the caller passed as
`extra` (a progress line carries pipeline, store and event counts). Whatever the
format, a filter masks anything shaped like an email address or an E.164 phone number
in the message, a safety net behind the masking done where rows are printed.

    configure("json", verbose=False)
    log.info("orders: read 10", extra={"pipeline": "orders", "read": 10})
    # {"time": "2026-...", "level": "INFO", "logger": "etl", "message": "orders: read 10", ...}
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from etl.redact import mask_in_text

if TYPE_CHECKING:
    from etl.report import ProgressDisplay, RunReport

LOG_FORMATS = ("text", "json")
_json = False


class _MaskPersonalData(logging.Filter):
    """Rewrite the rendered message with emails and phone numbers masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_in_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def configure(log_format: str, *, verbose: bool) -> None:
    """Send every log record to stderr, as text lines or as JSON objects."""
    global _json
    _json = log_format == "json"
    handler = logging.StreamHandler(sys.stderr)
    if _json:
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                datefmt="%Y-%m-%dT%H:%M:%S%z",
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_MaskPersonalData())
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True
    )


def json_logs() -> bool:
    """True when `--log-format json` is on: the CLI then logs what it would print."""
    return _json


def report_fields(report: RunReport) -> dict[str, Any]:
    """The counters a log line about a run carries (never a token: the report holds none)."""
    return {
        "pipeline": report.pipeline,
        "store": report.store,
        "run_id": report.run_id,
        "read": report.extracted,
        "valid": report.valid,
        "rejected": report.rejected,
        "skipped": report.skipped_unchanged,
        "delivered": report.delivered,
        "written": report.written,
        "failed": report.failed,
    }


def progress_fields(display: ProgressDisplay) -> dict[str, Any]:
    """A progress line's fields: the counters, the rate and the ETA."""
    eta = display.eta()
    return {
        **report_fields(display.report),
        "total_rows": display.total_rows(),
        "rate_per_s": round(eta.rate_per_s, 2),
        "eta_s": None if eta.seconds is None else round(eta.seconds, 1),
        "eta_whole_source": eta.whole_source,
    }
