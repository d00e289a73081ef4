"""Real database servers for SQL tests.

Locally a test skips when its server is down; with CI=true a missing server is a
failure, never a silent skip (DEVELOPERS.md).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"


def _server_or_skip(url: str) -> sa.Engine:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as exc:  # any driver error means the server is not usable
        engine.dispose()
        message = f"database server for {engine.url.render_as_string(hide_password=True)} is not reachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return engine


@pytest.fixture
def postgres_engine() -> Iterator[sa.Engine]:
    """An engine on the local PostgreSQL test database."""
    engine = _server_or_skip(POSTGRES_URL)
    yield engine
    engine.dispose()


@pytest.fixture
def mariadb_engine() -> Iterator[sa.Engine]:
    """An engine on the local MariaDB test database."""
    engine = _server_or_skip(MARIADB_URL)
    yield engine
    engine.dispose()


@pytest.fixture
def unique_table() -> str:
    """A table name no other test (or concurrent run) uses."""
    return f"t_{uuid.uuid4().hex[:12]}"
