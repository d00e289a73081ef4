"""Hypothesis: ids do not depend on chunking or row order; bodies never hold a null."""

from __future__ import annotations

import orjson
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.definition import EventSpec
from etl.transform import Transformer
from etl.validate import Validator

EVENT = EventSpec.model_validate(
    {"source": "app", "event_name": "e", "occurred_at": "ts",
     "customer": {"external_id": "cid"}, "properties": {"p": "p"}}
)
ROWS = st.lists(
    st.tuples(st.integers(0, 10**12), st.integers(0, 10**9), st.one_of(st.none(), st.floats(allow_nan=True), st.text())),
    min_size=1, max_size=30,
)


def _ids(rows: list[tuple]) -> list[str]:
    frame = pd.DataFrame(
        {"cid": pd.array([r[0] for r in rows], dtype="Int64"),
         "ts": pd.to_datetime([r[1] for r in rows], unit="s", utc=True),
         "p": pd.Series([r[2] for r in rows], dtype=object)}
    )
    events = Transformer(EVENT, "store").to_events(Validator(EVENT).split(frame).valid)
    for event in events:
        body = orjson.loads(event.body)
        assert None not in body["customer"].values()
        assert None not in body.get("properties", {}).values()
    return [e.id for e in events]


@settings(max_examples=30, deadline=None)
@given(ROWS, st.integers(1, 5))
def test_ids_stable_under_chunking_and_order(rows: list[tuple], size: int) -> None:
    whole = _ids(rows)
    chunked = [i for start in range(0, len(rows), size) for i in _ids(rows[start:start + size])]
    assert chunked == whole
    assert sorted(_ids(rows[::-1])) == sorted(whole)
