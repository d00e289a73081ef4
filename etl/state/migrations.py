"""Creates a state store, or upgrades one in place to `SCHEMA_VERSION` (never loses a row).

Everything happens in one transaction that holds the database's write lock (SQLite
`BEGIN IMMEDIATE`, a PostgreSQL advisory lock, a MySQL named lock), so two processes
opening a fresh store at once do not both create it: the second waits, then finds it
made. MySQL/MariaDB commit each DDL statement on their own; there a migration killed
half-way is not rolled back.

Version 1 keyed state by pipeline only; version 2 keys it by pipeline and destination
(SPEC §6). Rows of version 1 get the empty destination `scope.LEGACY`, which the first
pipeline that opens the store with its destination adopts (`StateStore.adopt_legacy`).
Version 3 adds the tables of leased work (SPEC §11): leases, workers, rounds, pending.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from etl.errors import StateError
from etl.state.schema import (
    BASE_URL_LENGTH,
    LEASE_TABLES,
    SCHEMA_VERSION,
    STORE_ID_LENGTH,
    events,
    metadata,
    runs,
    schema_version,
    watermarks,
)
from etl.state.scope import LEGACY

#: Any number, the same in every process: the key of the PostgreSQL/MySQL schema lock.
_LOCK_KEY = 0x45544C53


def create_or_upgrade(engine: sa.Engine) -> None:
    """Create missing tables, run the migrations the store lacks, stamp the version."""
    with _schema_lock(engine) as connection:
        stored = _stored_version(connection)
        if stored is not None and stored > SCHEMA_VERSION:
            where = engine.url.render_as_string(hide_password=True)
            raise StateError(
                f"state store {where} has schema version {stored}, newer than this etl "
                f"understands ({SCHEMA_VERSION}); upgrade yotpo-events-etl"
            )
        first = SCHEMA_VERSION + 1 if stored is None else stored + 1  # a new store needs none
        for version in range(first, SCHEMA_VERSION + 1):
            STEPS[version](connection)
            connection.execute(schema_version.insert().values(version=version))
        metadata.create_all(connection)
        if stored is None:
            connection.execute(schema_version.insert().values(version=SCHEMA_VERSION))


@contextmanager
def _schema_lock(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that no other schema creator can enter until commit."""
    with engine.connect() as connection:
        name = connection.dialect.name
        if name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        elif name in ("mysql", "mariadb"):
            connection.execute(sa.text("SELECT GET_LOCK(:key, 60)"), {"key": f"etl_{_LOCK_KEY}"})
        try:
            yield connection
            connection.commit()
        finally:
            if name in ("mysql", "mariadb"):
                connection.rollback()
                release = sa.text("SELECT RELEASE_LOCK(:key)")
                connection.execute(release, {"key": f"etl_{_LOCK_KEY}"})


def _stored_version(connection: sa.Connection) -> int | None:
    """The store's schema version; None for an empty database."""
    inspector = sa.inspect(connection)
    if inspector.has_table(schema_version.name):
        stored = connection.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
        if stored is not None:
            return int(stored)
    if not inspector.has_table(events.name):
        return None
    # Tables without a stamp: a version-1 creator died between creating and stamping.
    columns = {column["name"] for column in inspector.get_columns(events.name)}
    return SCHEMA_VERSION if "store_id" in columns else 1


def _to_v2(connection: sa.Connection) -> None:
    """Key events, watermarks and runs by destination; older rows get the legacy one."""
    for column, length in (("base_url", BASE_URL_LENGTH), ("store_id", STORE_ID_LENGTH)):
        connection.execute(
            sa.text(f"ALTER TABLE {runs.name} ADD COLUMN {column} VARCHAR({length})")
        )
    legacy = dict(zip(("base_url", "store_id"), LEGACY, strict=True))
    for table in (events, watermarks):
        _rebuild(connection, table, legacy)


def _rebuild(connection: sa.Connection, table: sa.Table, added: dict[str, str]) -> None:
    """Recreate `table` with its current definition and copy every row, filling `added`.

    A rebuild, not ALTER TABLE: SQLite cannot change a primary key in place.
    """
    inspector = sa.inspect(connection)
    for index in table.indexes:  # index names are per schema: free them for the new table
        if any(found["name"] == index.name for found in inspector.get_indexes(table.name)):
            connection.execute(sa.schema.DropIndex(index))
    old_name = f"{table.name}_v1"
    connection.execute(sa.text(f"ALTER TABLE {table.name} RENAME TO {old_name}"))
    old = sa.Table(old_name, sa.MetaData(), autoload_with=connection)
    table.create(connection)
    names = [c.name for c in table.columns if c.name in old.c or c.name in added]
    copied = [
        old.c[name] if name in old.c else sa.literal(added[name]).label(name) for name in names
    ]
    connection.execute(table.insert().from_select(names, sa.select(*copied)))
    connection.execute(sa.text(f"DROP TABLE {old_name}"))


def _to_v3(connection: sa.Connection) -> None:
    """Add the tables of leased work; no existing table changes."""
    for table in LEASE_TABLES:
        table.create(connection, checkfirst=True)


#: The step that brings a store from version N-1 to N.
STEPS: dict[int, Callable[[sa.Connection], None]] = {2: _to_v2, 3: _to_v3}
