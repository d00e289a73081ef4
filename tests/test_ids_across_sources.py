"""The same rows as CSV, Parquet and SQLite give the same event ids and bodies (SPEC §4, §9)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from etl.definition import parse_pipeline
from etl.extract import open_extractor
from etl.transform import Transformer
from etl.validate import Validator

ROWS = pd.DataFrame(
    {
        "order_id": ["o-1", "o-2", "o-3", "o-4", "o-5"],
        "customer_id": ["c-1", None, "c-3", "007", None],
        "email": ["Ann@Example.COM", "bob@example.com", None, None, "bad-email"],
        "shipped_at": [
            "2024-03-01T12:30:00Z", "2024-03-02T10:00:00+02:00", "2024-03-03T00:00:00Z",
            "2024-03-04T08:15:30.250000Z", "2024-03-05T00:00:00Z",
        ],
        "items": pd.array([2, None, 1, 40, 3], dtype="Int64"),
        "total": [10.0, 10.25, None, 1e6, 3.5],
        "updated_at": ["2024-05-01T00:00:00Z"] * 5,
    }
)


def definition(source: dict[str, Any], key: list[str] | None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "source": "shopify_backfill",
        "event_name": "order_shipped",
        "occurred_at": "shipped_at",
        "customer": {"external_id": "customer_id", "email": "email"},
        "properties": {"order_id": "order_id", "items": "items", "total": "total"},
    }
    if key:
        event["id"] = {"key": key}
    return {
        "name": "ids_across_sources",
        "source": {**source, "chunk_size": 2, "incremental": {"cursor": "updated_at"}},
        "event": event,
        "destination": {"store_id": "store-1", "token": "t"},
    }


def write_sources(folder: Path) -> dict[str, dict[str, Any]]:
    ROWS.to_csv(folder / "orders.csv", index=False)
    table = pa.Table.from_pandas(ROWS, preserve_index=False)
    # Parquet carries real timestamps: the id uses the normalised instant, not the text
    stamps = pd.to_datetime(ROWS["shipped_at"], utc=True, format="ISO8601")
    table = table.set_column(3, "shipped_at", pa.array(stamps, pa.timestamp("us", "UTC")))
    pq.write_table(table, folder / "orders.parquet")
    with sqlite3.connect(folder / "orders.sqlite") as connection:
        ROWS.astype({"items": object}).to_sql("orders", connection, index=False)
    return {
        "csv": {"type": "csv", "path": "orders.csv"},
        "parquet": {"type": "parquet", "path": "orders.parquet"},
        "sql": {"type": "sql", "url": "sqlite:///orders.sqlite", "query": "SELECT * FROM orders"},
    }


def events(folder: Path, source: dict[str, Any], key: list[str] | None) -> list[tuple[str, dict]]:
    file = folder / f"{source['type']}.yaml"
    file.write_text(yaml.safe_dump(definition(source, key)))
    pipeline = parse_pipeline(file)
    validator = Validator(pipeline.event)
    transformer = Transformer(pipeline.event, pipeline.destination.store_id, "updated_at")
    out = []
    for chunk in open_extractor(pipeline.source).chunks(pipeline.mapped_columns(), None):
        valid = validator.split(chunk).valid
        out.extend((e.id, orjson.loads(e.body)) for e in transformer.to_events(valid))
    return out


@pytest.mark.parametrize("key", [None, ["order_id", "items", "total", "customer_id"]])
def test_csv_parquet_and_sqlite_give_the_same_ids_and_bodies(
    tmp_path: Path, key: list[str] | None
) -> None:
    sources = write_sources(tmp_path)
    by_source = {name: events(tmp_path, source, key) for name, source in sources.items()}
    assert by_source["parquet"] == by_source["csv"]
    assert by_source["sql"] == by_source["csv"]
    bodies = [body for _, body in by_source["csv"]]
    # o-5 is rejected (bad email)
    assert [body["properties"]["order_id"] for body in bodies] == ["o-1", "o-2", "o-3", "o-4"]
    assert bodies[0]["properties"] == {"order_id": "o-1", "items": 2, "total": 10.0}
    assert bodies[1]["occurred_at"] == "2024-03-02T08:00:00Z"
    assert bodies[2]["properties"] == {"order_id": "o-3", "items": 1}  # the API takes no nulls
    assert bodies[3]["customer"] == {"external_id": "007"}  # leading zeros are an identifier
    assert bodies[3]["occurred_at"] == "2024-03-04T08:15:30.250000Z"
    assert len({event_id for event_id, _ in by_source["csv"]}) == 4
