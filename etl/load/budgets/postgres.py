"""A store's rate budget as one row of the PostgreSQL state database.

The slot is computed by ONE `INSERT ... ON CONFLICT DO UPDATE ... RETURNING`
statement: the conflicting row is locked before its SET list is evaluated, so
`clock_timestamp()` there is read under the lock, and concurrent workers are
served one after another in the database's own clock. `recent` keeps the last
floor(rate) slots, the 1 s window that no burst may exceed.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from etl.load.budgets.shared import MARGIN_S, SLACK_S, CoordinatorDown, Grant

TABLE = "etl_rate_budget"

_CREATE = sa.text(f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    budget text PRIMARY KEY,
    last_slot float8 NOT NULL,
    paused_until float8 NOT NULL,
    recent float8[] NOT NULL,
    now_s float8 NOT NULL
)""")

_NOW = sa.text("SELECT extract(epoch FROM clock_timestamp())::float8")

_RESERVE = sa.text(f"""
INSERT INTO {TABLE} AS b (budget, last_slot, paused_until, recent, now_s)
SELECT :budget, t.now + greatest(0, :pause), t.now + :pause, ARRAY[t.now + greatest(0, :pause)],
       t.now
FROM (SELECT extract(epoch FROM clock_timestamp())::float8 AS now) t
ON CONFLICT (budget) DO UPDATE SET (last_slot, paused_until, recent, now_s) = (
    SELECT s.slot, s.paused,
           (b.recent || s.slot)[greatest(1, cardinality(b.recent) + 2 - :window):],
           s.now
    FROM (
        SELECT greatest(
                   b.last_slot + :spacing, p.paused, p.now - {SLACK_S},
                   CASE WHEN :window > 0 AND cardinality(b.recent) >= :window
                        THEN b.recent[cardinality(b.recent) - :window + 1] + 1 + {MARGIN_S} END
               ) AS slot,
               p.paused, p.now
        FROM (SELECT c.now, greatest(b.paused_until, c.now + :pause) AS paused
              FROM (SELECT extract(epoch FROM clock_timestamp())::float8 AS now) c) p
    ) s
)
RETURNING last_slot, now_s, paused_until
""").bindparams(
    sa.bindparam("budget", type_=sa.Text),
    sa.bindparam("spacing", type_=sa.Float),
    sa.bindparam("window", type_=sa.Integer),
    sa.bindparam("pause", type_=sa.Float),
)


class PostgresBudget:
    """One store's slots in table `etl_rate_budget` of the state database (made on first use)."""

    def __init__(self, url: str, budget: str, connect_timeout_s: int = 5) -> None:
        self.budget = budget
        self.engine = sa.create_engine(
            url,
            pool_size=1,
            max_overflow=0,
            pool_pre_ping=True,
            connect_args={"connect_timeout": connect_timeout_s},
        )
        self.where = self.engine.url.render_as_string(hide_password=True)
        self._table_ready = False

    def reserve(self, spacing: float, window: int, pause_s: float) -> Grant:
        """Reserve the next slot (see module docstring); CoordinatorDown when unreachable."""
        params = {"budget": self.budget, "spacing": spacing, "window": window, "pause": pause_s}
        row = self._execute(_RESERVE, params)
        return Grant(slot=row[0], now=row[1], paused_until=row[2])

    def now(self) -> float:
        """The database's clock, seconds since the epoch."""
        return float(self._execute(_NOW, {})[0])

    def _execute(
        self, statement: sa.TextClause, params: dict[str, object]
    ) -> sa.Row[*tuple[Any, ...]]:
        try:
            with self.engine.begin() as connection:
                if not self._table_ready:
                    _create_table(connection)
                    self._table_ready = True
                return connection.execute(statement, params).one()
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise CoordinatorDown(_first_line(exc.orig)) from None

    def close(self) -> None:
        """Close the pool's connection."""
        self.engine.dispose()


def _create_table(connection: sa.Connection) -> None:
    """CREATE TABLE IF NOT EXISTS, which two first workers may race: the loser finds it made."""
    try:
        with connection.begin_nested():
            connection.execute(_CREATE)
    except sa.exc.IntegrityError:
        pass


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
