"""The state store's tables, its schema version, and how loose values are stored.

Portable across SQLite, PostgreSQL and MySQL/MariaDB: plain strings, integers and
blobs; times are naive UTC in the database and aware UTC in Python; cursor and
watermark values are JSON text tagged with their Python type, so an `int` comes
back an `int` and an aware `datetime` keeps its instant.
"""

from __future__ import annotations

import json
import numbers
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from etl.events import Status

#: Bumped whenever a table changes (with a step in `etl.state.migrations`); the store
#: refuses a database written by a newer version.
SCHEMA_VERSION = 3

#: A destination's columns (SPEC §6): the base URL without its trailing slash, and the
#: store as a column of its own, so a pipeline loading many stores (§10) keys each row by
#: its store. Sized so that MySQL's 3,072-byte key limit holds for the widest index.
BASE_URL_LENGTH = 190
STORE_ID_LENGTH = 100


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, naive UTC in every database (SQLite has no time zones)."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):  # DATETIME alone drops the microseconds
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = sa.MetaData()

schema_version = sa.Table(
    "etl_schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
)

runs = sa.Table(
    "etl_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("pipeline", sa.String(200), nullable=False, index=True),
    sa.Column("base_url", sa.String(BASE_URL_LENGTH)),  # NULL: a run from before version 2
    sa.Column("store_id", sa.String(STORE_ID_LENGTH)),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("ended_at", UtcDateTime),
    sa.Column("exit_code", sa.Integer),
    sa.Column("summary", sa.Text),  # the run's JSON report
)

# One row per (pipeline, destination, event id): its latest outcome. WITHOUT ROWID on
# SQLite, so the primary key is the table and a diff lookup touches one b-tree.
events = sa.Table(
    "etl_events",
    metadata,
    sa.Column("pipeline", sa.String(200), primary_key=True),
    sa.Column("base_url", sa.String(BASE_URL_LENGTH), primary_key=True),
    sa.Column("store_id", sa.String(STORE_ID_LENGTH), primary_key=True),
    sa.Column("event_id", sa.String(255), primary_key=True),
    sa.Column("payload_hash", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),  # cumulative across runs
    sa.Column("last_error", sa.Text),
    sa.Column("first_at", UtcDateTime, nullable=False),
    sa.Column("last_at", UtcDateTime, nullable=False),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("body", sa.LargeBinary),  # kept only while failed or rejected (to resend it)
    sa.Column("cursor", sa.Text),  # type-tagged, see encode_value
    sqlite_with_rowid=False,
)

#: Events not delivered: the few a run resends and `etl status` lists. Queries on them
#: repeat this literal term so that SQLite and PostgreSQL use the partial index below,
#: and the millions of delivered rows cost no index space (MySQL indexes every row).
NOT_DELIVERED = events.c.status != sa.literal_column(f"'{Status.DELIVERED.value}'")
sa.Index(
    "ix_etl_events_not_delivered",
    events.c.pipeline,
    events.c.base_url,
    events.c.store_id,
    events.c.status,
    events.c.event_id,  # failed events are resent in id order, page by page
    sqlite_where=NOT_DELIVERED,
    postgresql_where=NOT_DELIVERED,
)

watermarks = sa.Table(
    "etl_watermarks",
    metadata,
    sa.Column("pipeline", sa.String(200), primary_key=True),
    sa.Column("base_url", sa.String(BASE_URL_LENGTH), primary_key=True),
    sa.Column("store_id", sa.String(STORE_ID_LENGTH), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),  # type-tagged, see encode_value
)

