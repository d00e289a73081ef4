"""Sources (SPEC §9): CSV, Parquet and SQL read in bounded chunks with stable dtypes.

Every extractor yields pandas frames of at most `source.chunk_size` rows holding only
the requested columns, with one dtype per column for the whole run, because event ids
hash type-tagged values (1, 1.0 and "1" differ). The dtypes every extractor produces:

    text                    object (Python str, None for null)
    integers                Int64  (always nullable, so a chunk with a NULL never turns
                                    a column into float64)
    floats                  float64 (NaN for null)
    decimals                object (decimal.Decimal, exact; Parquet decimal128/256, SQL
                                    NUMERIC/DECIMAL)
    booleans                boolean
    timestamps              datetime64 (Parquet: unit and time zone as stored; SQL:
                                    microseconds, time-zone-aware values in UTC)
    dates                   object (datetime.date)

The frame index is the row's position in the source (before the window filter), so
labels are unique across chunks.

    >>> extractor = open_extractor(pipeline.source)
    >>> extractor.columns()
    ['order_id', 'customer_id', ...]
    >>> for frame in extractor.chunks(["order_id"], Window("updated_at", after="2024-05-01")):
    ...     ...
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pandas as pd

from etl.definition import SourceSpec

if TYPE_CHECKING:
    from etl.extract.files import ArrowChunk


@dataclass(frozen=True)
class Window:
    """The incremental window (SPEC §6): `after < cursor <= until`, either bound optional.

    `after` is a native value from the state store (str/int/float/Decimal/date/datetime)
    or a string from `--since`; `until` is a string from `--until`. Rows whose cursor is
    null are kept only when there is no `after` bound (they cannot be "newer" than one).
    """

    cursor: str
    after: Any = None
    until: Any = None


class Extractor(Protocol):
    """What the pipeline needs from a source."""

    def columns(self) -> list[str]:
        """The source's column names, read cheaply (header, schema or a zero-row query)."""
        ...

    def chunks(self, columns: list[str], window: Window | None) -> Iterator[pd.DataFrame]:
        """Frames of at most chunk_size rows holding only `columns`, filtered by `window`."""
        ...

    def estimated_rows(self) -> int | None:
        """Rows `chunks` will yield in all, when that was cheap to learn; else None.

        Known once `chunks` has started: Parquet from the files' metadata, CSV from
        its typing pass, SQL from `SELECT count(*)` when `source.count` allows it.
        Feeds the whole-source ETA (SPEC §12); never a reason to read the data twice.
        """
        ...


@runtime_checkable
class ArrowSource(Protocol):
    """A source that also yields its chunks as Arrow (CSV and Parquet), so that other
    processes can prepare them (`etl.runner.processes`)."""

    def arrow_chunks(self, columns: list[str], window: Window | None) -> Iterator[ArrowChunk]:
        """The chunks `chunks` yields, as Arrow and not yet filtered by `window`
        (`etl.extract.files.frame_of` makes the frame)."""
        ...


def open_extractor(source: SourceSpec) -> Extractor:
    """The extractor for `source.type` (csv | parquet | sql); nothing is read yet."""
    if source.type == "csv":
        from etl.extract.files import CsvExtractor

        return CsvExtractor(source)
    if source.type == "parquet":
        from etl.extract.files import ParquetExtractor

        return ParquetExtractor(source)
    if source.type == "sql":
        from etl.extract.sql import SqlExtractor

        return SqlExtractor(source)
    raise ValueError(f"unknown source type {source.type!r}")
