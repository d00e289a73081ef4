"""Definition-time checks through the CLI (SPEC §3, §7; issue 12 items 2 and 4, issue 11 items
3 and 4): every probe is one line naming file and key, exit 2, never the secret, never a
traceback; each command asks only for the values it uses; `.env` and `${VAR:-default}`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from etl.cli import main
from etl.definition import parse_pipeline

CSV = "order_id,customer_id,shipped_at\no-1,c-1,2024-03-01T12:30:00Z\n"


def definition(**destination: Any) -> dict[str, Any]:
    return {
        "name": "orders",
        "source": {"type": "csv", "path": "orders.csv"},
        "event": {
            "source": "shop",
            "event_name": "order_shipped",
            "occurred_at": "shipped_at",
            "customer": {"external_id": "customer_id"},
        },
        "destination": {"store_id": "store-1", "token": "good-token", **destination},
    }


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "orders.csv").write_text(CSV)
    for name in ("YOTPO_STORE_ID", "YOTPO_TOKEN", "YOTPO_API_SECRET", "YOTPO_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(folder: Path, data: dict[str, Any] | str | bytes, name: str = "pipe.yaml") -> Path:
    file = folder / name
    if isinstance(data, bytes):
        file.write_bytes(data)
    else:
        file.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return file


def etl(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


LINE_BREAK = "contains a line break or NUL (a header injection or a stray newline from a file)"
SEGMENT = (
    " is not one URL path segment: use letters, digits and . _ ~ - only (no / ? # % or spaces)"
)
#: (key, value, the problem printed): the probes of issue 12, one per line.
PROBES = [
    ("token", "tok\r\nX-Injected: 1", LINE_BREAK),
    ("token", "sandbox-token\n", LINE_BREAK),
    ("token", "tökén-secret", "contains non-ASCII characters (HTTP headers carry ASCII only)"),
    ("token", "tok en", "contains whitespace (a stray space or tab?)"),
    ("secret", "sec\x07ret", "contains control characters"),
    ("store_id", "../../admin", "'../../admin'" + SEGMENT),
    ("store_id", "s?x=1", "'s?x=1'" + SEGMENT),
    ("store_id", "s#frag", "'s#frag'" + SEGMENT),
    ("store_id", "..", "'..' is not a store id (it would climb the URL path)"),
    (
        "path",
        "/core/v3/stores/{shop}/custom_events",
        "unknown placeholder {shop}; known: {store_id}",
    ),
    (
        "path",
        "/core/v3/stores/{store_id/custom_events",
        "'/core/v3/stores/{store_id/custom_events': "
        "expected '}' before end of string (write '{{' for a literal brace)",
    ),
    (
        "path",
        "core/v3/stores/{store_id}/custom_events",
        "'core/v3/stores/{store_id}/custom_events' must start with '/'",
    ),
    (
        "base_url",
        "http://127.0.0.1:99999",
        "'http://127.0.0.1:99999' is not a URL: Port out of range 0-65535",
    ),
    (
        "base_url",
        "http://api.yotpo.com:abc",
        "'http://api.yotpo.com:abc' is not a URL: Port could not be cast to integer value as 'abc'",
    ),
    ("base_url", "http://", "'http://' has no host"),
    ("base_url", "ftp://api.yotpo.com", "'ftp://api.yotpo.com': the scheme must be http or https"),
]


@pytest.mark.parametrize(
    ("key", "value", "problem"), PROBES, ids=[f"{k}={v!r}" for k, v, _ in PROBES]
)
def test_a_bad_value_is_one_line_naming_the_key(
    project: Path, key: str, value: str, problem: str
) -> None:
    file = write(project, definition(**{key: value}))
    result = etl("run", str(file), "--dry-run")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == f"error: {file}: destination.{key}: {problem}\n"
    if key in ("token", "secret"):
        assert value.strip() not in result.stderr


def test_a_good_destination_passes_every_check(project: Path) -> None:
    pipeline = parse_pipeline(
        write(
            project,
            definition(
                base_url="https://api.yotpo.com:443/",
                path="/v3/{store_id}/events",
                store_id="Ab-1_x.y~z",
            ),
        )
    )
    assert pipeline.destination.events_url == "https://api.yotpo.com:443/v3/Ab-1_x.y~z/events"


BILLION_LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
    "name: ${BOMB:-x}\n"
)


def test_the_alias_bomb_is_refused_at_once(project: Path) -> None:
    """In a subprocess, so a regression costs one killed child, not the test session."""
    file = write(project, BILLION_LAUGHS)
    result = subprocess.run(
        [sys.executable, "-m", "etl", "validate", str(file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"error: {file}: (file): expands to more than 100,000 values "
        "(YAML aliases nested too deep: an alias bomb?)\n"
    )


@pytest.mark.parametrize(
    ("content", "where", "problem"),
    [
        pytest.param(
            b"name: caf\xe9\n",
            "line 1",
            "not UTF-8 text (byte 0xe9); save the file as UTF-8",
            id="latin-1",
        ),
        pytest.param(
            b"name: x\n#" + b"x" * (1024 * 1024),
            "(file)",
            "larger than 1,048,576 bytes; not a pipeline definition",
            id="too-large",
        ),
        pytest.param(
            b"a: &a [*a]\n", "line 1", "a YAML alias refers to itself", id="recursive-alias"
        ),
        pytest.param(b"[" * 20000, "(file)", "YAML nested too deeply", id="deep-nesting"),
        pytest.param(
            b"name: x\nsource: \x1f\n",
            "line 2",
            "not valid YAML: a control character (#x001f) is not allowed",
            id="control-char",
        ),
    ],
)
def test_an_unreadable_file_is_one_line(
    project: Path, content: bytes, where: str, problem: str
) -> None:
    file = write(project, content)
    result = etl("validate", str(file))
    assert (result.exit_code, result.stderr) == (2, f"error: {file}: {where}: {problem}\n")


def unresolved() -> dict[str, Any]:
    return definition(store_id="${YOTPO_STORE_ID}", token="${YOTPO_TOKEN}")


def test_validate_and_status_need_no_store_id_and_no_token(project: Path) -> None:
    file = write(project, unresolved())
    validated = etl("validate", str(file))
    assert (validated.exit_code, validated.stderr.count("error")) == (0, 0)
    assert validated.stdout.startswith("orders: 1 rows read, 1 valid, 0 rejected")
    status = etl("status", str(file))
    assert (status.exit_code, status.stderr.count("error")) == (0, 0)


def test_a_dry_run_needs_the_store_id_only(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = write(project, unresolved())
    missing = etl("run", str(file), "--dry-run")
    assert (missing.exit_code, missing.stderr) == (
        2,
        (
            f"error: {file}: destination.store_id: environment variable YOTPO_STORE_ID is not set "
            "(nor in a .env file)\n"
        ),
    )
    monkeypatch.setenv("YOTPO_STORE_ID", "store-1")
    assert etl("run", str(file), "--dry-run").exit_code == 0


def test_a_real_run_names_each_missing_value_once(project: Path) -> None:
    file = write(project, unresolved())
    result = etl("run", str(file))
    assert (result.exit_code, result.stderr) == (
        2,
        (
            f"error: {file}: destination.store_id: environment variable YOTPO_STORE_ID is not set "
            "(nor in a .env file)\n"
            f"error: {file}: destination.token: environment variable YOTPO_TOKEN is not set "
            "(nor in a .env file)\n"
        ),
    )


def test_a_missing_variable_elsewhere_is_one_line_not_two(project: Path) -> None:
    data = definition()
    data["event"]["occurred_at"] = "${WHEN_COLUMN}"
    file = write(project, data)
    result = etl("validate", str(file))
    assert (result.exit_code, result.stderr) == (
        2,
        (
            f"error: {file}: event.occurred_at: environment variable WHEN_COLUMN is not set "
            "(nor in a .env file)\n"
        ),
    )


def test_variables_come_from_env_then_the_pipeline_folder_then_the_cwd(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = project / "pipelines"
    folder.mkdir()
    (folder / "orders.csv").write_text(CSV)
    file = write(folder, unresolved())
    (folder / ".env").write_text("YOTPO_STORE_ID=folder-store\n")
    (project / ".env").write_text("YOTPO_STORE_ID=cwd-store\nexport YOTPO_TOKEN='cwd-token'\n")
    pipeline = parse_pipeline(file)
    assert pipeline.destination.store_id == "folder-store"
    assert pipeline.destination.token.get_secret_value() == "cwd-token"
    monkeypatch.setenv("YOTPO_STORE_ID", "env-store")
    assert parse_pipeline(file).destination.store_id == "env-store"


def test_a_default_applies_when_the_variable_is_unset_or_empty(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = write(
        project,
        definition(
            store_id="${YOTPO_STORE_ID:-demo-store}",
            base_url="${YOTPO_BASE_URL:-http://127.0.0.1:8787}",
        ),
    )
    pipeline = parse_pipeline(file)
    assert (pipeline.destination.store_id, pipeline.destination.base_url) == (
        "demo-store",
        "http://127.0.0.1:8787",
    )
    monkeypatch.setenv("YOTPO_STORE_ID", "")
    assert parse_pipeline(file).destination.store_id == "demo-store"
    monkeypatch.setenv("YOTPO_STORE_ID", "live-store")
    assert parse_pipeline(file).destination.store_id == "live-store"
