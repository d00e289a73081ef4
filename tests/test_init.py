"""`etl init` (SPEC §2, issue 11 item 5): a starter pipeline that lists every column, guesses
the mapping with a comment per guess, and passes `etl validate` as written."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from etl.cli import main
from etl.definition import parse_pipeline
from tests.fixtures_db import POSTGRES_URL

ROOT = Path(__file__).resolve().parent.parent


def etl(*args: str):
    return CliRunner().invoke(main, list(args))


def test_init_on_the_sample_csv_guesses_the_mapping_and_validates(tmp_path: Path) -> None:
    target = tmp_path / "pipelines" / "orders.yaml"
    written = etl("init", str(ROOT / "sample_data" / "orders_shipped.csv"), "--output", str(target))
    assert written.exit_code == 0, written.stderr
    text = target.read_text()
    columns = [
        "order_id",
        "customer_id",
        "email",
        "phone",
        "first_name",
        "shipped_at",
        "order_total",
        "item_count",
        "gift",
        "currency",
        "updated_at",
    ]
    assert all(f"#   {column} " in text for column in columns)
    assert "jose.69@Example.COM" not in text and "j***@Example.COM" in text  # examples masked
    pipeline = parse_pipeline(target)
    event = pipeline.event
    assert (event.occurred_at, pipeline.source.incremental.cursor) == ("shipped_at", "updated_at")
    assert (event.customer.external_id, event.customer.email, event.customer.phone_number) == (
        "customer_id",
        "email",
        "phone",
    )
    assert (event.customer.default_region, event.id.key) == ("US", ("order_id",))
    assert event.customer.properties == {"first_name": "first_name"}
    assert list(event.properties) == ["order_id", "order_total", "item_count", "gift", "currency"]
    assert "occurred_at: shipped_at" in text and "# the first timestamp column that is not" in text
    validated = etl("validate", str(target))
    # The same rows as the shipped pipeline reject: the guesses match the hand-written mapping.
    assert (validated.exit_code, validated.stdout.splitlines()[0]) == (
        1,
        "orders_shipped: 3,000 rows read, 2,885 valid, 115 rejected",
    )


def test_init_on_parquet_maps_an_event_name_column(tmp_path: Path) -> None:
    target = tmp_path / "subs.yaml"
    assert (
        etl(
            "init", str(ROOT / "sample_data" / "subscriptions_renewed.parquet"), "-o", str(target)
        ).exit_code
        == 0
    )
    pipeline = parse_pipeline(target)
    assert pipeline.event.event_name.column == "event_type"
    assert (pipeline.event.occurred_at, pipeline.event.customer.email) == ("renewed_at", "email")
    assert etl("validate", str(target)).exit_code == 1


def test_init_refuses_to_overwrite_and_a_sql_url_needs_a_table_or_query(tmp_path: Path) -> None:
    target = tmp_path / "x.yaml"
    target.write_text("keep me\n")
    again = etl("init", str(ROOT / "sample_data" / "orders_shipped.csv"), "-o", str(target))
    assert (again.exit_code, target.read_text()) == (2, "keep me\n")
    assert f"{target} exists; give --force to overwrite it" in again.stderr
    sql = etl("init", "sqlite:///x.db", "-o", str(tmp_path / "y.yaml"))
    assert (sql.exit_code, sql.stderr) == (
        2,
        "error: etl init: (options): a SQL source needs --table or --query (one of them)\n",
    )


@pytest.mark.postgres
def test_init_on_a_postgresql_table(
    postgres_engine: sa.Engine, unique_table: str, tmp_path: Path
) -> None:
    table = unique_table
    with postgres_engine.begin() as connection:
        connection.execute(
            sa.text(
                f"CREATE TABLE {table} (review_id text, user_id text, customer_email text, "
                "rating int,"
                " written_at timestamptz, updated_at timestamptz)"
            )
        )
        connection.execute(
            sa.text(
                f"INSERT INTO {table} VALUES "
                "('r-1','u-1','ann@example.com',5,'2024-03-01T10:00:00Z',"
                "'2024-03-02T10:00:00Z'), ('r-2','u-2','bob@example.com',4,'2024-03-01T11:00:00Z',"
                "'2024-03-02T11:00:00Z')"
            )
        )
    try:
        target = tmp_path / "reviews.yaml"
        written = etl("init", POSTGRES_URL, "--table", table, "-o", str(target))
        assert written.exit_code == 0, written.stderr
        pipeline = parse_pipeline(target)
        event = pipeline.event
        assert pipeline.source.query == f"SELECT * FROM {table}"
        assert (event.occurred_at, pipeline.source.incremental.cursor) == (
            "written_at",
            "updated_at",
        )
        assert (event.customer.external_id, event.customer.email) == ("user_id", "customer_email")
        assert (event.id.key, list(event.properties)) == (("review_id",), ["review_id", "rating"])
        validated = etl("validate", str(target))
        assert (validated.exit_code, validated.stdout.splitlines()[0]) == (
            0,
            f"{table}: 2 rows read, 2 valid, 0 rejected",
        )
        query = f"SELECT review_id, customer_email, written_at FROM {table} WHERE rating > 4"
        by_query = tmp_path / "top.yaml"
        assert etl("init", POSTGRES_URL, "--query", query, "-o", str(by_query)).exit_code == 0
        top = parse_pipeline(by_query)
        assert (top.name, top.source.query, top.source.incremental) == ("query", query, None)
        assert (top.event.customer.email, top.event.customer.external_id) == (
            "customer_email",
            None,
        )
        assert etl("validate", str(by_query)).stdout.startswith("query: 1 rows read, 1 valid")
    finally:
        with postgres_engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE {table}"))
