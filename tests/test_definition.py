"""Pipeline definitions (SPEC §3): one test per kind of error, plus what a good file becomes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl.definition import parse_pipeline
from etl.errors import DefinitionError
from etl.pipeline import load_pipeline

CSV = (
    "order_id,customer_id,email,shipped_at,order_total\no-1,c-1,a@b.com,2024-03-01T12:30:00Z,12.5\n"
)


def definition(data_file: str = "orders.csv") -> dict[str, Any]:
    return {
        "name": "orders_shipped",
        "source": {"type": "csv", "path": data_file, "chunk_size": 1000},
        "event": {
            "source": "shopify_backfill",
            "event_name": "order_shipped",
            "occurred_at": "shipped_at",
            "customer": {"external_id": "customer_id", "email": "email"},
            "properties": {"order_id": "order_id", "total": "order_total"},
        },
        "destination": {"store_id": "${YOTPO_STORE_ID}", "token": "${YOTPO_TOKEN}"},
    }


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a definition (and its CSV) into tmp_path; return the pipeline file."""
    (tmp_path / "orders.csv").write_text(CSV)
    monkeypatch.setenv("YOTPO_STORE_ID", "store-1")
    monkeypatch.setenv("YOTPO_TOKEN", "tok-secret-value")

    def _write(data: dict[str, Any] | str) -> Path:
        file = tmp_path / "pipe.yaml"
        file.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
        return file

    return _write


def problems(file: Path) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as caught:
        load_pipeline(file).require("run")
    assert str(caught.value).startswith(str(file))
    return caught.value.problems


def test_a_good_definition_resolves_paths_and_variables(write) -> None:
    pipeline = load_pipeline(write(definition()))
    assert pipeline.source.path == str(pipeline.folder / "orders.csv")
    assert pipeline.state == str(pipeline.folder / ".etl/state.db")
    assert pipeline.destination.store_id == "store-1"
    assert pipeline.destination.token.get_secret_value() == "tok-secret-value"
    assert (
        pipeline.destination.events_url
        == "https://api.yotpo.com/core/v3/stores/store-1/custom_events"
    )
    assert pipeline.rejects_dir == pipeline.folder / ".etl" / "rejects" / "orders_shipped"
    assert pipeline.mapped_columns() == [
        "shipped_at",
        "customer_id",
        "email",
        "order_id",
        "order_total",
    ]
    assert pipeline.event.id_key_columns() == ("customer_id", "email", "shipped_at")


