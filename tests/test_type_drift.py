"""Type drift across runs (SPEC §6): property JSON types listed when they change; an id key
column that changes type stops the run before anything is sent. Real CLI, real sandbox."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
from test_run_end_to_end import STORE, Project


def orders(ids: list[Any], totals: list[Any] | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": ids,
            "customer_id": [f"c-{i}" for i in range(len(ids))],
            "shipped_at": ["2024-03-01T12:30:00Z"] * len(ids),
            "order_total": totals if totals is not None else [12.5] * len(ids),
        }
    )


def folder_source(**extra: Any) -> dict[str, Any]:
    return {"type": "csv", "path": "orders", "chunk_size": 20, **extra}


def test_a_key_column_turning_to_text_stops_before_sending_and_a_declaration_keeps_ids(
    tmp_path: Path, sandbox
) -> None:
    server = sandbox(rate_limit=None)
    (tmp_path / "orders").mkdir()
    orders(list(range(1000, 1050))).to_csv(tmp_path / "orders" / "a.csv", index=False)
    project = Project(tmp_path, server.base_url, server.token, folder_source())
    first = project.run()
    assert first.returncode == 0, first.stderr
    ids = {event["id"] for event in server.events(STORE)}
    assert len(ids) == 50

    orders(["A-77"]).to_csv(tmp_path / "orders" / "b.csv", index=False)
    second = project.run()
    assert second.returncode == 3
    assert second.stderr.splitlines()[-1] == (
        "error: event.id.key: column 'order_id' was hashed as integer by earlier runs and is now "
        "read as string, which would give every event a new id; nothing was sent. Declare it to "
        "keep the ids stable: source.columns: {order_id: integer} (values that are not an "
        "integer are then rejected under rule type)"
    )
    assert server.stats(STORE)["requests"] == 50 and server.stats(STORE)["count"] == 50

    project.write(server.base_url, folder_source(columns={"order_id": "integer"}))
    third = project.run("--report-json", str(tmp_path / "report.json"))
    assert third.returncode == 1, third.stderr
    report = project.report()
    assert (report["skipped_unchanged"], report["delivered"]) == (50, 0)
    assert report["rejected_by_rule"] == {"type": 1}
    assert {event["id"] for event in server.events(STORE)} == ids  # the old ids, unchanged
    assert server.stats(STORE)["count"] == 50
    with sqlite3.connect(tmp_path / ".etl" / "state.db") as state:  # every run was closed
        runs = state.execute("SELECT exit_code FROM etl_runs ORDER BY id").fetchall()
    assert runs == [(0,), (3,), (1,)]


def test_a_property_sent_with_another_json_type_is_listed_once(tmp_path: Path, sandbox) -> None:
    server = sandbox(rate_limit=None)
    (tmp_path / "orders").mkdir()
    data = tmp_path / "orders" / "a.csv"
    orders(["o-1", "o-2"], [12.5, 20]).to_csv(data, index=False)
    project = Project(tmp_path, server.base_url, server.token, folder_source())
    report_file = str(tmp_path / "report.json")
    assert project.run("--report-json", report_file).returncode == 0
    assert project.report()["type_changes"] == []

    orders(["o-1", "o-2"], ["12.5", "20 EUR"]).to_csv(data, index=False)  # the column is text now
    changed = project.run("--report-json", report_file)
    assert changed.returncode == 0, changed.stderr
    assert project.report()["type_changes"] == [
        {"property": "total", "before": "number", "after": "string"}
    ]
    assert "type changed: total" in changed.stderr and "number -> string" in changed.stderr
    totals = sorted(event["properties"]["total"] for event in server.events(STORE))
    assert totals == ["12.5", "20 EUR"]

    orders(["o-1", "o-2"], ["13", "21 EUR"]).to_csv(data, index=False)
    again = project.run("--report-json", report_file)
    assert again.returncode == 0
    assert project.report()["type_changes"] == []  # recorded: not listed a second time


def test_a_dry_run_shows_the_type_change_without_recording_it(tmp_path: Path, sandbox) -> None:
    server = sandbox(rate_limit=None)
    (tmp_path / "orders").mkdir()
    data = tmp_path / "orders" / "a.csv"
    orders(["o-1"], [12.5]).to_csv(data, index=False)
    project = Project(tmp_path, server.base_url, server.token, folder_source())
    assert project.run().returncode == 0
    orders(["o-1"], ["twelve"]).to_csv(data, index=False)
    report_file = str(tmp_path / "report.json")
    for _ in range(2):
        assert project.run("--dry-run", "--report-json", report_file).returncode == 0
        assert project.report()["type_changes"] == [
            {"property": "total", "before": "number", "after": "string"}
        ]
