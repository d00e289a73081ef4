"""Everyday CLI habits (issue 11 item 6) and the crash handler (issue 12 item 5)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from etl import crash, redact
from etl.cli import main
from etl.report import RunReport

CSV = (
    "order_id,customer_id,shipped_at\no-1,c-1,2024-03-01T12:30:00Z\no-2,c-2,2024-03-02T12:30:00Z\n"
)


def etl(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def project(folder: Path, name: str = "orders", **destination: Any) -> Path:
    (folder / "orders.csv").write_text(CSV)
    file = folder / f"{name}.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "source": {
                    "type": "csv",
                    "path": "orders.csv",
                    "incremental": {"cursor": "shipped_at"},
                },
                "event": {
                    "source": "shop",
                    "event_name": "order_shipped",
                    "occurred_at": "shipped_at",
                    "id": {"key": ["order_id"]},
                    "customer": {"external_id": "customer_id"},
                },
                "destination": {"store_id": "store-1", "token": "sandbox-token", **destination},
            }
        )
    )
    return file


def test_version() -> None:
    result = etl("--version")
    assert (result.exit_code, result.stdout) == (0, f"etl, version {version('yotpo-events-etl')}\n")


def test_verbose_after_the_subcommand(tmp_path: Path) -> None:
    file = project(tmp_path)
    result = etl("validate", str(file), "-v")
    assert result.exit_code == 0
    assert logging.getLogger().level == logging.DEBUG
    assert etl("validate", str(file)).exit_code == 0
    assert logging.getLogger().level == logging.INFO


@pytest.mark.parametrize("value", ["yesterday", "2024-13-45", "1,5"])
def test_since_until_that_is_not_a_timestamp_or_number_is_a_usage_error(
    tmp_path: Path, value: str
) -> None:
    file = project(tmp_path)
    for option in ("--since", "--until"):
        result = etl("run", str(file), "--dry-run", option, value)
        assert result.exit_code == 2
        assert (
            f"Invalid value for '{option}': {value!r} is neither an ISO 8601 timestamp "
            "(2024-03-01 or 2024-03-01T12:30:00Z) nor a number"
        ) in result.stderr


def test_since_takes_a_timestamp(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = etl(
        "run", str(project(tmp_path)), "--dry-run", "--since", "2024-03-02", "--output", str(out)
    )
    assert result.exit_code == 0
    assert [json.loads(line)["customer"] for line in out.read_text().splitlines()] == [
        {"external_id": "c-2"}
    ]


def test_since_and_until_state_their_format_in_help() -> None:
    text = etl("run", "--help").stdout
    assert "--since TIMESTAMP|NUMBER" in text and "ISO 8601" in text
    assert "Exit codes: 0 every valid row delivered" in text
    assert ".etl/rejects/<pipeline>/<run id>.csv" in text and ".etl/state.db" in text


def test_several_files_run_each_and_exit_with_the_worst(tmp_path: Path) -> None:
    good = project(tmp_path, "good")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsource: {type: excel}\n")
    result = etl("validate", str(good), str(bad), str(good))
    assert result.exit_code == 2
    assert result.stdout.count("good: 2 rows read, 2 valid, 0 rejected") == 2
    assert f"error: {bad}: source.type: Input should be 'csv', 'parquet' or 'sql'" in result.stderr
    assert etl("run", str(good), str(good), "--dry-run").exit_code == 0
    several = etl("run", str(good), str(good), "--dry-run", "--output", str(tmp_path / "o.jsonl"))
    assert several.exit_code == 2
    assert "--output and --report-json take one PIPELINE.yaml at a time" in several.stderr


def test_report_to_json_is_a_string_and_to_dict_a_dict() -> None:
    report = RunReport(pipeline="p", delivered=3)
    report.reject("email", 2)
    assert isinstance(report.to_json(), str)
    assert json.loads(report.to_json()) == report.to_dict()
    assert report.to_dict()["rejected_by_rule"] == {"email": 2}


def test_a_host_application_at_info_sees_one_end_line_and_no_httpx_lines(
    tmp_path: Path, sandbox
) -> None:
    """A fresh interpreter, as an orchestrator would run it: root logger at INFO."""
    server = sandbox(rate_limit=None)
    file = project(tmp_path, base_url=server.base_url)
    code = (
        "import logging, sys, etl\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr,\n"
        "                    format='%(name)s|%(message)s')\n"
        f"report = etl.run(etl.load_pipeline({str(file)!r}), etl.RunOptions(progress=False))\n"
        "print(report.delivered)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, "2\n"), done.stderr
    lines = done.stderr.splitlines()
    assert [line for line in lines if line.startswith("httpx|")] == []
    ends = [line for line in lines if "run completed (exit 0)" in line]
    assert ends == [
        "etl|orders: run completed (exit 0): extracted 2, valid 2, rejected 0, skipped 0, "
        f"delivered 2, failed 0 in {ends[0].rsplit(' in ', 1)[1]}"
    ]


def test_an_internal_error_is_one_line_and_a_masked_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real command of the real group that fails the way a bug would."""
    monkeypatch.chdir(tmp_path)
    redact.register_secret("tok-very-secret-1")

    @click.command("boom")
    def boom() -> None:
        raise KeyError("token tok-very-secret-1 for jane.doe@example.com +14155552671")

    main.add_command(boom)
    try:
        result = etl("boom")
    finally:
        main.commands.pop("boom")
    assert result.exit_code == crash.EXIT_CODE == 3
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    reports = list((tmp_path / ".etl" / "crash").iterdir())
    assert len(reports) == 1
    assert result.stderr == (
        f"error: internal error (KeyError); the details (masked) are in "
        f"{reports[0]}; please attach that file to a bug report\n"
    )
    text = reports[0].read_text()
    assert "Traceback (most recent call last)" in text and "raise KeyError" in text
    assert "token *** for j***@example.com +1********71" in text
    assert "tok-very-secret-1" not in text and "jane.doe" not in text


def test_the_machine_s_state_is_one_line_without_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    @click.command("full")
    def full() -> None:
        raise OSError(28, "No space left on device", "/data/.etl/state.db")

    main.add_command(full)
    try:
        result = etl("full")
    finally:
        main.commands.pop("full")
    assert (result.exit_code, result.stderr) == (
        3,
        "error: No space left on device: /data/.etl/state.db\n",
    )
    assert not (tmp_path / ".etl").exists()


@pytest.mark.parametrize("command", [("status",), ("run", "--limit", "1")])
def test_a_state_folder_that_cannot_exist_is_one_line_exit_3(
    tmp_path: Path, command: tuple
) -> None:
    (tmp_path / "blocker").write_text("a file where the state folder should be\n")
    file = project(tmp_path)
    data = yaml.safe_load(file.read_text())
    data["state"] = "blocker/state.db"
    file.write_text(yaml.safe_dump(data))
    result = etl(command[0], str(file), *command[1:])
    state = tmp_path / "blocker" / "state.db"
    assert (result.exit_code, result.stderr) == (
        3,
        f"error: state store {state}: cannot open: File exists: {tmp_path}/blocker\n",
    )
