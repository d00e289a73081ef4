"""`Extractor.estimated_rows()`: the source's size for the whole-source ETA, when cheap."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import SecretStr
from test_extract_sql import ALL_DATABASES, COLUMNS, database  # noqa: F401  (the fixture)

from etl.definition import SourceSpec
from etl.eta import estimate
from etl.extract import Window, open_extractor
from etl.report import RunReport


def _frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"k": [f"k{i}" for i in range(n)], "n": list(range(n))})


def test_csv_is_counted_by_its_typing_pass_and_not_under_a_window(tmp_path: Path) -> None:
    _frame(7).to_csv(tmp_path / "a.csv", index=False)
    _frame(5).to_csv(tmp_path / "b.csv", index=False)
    extractor = open_extractor(SourceSpec(type="csv", path=str(tmp_path / "*.csv"), chunk_size=4))
    assert extractor.estimated_rows() is None  # nothing read yet
    chunks = extractor.chunks(["k"], None)
    next(chunks)
    assert extractor.estimated_rows() == 12  # known from the first chunk on
    windowed = extractor.chunks(["k"], Window("n", after=3))
    next(windowed)
    assert extractor.estimated_rows() is None  # the window filters rows after reading


def test_parquet_is_counted_from_its_footers(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pandas(_frame(9)), tmp_path / "a.parquet", row_group_size=2)
    pq.write_table(pa.Table.from_pandas(_frame(3)), tmp_path / "b.parquet")
    extractor = open_extractor(SourceSpec(type="parquet", path=str(tmp_path), chunk_size=5))
    next(extractor.chunks(["k"], None))
    assert extractor.estimated_rows() == 12


@pytest.mark.parametrize("database", ALL_DATABASES, indirect=True)
def test_sql_counts_the_windowed_query_only_when_allowed(database) -> None:
    url, table = database
    spec = {"type": "sql", "url": SecretStr(url), "query": f"SELECT * FROM {table}"}
    quiet = open_extractor(SourceSpec(**spec))
    list(quiet.chunks(COLUMNS, None))
    assert quiet.estimated_rows() is None  # source.count is off by default
    counted = open_extractor(SourceSpec(**spec, count=True))
    list(counted.chunks(COLUMNS, None))
    assert counted.estimated_rows() == 5
    list(counted.chunks(COLUMNS, Window("qty", after=2)))
    assert counted.estimated_rows() == 2  # qty 3 and 5: the window, bound, is counted too


def test_count_is_refused_on_a_file_source() -> None:
    with pytest.raises(ValueError, match=r"source\.count: applies to sql only"):
        SourceSpec(type="csv", path="x.csv", count=True)


def test_the_eta_covers_the_unread_rows_scaled_by_the_share_that_needs_sending() -> None:
    report = RunReport(
        pipeline="p", extracted=1_000, valid=900, skipped_unchanged=100, delivered=300
    )
    report.reject("email", 100)
    eta = estimate(report, elapsed_s=60.0, total_rows=10_000)
    # pending 900 - 100 - 300 = 500; unread 9,000 x (800 / 1,000) = 7,200; rate 5/s
    assert (eta.remaining_events, eta.rate_per_s, eta.whole_source) == (7_700, 5.0, True)
    assert eta.seconds == pytest.approx(1_540.0)
    so_far = estimate(report, elapsed_s=60.0, total_rows=None)
    assert (so_far.remaining_events, so_far.seconds, so_far.whole_source) == (500, 100.0, False)
    assert estimate(RunReport(pipeline="p"), 5.0, 10).seconds is None  # no rate yet
