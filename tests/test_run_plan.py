"""The plan of a run (etl/runner/plan.py): what each mode opens and keeps, the window,
and when the watermark may move; pure, so no file or server is needed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from etl.definition import Pipeline, parse_pipeline
from etl.errors import DefinitionError
from etl.events import Status
from etl.extract import Window
from etl.runner.plan import Mode, RunOptions, StateUse, plan


def pipeline(tmp_path: Path, *, incremental: bool = True, store_column: bool = False) -> Pipeline:
    source: dict[str, object] = {"type": "csv", "path": "o.csv"}
    if incremental:
        source["incremental"] = {"cursor": "updated_at"}
    destination: dict[str, object] = {"token": "t"}
    destination["store_id"] = {"column": "shop"} if store_column else "s-1"
    (tmp_path / "o.csv").write_text("updated_at,ts,cid,shop\n")
    file = tmp_path / "orders.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "name": "orders",
                "source": source,
                "destination": destination,
                "event": {
                    "source": "app",
                    "event_name": "e",
                    "occurred_at": "ts",
                    "customer": {"external_id": "cid"},
                },
            }
        )
    )
    return parse_pipeline(file)


@pytest.mark.parametrize(
    ("mode", "state", "sends", "transforms", "examples"),
    [
        pytest.param(Mode.RUN, StateUse.WRITE, True, True, False, id="run"),
        pytest.param(Mode.DRY_RUN, StateUse.READ, False, True, False, id="dry-run"),
        pytest.param(Mode.VALIDATE, StateUse.NONE, False, False, True, id="validate"),
    ],
)
def test_each_mode_opens_and_keeps_its_own(
    tmp_path: Path, mode: Mode, state: StateUse, sends: bool, transforms: bool, examples: bool
) -> None:
    made = plan(pipeline(tmp_path), RunOptions(), mode)
    assert (made.state, made.sends, made.transforms, made.examples) == (
        state,
        sends,
        transforms,
        examples,
    )
    assert (made.ahead, made.keeps_rows, made.credentials) == (sends, sends, False)
    assert made.moves_watermark is (state is StateUse.WRITE)


def test_many_stores_open_credentials_and_hold_no_rows(tmp_path: Path) -> None:
    made = plan(pipeline(tmp_path, store_column=True), RunOptions(), Mode.RUN)
    assert (made.credentials, made.keeps_rows) == (True, False)


def test_workers_make_a_real_run_leased_holding_no_rows(tmp_path: Path) -> None:
    """With `workers:` another process may send an event: its row is not held for it."""
    file = pipeline(tmp_path).file
    definition = yaml.safe_load(file.read_text())
    definition.update(workers={"lease": 3}, state="postgresql+psycopg://h/db")
    file.write_text(yaml.safe_dump(definition))
    leased = parse_pipeline(file)
    made = plan(leased, RunOptions(), Mode.RUN)
    assert (made.leased, made.keeps_rows, made.sends) == (True, False, True)
    assert not plan(leased, RunOptions(), Mode.DRY_RUN).leased  # nothing is sent


def test_workers_need_a_postgresql_state(tmp_path: Path) -> None:
    file = pipeline(tmp_path).file
    definition = yaml.safe_load(file.read_text())
    definition["workers"] = {"lease": 3}
    file.write_text(yaml.safe_dump(definition))
    with pytest.raises(DefinitionError, match="leased work needs a PostgreSQL state"):
        parse_pipeline(file)


def test_the_window_starts_at_since_or_the_stored_watermark(tmp_path: Path) -> None:
    stored = plan(pipeline(tmp_path), RunOptions(), Mode.RUN)
    assert stored.reads_watermark and stored.window(None) is None  # a first run reads all
    assert stored.window("2024-05-01") == Window("updated_at", after="2024-05-01")
    manual = plan(pipeline(tmp_path), RunOptions(since="2024-01-01", until="2024-02-01"), Mode.RUN)
    assert not manual.reads_watermark and not manual.moves_watermark
    assert manual.window(None) == Window("updated_at", "2024-01-01", "2024-02-01")


def test_a_full_refresh_diffs_nothing_retries_nothing_and_ignores_the_watermark(
    tmp_path: Path,
) -> None:
    made = plan(pipeline(tmp_path), RunOptions(full_refresh=True), Mode.RUN)
    assert (made.diffs, made.retries, made.reads_watermark) == (False, (), False)
    assert made.moves_watermark  # a complete refresh still moves it


def test_retry_rejected_retries_and_resends_the_rejected(tmp_path: Path) -> None:
    made = plan(pipeline(tmp_path), RunOptions(retry_rejected=True), Mode.RUN)
    assert (made.retries, made.resend) == ((Status.FAILED, Status.REJECTED), Status.REJECTED)
    assert plan(pipeline(tmp_path), RunOptions(), Mode.RUN).retries == (Status.FAILED,)


def test_a_limited_read_never_moves_the_watermark(tmp_path: Path) -> None:
    assert not plan(pipeline(tmp_path), RunOptions(limit=10), Mode.RUN).moves_watermark


def test_since_without_an_incremental_cursor_is_a_definition_error(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="--since/--until need an incremental cursor"):
        plan(pipeline(tmp_path, incremental=False), RunOptions(since="1"), Mode.DRY_RUN)
    assert plan(pipeline(tmp_path, incremental=False), RunOptions(), Mode.RUN).window() is None
