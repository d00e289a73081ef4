"""CSV and Parquet extraction: files, folders, globs, stable dtypes, projection, windows, errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.definition import SourceSpec
from etl.errors import SourceError
from etl.extract import Window, open_extractor

CSV_TEXT = """order_id,zip,items,maybe,total,gift,shipped_at,note
o-0,007,1,5,10.0,true,2024-03-01T12:30:00Z,NA
o-1,12,2,,10.25,False,2024-03-02T12:30:00+02:00,
o-2,99,3,7,10.5,TRUE,2024-03-03,hello
"""

#: Text columns: pandas' Arrow-backed strings, NA for a null.
TEXT = pd.StringDtype("pyarrow")
EXPECTED = pd.DataFrame(
    {
        "order_id": pd.Series(["o-0", "o-1", "o-2"], dtype=TEXT),
        "zip": pd.Series(["007", "12", "99"], dtype=TEXT),
        "items": pd.array([1, 2, 3], dtype="Int64"),
        "maybe": pd.array([5, None, 7], dtype="Int64"),
        "total": [10.0, 10.25, 10.5],
        "gift": pd.array([True, False, True], dtype="boolean"),
        "shipped_at": pd.Series(
            ["2024-03-01T12:30:00Z", "2024-03-02T12:30:00+02:00", "2024-03-03"], dtype=TEXT
        ),
        "note": pd.Series([None, None, "hello"], dtype=TEXT),  # "NA" is a null marker
    }
)
ALL = list(EXPECTED.columns)


def csv(path: str | Path, chunk_size: int = 50_000, **options: Any) -> SourceSpec:
    return SourceSpec(type="csv", path=str(path), chunk_size=chunk_size, **options)


def parquet(path: str | Path, chunk_size: int = 50_000) -> SourceSpec:
    return SourceSpec(type="parquet", path=str(path), chunk_size=chunk_size)


def read(
    source: SourceSpec, columns: list[str], window: Window | None = None
) -> list[pd.DataFrame]:
    return list(open_extractor(source).chunks(columns, window))


def test_csv_types_are_decided_once_from_every_value(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(CSV_TEXT)
    chunks = read(csv(tmp_path / "orders.csv"), ALL)
    assert len(chunks) == 1
    pd.testing.assert_frame_equal(chunks[0], EXPECTED)
    assert chunks[0].loc[1, "note"] is pd.NA  # null is NA in text columns, not NaN


@pytest.mark.parametrize("chunk_size", [1, 3, 50_000])
def test_every_chunk_size_gives_the_same_frame_and_dtypes(tmp_path: Path, chunk_size: int) -> None:
    rows = 3 * 17
    (tmp_path / "orders.csv").write_text(
        CSV_TEXT.splitlines()[0]
        + "\n"
        + "".join(line + "\n" for _ in range(17) for line in CSV_TEXT.splitlines()[1:])
    )
    chunks = read(csv(tmp_path / "orders.csv", chunk_size), ALL)
    assert [len(chunk) for chunk in chunks][:-1] == [chunk_size] * (len(chunks) - 1)
    assert sum(len(chunk) for chunk in chunks) == rows
    for chunk in chunks:
        pd.testing.assert_series_equal(chunk.dtypes, EXPECTED.dtypes)
    expected = pd.concat([EXPECTED] * 17, ignore_index=True)
    pd.testing.assert_frame_equal(pd.concat(chunks), expected)


def test_only_requested_columns_are_read_in_the_requested_order(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(CSV_TEXT)
    extractor = open_extractor(csv(tmp_path / "orders.csv"))
    assert extractor.columns() == ALL
    (chunk,) = extractor.chunks(["total", "order_id"], None)
    assert list(chunk.columns) == ["total", "order_id"]
    assert chunk["total"].tolist() == [10.0, 10.25, 10.5]


def test_a_folder_and_a_glob_read_their_files_in_sorted_order_with_one_type(tmp_path: Path) -> None:
    folder = tmp_path / "orders"
    folder.mkdir()
    (folder / "b.csv").write_text("order_id,total\no-2,3\n")
    (folder / "a.csv").write_text("order_id,total\no-0,1\no-1,2\n")
    (folder / "c.csv").write_text("order_id,total\no-3,4.5\n")  # a float in any file: float
    (folder / "skip.txt").write_text("order_id,total\nx,y\n")
    expected = pd.DataFrame(
        {
            "order_id": pd.Series(["o-0", "o-1", "o-2", "o-3"], dtype=TEXT),
            "total": [1.0, 2.0, 3.0, 4.5],
        }
    )
    for path in (folder, folder / "*.csv"):
        chunks = read(csv(path, chunk_size=3), ["order_id", "total"])
        assert [len(chunk) for chunk in chunks] == [3, 1]
        pd.testing.assert_frame_equal(pd.concat(chunks), expected)
    (chunk,) = read(csv(folder / "b.csv"), ["order_id", "total"])
    assert chunk["total"].dtype == "Int64"  # alone, b.csv's total is an integer column


def test_a_column_absent_from_one_file_is_null_there(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("order_id\no-0\n")
    (tmp_path / "b.csv").write_text("order_id,total\no-1,7\n")
    extractor = open_extractor(csv(tmp_path / "*.csv"))
    assert extractor.columns() == ["order_id", "total"]
    (chunk,) = extractor.chunks(["order_id", "total"], None)
    assert chunk["total"].tolist() == [pd.NA, 7]
    assert chunk["total"].dtype == "Int64"


def test_a_ragged_row_names_file_and_line_and_never_quotes_the_row(tmp_path: Path) -> None:
    lines = ["order_id,email,total"] + [f"o-{i},a{i}@example.com,1" for i in range(5)]
    lines.insert(4, "o-x,secret@example.com,1,2,3")
    (tmp_path / "orders.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError) as error:
        read(csv(tmp_path / "orders.csv"), ["order_id"])
    assert str(error.value) == f"{tmp_path / 'orders.csv'} line 5: expected 3 columns, found 5"
    assert error.value.exit_code == 3


def test_bad_encoding_names_file_and_line(tmp_path: Path) -> None:
    body = "order_id,name\no-0,Ann\no-1,Jos\xe9\n".encode("latin-1")
    (tmp_path / "orders.csv").write_bytes(body)
    with pytest.raises(SourceError) as error:
        read(csv(tmp_path / "orders.csv"), ["order_id", "name"])
    assert str(error.value) == (
        f"{tmp_path / 'orders.csv'} line 3: not valid utf-8 "
        "(set source.encoding, or re-encode the file)"
    )


def test_a_missing_source_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"no \.csv file at .*nothing\*\.csv"):
        open_extractor(csv(tmp_path / "nothing*.csv"))


def test_csv_windows_compare_text_as_text_and_numbers_as_numbers(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(
        "order_id,version,updated_at\n"
        "o-0,1,2024-05-01T00:00:00Z\n"
        "o-1,2,2024-05-02T00:00:00Z\n"
        "o-2,10,2024-05-03T00:00:00Z\n"
        "o-3,,\n"
    )
    source = csv(tmp_path / "orders.csv", chunk_size=2)

    def ids(window: Window) -> list[str]:
        return [i for chunk in read(source, ["order_id"], window) for i in chunk["order_id"]]

    assert ids(Window("updated_at", after="2024-05-01T00:00:00Z")) == ["o-1", "o-2"]
    assert ids(Window("updated_at", until="2024-05-02T00:00:00Z")) == ["o-0", "o-1", "o-3"]
    assert ids(Window("version", after="2")) == ["o-2"]  # 10 > 2 as a number, not as text
    assert ids(Window("version", after=1, until="2")) == ["o-1"]
    assert ids(Window("version", after=np.int64(10))) == []
    # the cursor need not be among the requested columns' survivors: it is read and kept
    window = Window("version", after=1)
    (chunk,) = read(csv(tmp_path / "orders.csv"), ["order_id", "version"], window)
    assert chunk.index.tolist() == [1, 2]


def write_parquet(path: Path, table: pa.Table, row_group_size: int = 2) -> None:
    pq.write_table(table, path, row_group_size=row_group_size)


def test_parquet_files_are_read_with_one_unified_schema(tmp_path: Path) -> None:
    folder = tmp_path / "subs"
    folder.mkdir()
    when = pd.Timestamp("2024-03-01T12:00:00Z")
    write_parquet(
        folder / "1.parquet",
        pa.table(
            {
                "plan": ["basic", None, "pro"],
                "months": pa.array([1, 12, None], pa.int32()),
                "renewed_at": pa.array(
                    [when, when + pd.Timedelta(hours=1), None], pa.timestamp("us", "UTC")
                ),
                "amount": pa.array([9.5, 99.0, 19.0]),
            }
        ),
    )
    write_parquet(
        folder / "2.parquet",
        pa.table(
            {
                "plan": pa.array(["team"]).dictionary_encode(),
                "months": pa.array([3], pa.int64()),
                "renewed_at": pa.array([when], pa.timestamp("us", "UTC")),
                "amount": pa.array([1.25]),
                "extra": ["x"],
            }
        ),
    )
    extractor = open_extractor(parquet(folder, chunk_size=2))
    assert extractor.columns() == ["plan", "months", "renewed_at", "amount", "extra"]
    chunks = list(extractor.chunks(["plan", "months", "renewed_at", "extra"], None))
    assert [len(chunk) for chunk in chunks] == [2, 2]
    expected = pd.DataFrame(
        {
            "plan": pd.Series(["basic", None, "pro", "team"], dtype=TEXT),
            "months": pd.array([1, 12, None, 3], dtype="Int64"),
            "renewed_at": pd.Series(
                [when, when + pd.Timedelta(hours=1), pd.NaT, when], dtype="datetime64[us, UTC]"
            ),
            "extra": pd.Series([None, None, None, "x"], dtype=TEXT),
        }
    )
    for chunk in chunks:
        pd.testing.assert_series_equal(chunk.dtypes, expected.dtypes)
    pd.testing.assert_frame_equal(pd.concat(chunks), expected)


def test_parquet_decimals_stay_exact_decimals(tmp_path: Path) -> None:
    from decimal import Decimal

    amounts = pa.array([Decimal("99999999999999.99"), None], pa.decimal128(38, 2))
    write_parquet(tmp_path / "d.parquet", pa.table({"amount": amounts}))
    (chunk,) = read(parquet(tmp_path / "d.parquet"), ["amount"])
    assert chunk["amount"].dtype == object
    assert chunk["amount"].tolist() == [Decimal("99999999999999.99"), None]


def test_parquet_windows_compare_timestamps_as_timestamps(tmp_path: Path) -> None:
    times = pd.to_datetime(
        ["2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z", None, "2024-05-03T00:00:00Z"]
    )
    write_parquet(
        tmp_path / "s.parquet",
        pa.table(
            {
                "id": ["a", "b", "c", "d"],
                "updated_at": pa.array(times, pa.timestamp("us", "UTC")),
            }
        ),
    )
    source = parquet(tmp_path / "s.parquet")

    def ids(window: Window) -> list[str]:
        return [i for chunk in read(source, ["id", "updated_at"], window) for i in chunk["id"]]

    watermark = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)  # as the state store gives it back
    assert ids(Window("updated_at", after=watermark)) == ["b", "d"]
    assert ids(Window("updated_at", after="2024-05-01T02:00:00+02:00")) == ["b", "d"]
    assert ids(Window("updated_at", after="2024-05-01", until="2024-05-02")) == ["b"]
    assert ids(Window("updated_at", until="2024-05-01T00:00:00Z")) == ["a", "c"]  # null kept


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path: Path) -> None:
    (tmp_path / "excel.csv").write_bytes("\ufefforder_id,total\no-0,1.5\n".encode())
    extractor = open_extractor(csv(tmp_path / "excel.csv"))
    assert extractor.columns() == ["order_id", "total"]
    (chunk,) = extractor.chunks(["order_id", "total"], None)
    assert chunk.to_dict("list") == {"order_id": ["o-0"], "total": [1.5]}


NULL_MARKERS = ["", "NULL", "null", "NaN", "nan", "N/A", "n/a", "NA", "#N/A"]


def test_every_default_null_marker_is_null_and_number_columns_stay_numbers(tmp_path: Path) -> None:
    lines = ["total,qty,note"] + [f"{marker},{marker},{marker}" for marker in NULL_MARKERS]
    lines += ["12.5,3,hi", "#N/A,,NaN"]
    (tmp_path / "export.csv").write_text("\n".join(lines) + "\n")
    frames = read(csv(tmp_path / "export.csv", chunk_size=4), ["total", "qty", "note"])
    whole = pd.concat(frames)
    assert [str(frame["total"].dtype) for frame in frames] == ["float64"] * 3
    assert [str(frame["qty"].dtype) for frame in frames] == ["Int64"] * 3
    assert whole["total"].isna().tolist() == [True] * 9 + [False, True]
    assert whole["total"].iloc[9] == 12.5 and whole["qty"].iloc[9] == 3
    assert whole["note"].tolist() == [pd.NA] * 9 + ["hi", pd.NA]


def test_null_values_replace_the_default_list(tmp_path: Path) -> None:
    (tmp_path / "export.csv").write_text("total,note\n-,NULL\n1.5,-\n")
    (chunk,) = read(csv(tmp_path / "export.csv", null_values=["-"]), ["total", "note"])
    assert chunk["total"].dtype == "float64" and np.isnan(chunk["total"].iloc[0])
    assert chunk["note"].tolist() == ["NULL", pd.NA]  # not a marker any more: text


def test_a_semicolon_cp1252_export_is_read_with_delimiter_and_encoding(tmp_path: Path) -> None:
    body = "order_id;name;total\no-1;Jos\xe9;12,5\no-2;Zo\xeb;NULL\n".encode("cp1252")
    (tmp_path / "excel.csv").write_bytes(body)
    source = csv(tmp_path / "excel.csv", delimiter=";", encoding="cp1252")
    extractor = open_extractor(source)
    assert extractor.columns() == ["order_id", "name", "total"]
    (chunk,) = extractor.chunks(["order_id", "name", "total"], None)
    assert chunk.to_dict("list") == {
        "order_id": ["o-1", "o-2"],
        "name": ["José", "Zoë"],
        "total": ["12,5", None],
    }


def test_a_utf16_export_with_its_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "u.csv").write_bytes("order_id\tqty\no-1\t2\n".encode("utf-16"))
    (chunk,) = read(csv(tmp_path / "u.csv", delimiter="\t", encoding="utf-16"), ["order_id", "qty"])
    assert chunk.to_dict("list") == {"order_id": ["o-1"], "qty": [2]}


def test_declared_columns_are_not_inferred_but_read_as_text(tmp_path: Path) -> None:
    (tmp_path / "o.csv").write_text("order_id,total\n1000,12.5\n1001,twelve\n1002,NaN\n")
    source = csv(tmp_path / "o.csv", columns={"order_id": "string", "total": "float"})
    (chunk,) = read(source, ["order_id", "total"])
    assert chunk.to_dict("list") == {
        "order_id": ["1000", "1001", "1002"],
        "total": ["12.5", "twelve", None],
    }