# What a pipeline last sent (SPEC §6, type drift): per property its JSON type (role
# "property"), per id key column the type its values were hashed as (role "key").
sent_types = sa.Table(
    "etl_sent_types",
    metadata,
    sa.Column("pipeline", sa.String(200), primary_key=True),
    sa.Column("role", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)


# Leased work (SPEC §11; version 3). Workers of one pipeline on a PostgreSQL state share its
# work through these tables; a single process without `workers:` never writes them.
#
# A partition is (store, shard of the event-id hash); shard -1 of store "" is the reader's
# lease. `expires_at` is seconds since the epoch on the database's clock; `epoch` grows on
# every takeover, and an outcome is recorded only while its holder's epoch is current.
leases = sa.Table(
    "etl_leases",
    metadata,
    sa.Column("pipeline", sa.String(200), primary_key=True),
    sa.Column("base_url", sa.String(BASE_URL_LENGTH), primary_key=True),
    sa.Column("store_id", sa.String(STORE_ID_LENGTH), primary_key=True),
    sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("holder", sa.String(200)),
    sa.Column("epoch", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

# The live workers of a pipeline (a heartbeat each), for a fair share of the partitions.
workers = sa.Table(
    "etl_workers",
    metadata,
    sa.Column("pipeline", sa.String(200), primary_key=True),
    sa.Column("base_url", sa.String(BASE_URL_LENGTH), primary_key=True),
    sa.Column("worker", sa.String(200), primary_key=True),
    sa.Column("expires_at", sa.Float, nullable=False),
)

# One row per pipeline and base URL: the current round of work (workers that run together),
# whether its source has been read to the end, and its failed outcomes (which keep the
# watermark where it was).
rounds = sa.Table(
    "etl_rounds",
    metadata,
    sa.Column("pipeline", sa.String(200), primary_key=True),
    sa.Column("base_url", sa.String(BASE_URL_LENGTH), primary_key=True),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("read_done", sa.Boolean, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
)

# Events read but not yet sent, with their bodies: what every worker can see and the
# holder of each event's partition drains in `seq` order.
pending = sa.Table(
    "etl_pending",
    metadata,
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("pipeline", sa.String(200), nullable=False),
    sa.Column("base_url", sa.String(BASE_URL_LENGTH), nullable=False),
    sa.Column("store_id", sa.String(STORE_ID_LENGTH), nullable=False),
    sa.Column("shard", sa.Integer, nullable=False),
    sa.Column("event_id", sa.String(255), nullable=False),
    sa.Column("payload_hash", sa.String(128), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("cursor", sa.Text),
    sa.UniqueConstraint(
        "pipeline", "base_url", "store_id", "event_id", name="uq_etl_pending_event"
    ),
)
sa.Index(
    "ix_etl_pending_partition",
    pending.c.pipeline,
    pending.c.base_url,
    pending.c.store_id,
    pending.c.shard,
    pending.c.seq,
)

#: The tables version 3 added.
LEASE_TABLES = (leases, workers, rounds, pending)


def encode_value(value: Any) -> str | None:
    """A cursor or watermark as JSON text tagged with its type; None (or NaN/NaT) is None.

    >>> encode_value(5)
    '{"type": "int", "value": 5}'
    """
    if value is None or value != value:  # NaN and NaT: a row without a cursor value
        return None
    if isinstance(value, bool):
        tagged = {"type": "bool", "value": value}
    elif isinstance(value, numbers.Integral):  # also numpy integers, stored as int
        tagged = {"type": "int", "value": int(value)}
    elif isinstance(value, float):
        tagged = {"type": "float", "value": float(value)}
    elif isinstance(value, Decimal):
        tagged = {"type": "decimal", "value": str(value)}
    elif isinstance(value, str):
        tagged = {"type": "str", "value": value}
    elif isinstance(value, datetime):  # before date: a datetime is a date
        tagged = {"type": "datetime", "value": value.isoformat()}
    elif isinstance(value, date):
        tagged = {"type": "date", "value": value.isoformat()}
    else:
        raise TypeError(
            f"cannot store a {type(value).__name__} cursor value; "
            "use int, float, Decimal, str, date or datetime"
        )
    return json.dumps(tagged)


_DECODERS: dict[str, Any] = {
    "bool": bool,
    "int": int,
    "float": float,
    "decimal": Decimal,
    "str": str,
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
}


def decode_value(text: str | None) -> Any:
    """The Python value `encode_value` stored, of the same type."""
    if text is None:
        return None
    tagged = json.loads(text)
    return _DECODERS[tagged["type"]](tagged["value"])
