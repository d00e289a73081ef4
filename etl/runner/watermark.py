"""The watermark rule of SPEC §6: it advances past delivered or rejected rows, never past
a failed one.

    >>> mark = Watermark()
    >>> mark.done(3); mark.blocked(6); mark.done(9); mark.done(5)
    >>> mark.new_value(old=None)
    5

Only a complete read of the stored window may store the new value (`Plan.moves_watermark`
and a run that completed its extraction); this module only says what the value is.
"""

from __future__ import annotations

from typing import Any

import pandas as pd


class Watermark:
    """How far the incremental cursor may advance: past done rows, never past failed ones.

    Exact while failures arrive in cursor order; otherwise it keeps the old watermark
    (safe: diffing makes the re-read rows cost nothing to send).
    """

    def __init__(self) -> None:
        self.done_max: Any = None
        self.blocked_min: Any = None
        self.lost_track = False

    def done(self, cursor: Any) -> None:
        """A row with this cursor value is delivered, rejected or skipped as unchanged."""
        if cursor is None or pd.isna(cursor):
            return
        if self.blocked_min is not None and cursor >= self.blocked_min:
            return
        if self.done_max is None or cursor > self.done_max:
            self.done_max = cursor

    def blocked(self, cursor: Any) -> None:
        """A row with this cursor value failed: the watermark stays below it."""
        if cursor is None or pd.isna(cursor):
            return
        if self.blocked_min is None or cursor < self.blocked_min:
            self.blocked_min = cursor
            if self.done_max is not None and self.done_max >= cursor:
                self.lost_track = True

    def hold(self) -> None:
        """Something this run cannot see failed (another worker's event, SPEC §11): keep the
        old watermark."""
        self.lost_track = True

    def new_value(self, old: Any) -> Any:
        """The watermark after this run, given the stored one (never moves backwards)."""
        if self.lost_track or self.done_max is None:
            return old
        try:
            if old is not None and self.done_max <= old:
                return old
        except TypeError:  # stored by an older etl in another form (an aware UTC instant
            pass  # for a naive cursor): this run read past it, so its own maximum stands
        return self.done_max
