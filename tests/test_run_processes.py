"""A dry run prepared in forked processes (`--processes`, `etl.runner.processes`) gives
byte for byte what it gives in the run's own process: bodies in source order, the same
rejects with the same reasons, the same column-type table; and a worker's error is the
run's error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import etl
from benchmarks import realistic
from etl.errors import SourceError

ROWS = 6_000
CHUNK = 997  # not a divisor of the rows: the last chunk is short


def _export(tmp_path: Path, kind: str) -> Path:
    """The realistic export (national phones, null markers, ~5 % bad rows) as `kind`;
    the path of the source file."""
    table = pa.concat_tables(realistic.groups(ROWS))
    source = tmp_path / f"orders.{kind}"
    if kind == "parquet":
        pq.write_table(table, source, row_group_size=2_500)
    else:
        pacsv.write_csv(table, source)
    return source


def _dry_run(source: Path, processes: int) -> tuple[bytes, dict[str, Any], bytes]:
    """(the bodies written, the report, the quarantine file) of one dry run. Each run has
    a pipeline of its own: two dry runs of one pipeline in the same second share a
    quarantine file (it is named after the second)."""
    name = f"orders_{processes}"
    pipeline = etl.load_pipeline(realistic.pipeline(source, name, chunk_size=CHUNK))
    output = source.parent / f"{name}.jsonl"
    report = etl.run(pipeline, etl.RunOptions(dry_run=True, output=output, processes=processes))
    assert report.quarantine_file is not None
    summary = {
        key: json.loads(report.to_json())[key]
        for key in ("extracted", "valid", "rejected", "written", "rejected_by_rule", "columns")
    }
    return output.read_bytes(), summary, Path(report.quarantine_file).read_bytes()


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_two_preparing_processes_write_exactly_what_one_process_writes(
    tmp_path: Path, kind: str
) -> None:
    source = _export(tmp_path, kind)
    alone = _dry_run(source, 1)
    bodies, summary, rejects = _dry_run(source, 2)
    assert bodies == alone[0]
    assert summary == alone[1]
    assert rejects.splitlines()[1:] == alone[2].splitlines()[1:]  # one header each
    assert summary["extracted"] == ROWS
    assert summary["written"] == bodies.count(b"\n") == summary["valid"]
    assert 0 < summary["rejected"] < ROWS // 10  # the export's bad rows, quarantined


def test_a_preparing_process_error_is_the_runs_error(tmp_path: Path) -> None:
    """A value pandas cannot hold (uint64 above int64) fails in the worker that converts it,
    and the run raises that SourceError, not a broken pipe."""
    table = pa.concat_tables(realistic.groups(2_000))
    big = np.full(table.num_rows, 2**63 + 5, dtype=np.uint64)
    table = table.set_column(
        table.schema.get_field_index("item_count"), "item_count", pa.array(big)
    )
    source = tmp_path / "orders.parquet"
    pq.write_table(table, source)
    pipeline = etl.load_pipeline(realistic.pipeline(source, "orders_big", chunk_size=CHUNK))
    for processes in (1, 2):
        with pytest.raises(SourceError, match="a column cannot be converted to pandas"):
            etl.run(pipeline, etl.RunOptions(dry_run=True, processes=processes))
