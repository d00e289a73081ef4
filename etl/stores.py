"""Which store each row goes to, when the rows name their stores (SPEC §10).

A row's store must be one URL path segment (the check `etl.checks` makes on a constant
store id) and, for a real run, have credentials (and be in the allow-list when a
credentials file is given); otherwise the row is rejected under rule `store` like any
other bad value, and the others go on. Store ids are text on the wire and in the id
hash: a CSV column read as integers (`1001`) gives the same store, the same URL and
the same event ids as the constant `"1001"`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from etl.checks import store_id_problem
from etl.quarantine import REJECT_REASON, REJECT_RULE
from etl.store_credentials import StoreCredentials

#: The reject rule of a row whose store cannot be sent to.
RULE = "store"


def store_text(value: Any) -> str | None:
    """A store cell as its id: integers (also as floats, from a column with nulls) as digits."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)


class StoreRouter:
    """Splits valid rows into sendable ones (their store column as text) and `store` rejects."""

    def __init__(self, column: str, credentials: StoreCredentials | None) -> None:
        self.column = column
        self.credentials = credentials  # None: store ids are only checked (validate, dry run)
        self._verdicts: dict[str, str | None] = {}  # store -> reject reason, or None when fine

    def _problem(self, store: str | None) -> str | None:
        if store is None:
            return f"no store: column {self.column!r} is empty"
        if store not in self._verdicts:
            problem = store_id_problem(store)
            if problem is None and self.credentials is not None:
                found = self.credentials.lookup(store)
                problem = found if isinstance(found, str) else None
            self._verdicts[store] = problem
        return self._verdicts[store]

    def split(self, valid: pd.DataFrame, chunk: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(rows to send with their store as text, the original rows rejected under `store`)."""
        stores = [store_text(value) for value in valid[self.column].astype(object).tolist()]
        problems = [self._problem(store) for store in stores]
        bad = np.array([problem is not None for problem in problems], dtype=bool)
        kept = valid.assign(**{self.column: pd.Series(stores, index=valid.index, dtype=object)})
        if not bad.any():
            return kept, chunk.iloc[:0].assign(**{REJECT_RULE: [], REJECT_REASON: []})
        rejects = chunk.loc[valid.index[bad]].copy()
        rejects[REJECT_RULE] = RULE
        rejects[REJECT_REASON] = [problem for problem in problems if problem is not None]
        return kept.iloc[~bad], rejects
