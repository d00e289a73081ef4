"""No traceback, ever (issue 12 item 5): random definitions and random CSV bytes through the
CLI end in an SPEC §2 exit code with no traceback on stderr, and no exception escapes.

In-process (click's runner) so hypothesis can afford its examples; bounded counts, no
deadline. An "internal error" line would mean the crash handler caught a bug: that
fails the test too, so the handler cannot hide what this test exists to find.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.cli import main

BASE: dict[str, Any] = {
    "name": "fuzz",
    "source": {"type": "csv", "path": "data.csv", "chunk_size": 7},
    "event": {
        "source": "shop",
        "event_name": "order_shipped",
        "occurred_at": "ts",
        "customer": {"external_id": "cid", "email": "email"},
        "properties": {"total": "total"},
    },
    "destination": {"store_id": "store-1", "token": "tok", "base_url": "http://127.0.0.1:9"},
}
GOOD_CSV = b"cid,email,ts,total\nc-1,a@b.com,2024-03-01T00:00:00Z,1.5\n"
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "csv",
            "parquet",
            "sql",
            "data.csv",
            "${X}",
            "${X:-y}",
            "{store_id}",
            "/p/{x}",
            "{",
            "..",
            "http://h:99999",
            "tok\r\nX: 1",
            "ts",
            "cid",
        ]
    ),
)
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(string.ascii_lowercase + "_", max_size=8), inner, max_size=3),
    ),
    max_leaves=8,
)
paths = st.sampled_from(
    [
        ("name",),
        ("source",),
        ("source", "type"),
        ("source", "path"),
        ("source", "chunk_size"),
        ("source", "incremental"),
        ("event",),
        ("event", "occurred_at"),
        ("event", "customer"),
        ("event", "customer", "email"),
        ("event", "properties"),
        ("event", "id"),
        ("event", "timezone"),
        ("destination",),
        ("destination", "store_id"),
        ("destination", "token"),
        ("destination", "path"),
        ("destination", "base_url"),
        ("destination", "rate_limit"),
        ("state",),
    ]
)


def mutated(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def check(folder: Path, *args: str) -> None:
    result = CliRunner().invoke(main, [*args[:1], str(folder / "p.yaml"), *args[1:]])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert result.exit_code in (0, 1, 2, 3), (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr, result.stderr


@SETTINGS
@given(path=paths, value=trees)
def test_random_definitions(tmp_path_factory: Any, path: tuple[str, ...], value: Any) -> None:
    folder = tmp_path_factory.mktemp("def")
    (folder / "data.csv").write_bytes(GOOD_CSV)
    (folder / "p.yaml").write_text(yaml.safe_dump(mutated(path, value)))
    check(folder, "validate")
    check(folder, "run", "--dry-run", "--limit", "3")


@SETTINGS
@given(text=st.text(max_size=200))
def test_random_definition_text(tmp_path_factory: Any, text: str) -> None:
    folder = tmp_path_factory.mktemp("txt")
    (folder / "p.yaml").write_text(text, encoding="utf-8")
    check(folder, "validate")


csv_cells = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        [
            "",
            "NULL",
            "NaN",
            "2024-03-01",
            "2024-03-01T00:00:00Z",
            "a@b.com",
            "+14155552671",
            "1e309",
            '"',
            "\r",
        ]
    ),
)


@SETTINGS
@given(
    raw=st.binary(max_size=300),
    rows=st.lists(st.lists(csv_cells, max_size=5), max_size=6),
    use_rows=st.booleans(),
)
def test_random_csv_bytes(
    tmp_path_factory: Any, raw: bytes, rows: list[list[str]], use_rows: bool
) -> None:
    folder = tmp_path_factory.mktemp("csv")
    body = (
        "\n".join(",".join(row) for row in rows).encode("utf-8", "surrogatepass")
        if use_rows
        else raw
    )
    (folder / "data.csv").write_bytes(b"cid,email,ts,total\n" + body)
    (folder / "p.yaml").write_text(yaml.safe_dump(BASE))
    check(folder, "validate")
    check(folder, "run", "--dry-run")
