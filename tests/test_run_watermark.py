"""The watermark never passes a failed row (SPEC §6)."""

from __future__ import annotations

import pandas as pd

from etl.runner.watermark import Watermark


def test_advances_to_the_largest_done_cursor() -> None:
    mark = Watermark()
    for cursor in (3, 9, 5):
        mark.done(cursor)
    assert mark.new_value(old=2) == 9


def test_stops_below_the_smallest_failed_cursor() -> None:
    mark = Watermark()
    mark.done(3)
    mark.blocked(6)
    mark.done(9)
    mark.done(5)
    assert mark.new_value(old=None) == 5


def test_keeps_the_old_value_when_a_failure_comes_below_done_rows() -> None:
    mark = Watermark()
    mark.done(9)
    mark.blocked(4)
    assert mark.new_value(old=2) == 2


def test_never_moves_backwards_and_ignores_nulls() -> None:
    mark = Watermark()
    mark.done(None)
    mark.done(float("nan"))
    mark.done(3)
    assert mark.new_value(old=7) == 7


def test_a_stored_watermark_of_another_form_gives_way_to_the_runs_own_maximum() -> None:
    """Earlier versions stored a naive cursor that was also occurred_at was stored as an aware UTC
    instant; the upgraded run reads naive values and must not fail comparing them."""
    mark = Watermark()
    mark.done(pd.Timestamp("2024-03-02 13:00:00"))
    assert mark.new_value(old=pd.Timestamp("2024-03-02 17:30:00", tz="UTC")) == pd.Timestamp(
        "2024-03-02 13:00:00"
    )