def test_the_token_never_shows_in_the_model_repr(write) -> None:
    pipeline = load_pipeline(write(definition()))
    assert "tok-secret-value" not in repr(pipeline)
    assert "tok-secret-value" not in str(pipeline.model_dump())


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            lambda d: d["source"].update(colour="red"),
            ("source.colour", "unknown key"),
            id="unknown-key",
        ),
        pytest.param(
            lambda d: d["source"].update(chunk_size="lots"),
            (
                "source.chunk_size",
                "Input should be a valid integer, unable to parse string as an integer",
            ),
            id="wrong-type",
        ),
        pytest.param(
            lambda d: d["destination"].update(token="${NOT_SET_ANYWHERE}"),
            (
                "destination.token",
                "environment variable NOT_SET_ANYWHERE is not set (nor in a .env file)",
            ),
            id="missing-variable",
        ),
        pytest.param(
            lambda d: d["event"]["properties"].update({"order total": "order_total"}),
            (
                "event.properties",
                "property name 'order total' must match [A-Za-z0-9_]+ (use underscores, not spaces)",
            ),
            id="property-name-with-space",
        ),
        pytest.param(
            lambda d: d["source"].update(type="excel"),
            ("source.type", "Input should be 'csv', 'parquet' or 'sql'"),
            id="unknown-source-type",
        ),
        pytest.param(
            lambda d: d["source"].update(path="nowhere/*.csv"),
            ("source.path", "no file, folder or glob match at {folder}/nowhere/*.csv"),
            id="missing-file",
        ),
        pytest.param(
            lambda d: d["event"].update(occurred_at="shipped_on"),
            (
                "event.occurred_at",
                "column 'shipped_on' is not in the source (it has: customer_id, email, order_id, order_total, shipped_at)",
            ),
            id="column-not-in-source",
        ),
        pytest.param(
            lambda d: d["event"]["properties"].update(total="order_totl"),
            (
                "event.properties.total",
                "column 'order_totl' is not in the source (it has: customer_id, email, order_id, order_total, shipped_at)",
            ),
            id="property-column-not-in-source",
        ),
        pytest.param(
            lambda d: d.update(name="Orders Shipped"),
            ("name", "String should match pattern '^[a-z0-9_]+$'"),
            id="bad-pipeline-name",
        ),
        pytest.param(
            lambda d: d["event"].update(timezone="Mars/Olympus"),
            ("event.timezone", "unknown time zone 'Mars/Olympus'"),
            id="unknown-timezone",
        ),
        pytest.param(
            lambda d: d["destination"].pop("token"),
            ("destination", "give token or secret (required for run)"),
            id="no-credentials",
        ),
        pytest.param(
            lambda d: d.pop("event"), ("event", "required key is missing"), id="missing-section"
        ),
        pytest.param(
            lambda d: d["source"].update(columns={"coupon": "string"}),
            (
                "source.columns.coupon",
                "column 'coupon' is not in the source (it has: customer_id, email, order_id, order_total, shipped_at)",
            ),
            id="declared-column-not-in-source",
        ),
        pytest.param(
            lambda d: d["source"].update(columns={"order_total": "money"}),
            (
                "source.columns.order_total",
                "Input should be 'string', 'integer', 'float', 'boolean', 'timestamp' or 'date'",
            ),
            id="unknown-declared-type",
        ),
        pytest.param(
            lambda d: d["source"].update(encoding="utf-9"),
            ("source.encoding", "unknown encoding 'utf-9'"),
            id="unknown-encoding",
        ),
        pytest.param(
            lambda d: d["source"].update(delimiter=";;"),
            ("source.delimiter", "String should have at most 1 character"),
            id="long-delimiter",
        ),
    ],
)
def test_each_kind_of_error_names_the_key(write, tmp_path: Path, change, expected) -> None:
    data = definition()
    change(data)
    key, problem = expected
    assert (key, problem.format(folder=tmp_path)) in problems(write(data))


def test_all_errors_are_reported_together(write) -> None:
    data = definition()
    data["source"]["colour"] = "red"
    data["destination"]["rate_limit"] = -1
    found = problems(write(data))
    assert ("source.colour", "unknown key") in found
    assert ("destination.rate_limit", "Input should be greater than 0") in found


def test_invalid_yaml_names_the_line(write) -> None:
    assert problems(write("name: x\nsource: [unclosed\n"))[0][0] == "line 3"


def test_a_missing_pipeline_file(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="pipeline file does not exist"):
        parse_pipeline(tmp_path / "absent.yaml")


def test_the_cli_prints_one_line_and_exits_2_without_traceback(write) -> None:
    data = definition()
    data["source"]["colour"] = "red"
    file = write(data)
    result = subprocess.run(
        [sys.executable, "-m", "etl", "validate", str(file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr == f"error: {file}: source.colour: unknown key\n"
    assert result.stdout == ""


def test_csv_reading_options_do_not_apply_to_other_sources(write, tmp_path: Path) -> None:
    data = definition("orders.parquet")
    data["source"].update(type="parquet", null_values=["-"])
    (tmp_path / "orders.parquet").write_bytes(b"")
    assert ("source.null_values", "applies to a csv source only") in problems(write(data))


def test_a_parquet_binary_or_duration_property_is_one_definition_error(
    write, tmp_path: Path
) -> None:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table(
            {
                "order_id": ["o-1"],
                "customer_id": ["c-1"],
                "email": ["a@b.com"],
                "shipped_at": ["2024-03-01T12:30:00Z"],
                "order_total": [12.5],
                "scan": pa.array([b"\x89PNG"], pa.binary()),
                "wait": pa.array([dt.timedelta(seconds=90)], pa.duration("s")),
            }
        ),
        tmp_path / "orders.parquet",
    )
    data = definition("orders.parquet")
    data["source"]["type"] = "parquet"
    data["event"]["properties"].update(scan="scan", wait="wait")
    file = write(data)
    result = subprocess.run(
        [sys.executable, "-m", "etl", "validate", str(file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {file}: event.properties.scan: column 'scan' is of type binary, which no JSON "
        "value can carry (map another column, or declare it in source.columns, e.g. string)",
        f"error: {file}: event.properties.wait: column 'wait' is of type duration[s], which no JSON "
        "value can carry (map another column, or declare it in source.columns, e.g. string)",
    ]
