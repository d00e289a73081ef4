"""The run summary, `--report-json`, masking and the quarantine file."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from etl.load import LoadStats
from etl.quarantine import Quarantine
from etl.redact import mask_email, mask_phone, mask_text
from etl.report import RunReport, print_summary
from etl.runner.plan import Mode


@pytest.mark.parametrize(
    ("mask", "value", "expected"),
    [
        pytest.param(mask_email, "jane.doe+vip@Example.COM", "j***@Example.COM", id="email"),
        pytest.param(mask_email, "not-an-email", "n***", id="email-without-at"),
        pytest.param(mask_phone, "+14155552671", "+1********71", id="phone"),
        pytest.param(mask_phone, "+12", "***", id="short-phone"),
        pytest.param(mask_text, "Zoë", "Z***", id="text"),
    ],
)
def test_masking(mask, value: str, expected: str) -> None:
    assert mask(value) == expected


def test_report_json_has_every_summary_field(tmp_path: Path) -> None:
    report = RunReport(pipeline="orders", run_id=7, extracted=10, valid=8, delivered=7, failed=1)
    report.reject("email", 2)
    report.write_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["rejected"] == 2
    assert data["rejected_by_rule"] == {"email": 2}
    assert {key: data[key] for key in ("extracted", "valid", "delivered", "failed", "run_id")} == {
        "extracted": 10,
        "valid": 8,
        "delivered": 7,
        "failed": 1,
        "run_id": 7,
    }
    for key in (
        "skipped_unchanged",
        "http_retries",
        "http_429",
        "duration_s",
        "requests_per_s",
        "limiter_wait_s",
        "pause_429_s",
    ):
        assert key in data


def test_the_loaders_statistics_reach_the_json_by_their_report_names_in_place() -> None:
    stats = LoadStats(
        requests=12,
        retries=2,
        http_429=1,
        limiter_wait_s=0.5,
        pause_429_s=1.5,
        last_error="HTTP 500",
        paused_until=datetime(2026, 12, 2, 5, tzinfo=UTC),
    )
    data = RunReport(pipeline="orders", written=0, load=stats).to_dict()
    assert "load" not in data
    keys = list(data)
    assert keys[keys.index("written") + 1 : keys.index("written") + 4] == [
        "requests",
        "http_retries",
        "http_429",
    ]
    assert keys[keys.index("prepare_s") + 1 : keys.index("prepare_s") + 3] == [
        "limiter_wait_s",
        "pause_429_s",
    ]
    assert keys[-3:] == ["last_error", "paused_until", "stores"]
    assert [data[key] for key in keys[-3:-1]] == ["HTTP 500", "2026-12-02 05:00:00+00:00"]
    assert (data["requests"], data["http_retries"], data["http_429"]) == (12, 2, 1)
    assert RunReport(pipeline="orders").to_dict()["requests"] == 0  # no loader: zeros


@pytest.mark.parametrize(
    ("mode", "shown", "hidden"),
    [
        pytest.param(Mode.RUN, "HTTP requests", "written (dry run)", id="run"),
        pytest.param(Mode.DRY_RUN, "written (dry run)", "HTTP requests", id="dry-run"),
        pytest.param(Mode.VALIDATE, "extracted", "HTTP requests", id="validate"),
    ],
)
def test_the_summary_shows_the_rows_of_its_mode(mode: Mode, shown: str, hidden: str) -> None:
    out = io.StringIO()
    print_summary(RunReport(pipeline="orders", mode=mode), out)
    assert shown in out.getvalue() and hidden not in out.getvalue()
    assert f"orders: {mode.value} completed" in out.getvalue()


def test_summary_lists_rejects_per_rule() -> None:
    report = RunReport(pipeline="orders", delivered=3)
    report.reject("phone_number", 2)
    out = io.StringIO()
    print_summary(report, out)
    text = out.getvalue()
    assert "rejected: phone_number" in text and "delivered" in text


def test_quarantine_appends_with_a_fixed_header(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path / "rejects" / "1.csv", ["order_id", "email"])
    assert not quarantine.path.exists()
    quarantine.write(
        pd.DataFrame(
            {
                "order_id": ["o-1"],
                "email": ["x@"],
                "reject_rule": ["email"],
                "reject_reason": ["email 'x@' is not a valid address"],
            }
        )
    )
    quarantine.write(
        pd.DataFrame(
            {
                "order_id": ["o-2"],
                "reject_rule": ["api"],
                "reject_reason": ["bad"],
                "event_id": ["e-2"],
            }
        )
    )
    frame = pd.read_csv(quarantine.path, keep_default_na=False)
    assert list(frame.columns) == ["order_id", "email", "reject_rule", "reject_reason", "event_id"]
    assert frame.to_dict("records") == [
        {
            "order_id": "o-1",
            "email": "x@",
            "reject_rule": "email",
            "reject_reason": "email 'x@' is not a valid address",
            "event_id": "",
        },
        {
            "order_id": "o-2",
            "email": "",
            "reject_rule": "api",
            "reject_reason": "bad",
            "event_id": "e-2",
        },
    ]
    assert quarantine.rows == 2


def test_summary_names_the_quarantine_file_in_full() -> None:
    path = "/very/long/folder/name/that/would/not/fit/a/table/cell/.etl/rejects/orders/12.csv"
    report = RunReport(pipeline="orders", quarantine_file=path)
    report.reject("email")
    out = io.StringIO()
    print_summary(report, out)
    assert f"rejected rows with their reasons: {path}\n" in out.getvalue()
