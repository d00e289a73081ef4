"""Pipeline definitions (SPEC §3): YAML -> a frozen, typed, fully checked model.

The whole file is checked before any row is read, and every problem is reported
at once as `file: key: problem`, so a scheduled run fails fast and legibly. Paths
resolve against the pipeline file's folder so a cron job behaves the same from
any working directory.

    >>> pipeline = parse_pipeline("pipelines/orders_shipped.yaml")
    >>> pipeline.source.chunk_size
    50000
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from etl import checks, redact, wire
from etl.errors import DefinitionError
from etl.variables import Substitution, environment
from etl.yaml_file import YamlFileError, read_yaml

PROPERTY_NAME = re.compile(r"^[A-Za-z0-9_]+$")
#: The state store when a definition names none: a SQLite file beside the pipeline file.
DEFAULT_STATE = ".etl/state.db"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnRef(_Frozen):
    """A value read from a source column rather than a constant."""

    column: str = Field(min_length=1)


#: A constant string, or `{column: name}`.
ConstOrColumn = str | ColumnRef


class Incremental(_Frozen):
    """Nightly-sync settings (SPEC §6)."""

    cursor: str = Field(min_length=1, description="column whose growth marks new or changed rows")


#: The types a source column may be declared as (`source.columns`, SPEC §3, §9).
ColumnType = Literal["string", "integer", "float", "boolean", "timestamp", "date"]
#: CSV cells read as null when `source.null_values` is not given (SPEC §3): the markers
#: pyarrow's CSV reader and pandas both treat as missing, as exports write them.
DEFAULT_NULL_VALUES = ("", "NULL", "null", "NaN", "nan", "N/A", "n/a", "NA", "#N/A")
_CSV_ONLY = ("null_values", "delimiter", "encoding")


class SourceSpec(_Frozen):
    """Where the rows come from (SPEC §9)."""

    type: Literal["csv", "parquet", "sql"]
    path: str | None = None
    url: SecretStr | None = None
    query: str | None = None
    chunk_size: Annotated[int, Field(gt=0)] = 50_000
    incremental: Incremental | None = None
    count: bool = False  # sql: run SELECT count(*) of the query first, for a whole-source ETA
    columns: dict[str, ColumnType] = Field(default_factory=dict)
    null_values: tuple[str, ...] = DEFAULT_NULL_VALUES
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8"

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value

    @field_validator("delimiter")
    @classmethod
    def _usable_delimiter(cls, value: str) -> str:
        if value in ('"', "\n", "\r"):
            raise ValueError(f"{value!r} cannot be a CSV delimiter")
        return value

    @model_validator(mode="after")
    def _fields_for_type(self) -> SourceSpec:
        if self.type != "csv":
            given = [key for key in _CSV_ONLY if key in self.model_fields_set]
            if given:
                raise ValueError(f"source.{given[0]}: applies to a csv source only")
        if self.type in ("csv", "parquet"):
            if not self.path:
                raise ValueError(f"source.path: required for a {self.type} source")
            if self.url or self.query:
                raise ValueError(f"source: url/query do not apply to a {self.type} source")
            if self.count:
                raise ValueError(
                    f"source.count: applies to sql only (a {self.type} source's size "
                    "is known without it)"
                )
        else:
            if not self.url or not self.query:
                raise ValueError("source: a sql source needs both url and query")
            if self.path:
                raise ValueError("source.path: does not apply to a sql source; use query")
        return self


class IdSpec(_Frozen):
    """How the event id is made (SPEC §4): from key columns, or taken from a column."""

    key: tuple[str, ...] | None = None
    column: str | None = None

    @model_validator(mode="after")
    def _one_way(self) -> IdSpec:
        if self.key is not None and self.column is not None:
            raise ValueError("event.id: give either key or column, not both")
        if self.key is not None and len(self.key) == 0:
            raise ValueError("event.id.key: must name at least one column")
        return self


def _check_property_names(value: dict[str, str]) -> dict[str, str]:
    bad = [name for name in value if not PROPERTY_NAME.match(name)]
    if bad:
        raise ValueError(
            f"property name {bad[0]!r} must match [A-Za-z0-9_]+ (use underscores, not spaces)"
        )
    return value


class CustomerSpec(_Frozen):
    """Which columns identify the customer, and the customer's properties."""

    external_id: str | None = None
    email: str | None = None
    phone_number: str | None = None
    default_region: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    properties: dict[str, str] = Field(default_factory=dict)

    _names = field_validator("properties")(_check_property_names)

    @model_validator(mode="after")
    def _some_identifier(self) -> CustomerSpec:
        if not (self.external_id or self.email or self.phone_number):
            raise ValueError("event.customer: map at least one of external_id, email, phone_number")
        return self

    def identifier_columns(self) -> dict[str, str]:
        """Wire identifier name -> source column, for the identifiers that are mapped."""
        mapped = {
            wire.EXTERNAL_ID: self.external_id,
            wire.EMAIL: self.email,
            wire.PHONE_NUMBER: self.phone_number,
        }
        return {name: column for name, column in mapped.items() if column}


class EventSpec(_Frozen):
    """How a source row becomes an event (SPEC §3, §4)."""

    source: ConstOrColumn
    event_name: ConstOrColumn
    occurred_at: str = Field(min_length=1)
    timezone: str = "UTC"
    id: IdSpec = Field(default_factory=IdSpec)
    customer: CustomerSpec
    properties: dict[str, str] = Field(default_factory=dict)

    _names = field_validator("properties")(_check_property_names)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    def id_key_columns(self) -> tuple[str, ...]:
        """The columns hashed into the id: `id.key`, else customer identifiers + occurred_at."""
        if self.id.key is not None:
            return self.id.key
        return (*self.customer.identifier_columns().values(), self.occurred_at)


class Destination(_Frozen):
    """The API endpoint and how hard to drive it (SPEC §7).

    `store_id` and the credentials may be absent: only the commands that use them
    require them (`Pipeline.require`), so `etl validate` runs without secrets.
    """

    store_id: str | ColumnRef | None = None  # a constant, or each row's store (SPEC §10)
    credentials: str | None = None  # YAML file: store id -> {token} | {secret}; the allow-list
    token_file: str | None = None  # one file per store, e.g. /run/secrets/yotpo/{store_id}
    token: SecretStr | None = None
    secret: SecretStr | None = None
    base_url: str = "https://api.yotpo.com"
    path: str = wire.DEFAULT_PATH
    rate_limit: Annotated[float, Field(gt=0)] = 5.0
    concurrency: Annotated[int, Field(gt=0, le=1024)] = 8
    timeout: Annotated[float, Field(gt=0)] = 30.0
    max_retries: Annotated[int, Field(ge=0)] = 8
    max_pause: Annotated[float, Field(gt=0)] = 300.0  # a longer Retry-After is clamped to it
    max_response_bytes: Annotated[int, Field(ge=1024)] = 1 << 20  # a bigger answer is an error
    rate_limit_url: SecretStr | None = None  # redis://...: the store's budget shared in Redis (§11)

    @field_validator("rate_limit_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("redis://", "rediss://")):
            raise ValueError("must be a redis:// or rediss:// URL")
        return value

    @field_validator("token", "secret")
    @classmethod
    def _safe_credential(cls, value: SecretStr | None) -> SecretStr | None:
        return _checked(value, checks.credential_problem)

    @field_validator("store_id")
    @classmethod
    def _one_segment(cls, value: str | ColumnRef | None) -> str | ColumnRef | None:
        if isinstance(value, ColumnRef):
            return value
        return _checked(value, checks.store_id_problem)

    @field_validator("token_file")
    @classmethod
    def _one_file_per_store(cls, value: str | None) -> str | None:
        if value is not None and "{store_id}" not in value:
            raise ValueError("must contain {store_id} (one file per store)")
        return value

    @model_validator(mode="after")
    def _store_credentials(self) -> Destination:
        given = [key for key in ("credentials", "token_file") if getattr(self, key)]
        if len(given) > 1:
            raise ValueError("destination: give credentials or token_file, not both")
        if given and not isinstance(self.store_id, ColumnRef):
            raise ValueError(
                f"destination.{given[0]}: applies to store_id: {{column: name}} "
                "(a constant store takes token or secret)"
            )
        return self

    @property
    def store_column(self) -> str | None:
        """The column naming each row's store, when the stores come from the source."""
        return self.store_id.column if isinstance(self.store_id, ColumnRef) else None

    @property
    def per_store_credentials(self) -> bool:
        """Whether each store's token or secret comes from `credentials` or `token_file`."""
        return bool(self.credentials or self.token_file)

    @field_validator("path")
    @classmethod
    def _known_path(cls, value: str) -> str:
        return _checked(value, checks.path_problem)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _checked(value, checks.base_url_problem)

    @property
    def events_url(self) -> str:
        """The full URL events are posted to."""
        return self.base_url.rstrip("/") + self.path.format(store_id=self.store_id)


_Checked = TypeVar("_Checked", str, str | None, SecretStr | None)


def _checked(value: _Checked, problem_of: Callable[[str], str | None]) -> _Checked:
    """Run a `checks` function on a (possibly secret) value; raise its problem, if any."""
    if value is None:
        return value
    problem = problem_of(value.get_secret_value() if isinstance(value, SecretStr) else value)
    if problem:
        raise ValueError(problem)
    return value


#: What each command needs of the destination (SPEC §3): ids hash the store id.
_NEEDS: dict[str, tuple[str, ...]] = {
    "validate": (),
    "status": (),
    "dry-run": ("store_id",),
    "run": ("store_id", "credentials"),
}
#: Keys whose missing `${VAR}` waits until a command needs the value.
_DEFERRABLE = ("destination.store_id", "destination.token", "destination.secret")


class Workers(_Frozen):
    """Leased work (SPEC §11): several `etl run` processes of the pipeline share its work
    through a PostgreSQL state; each holds partitions (store, shard) for `lease` seconds
    at a time, renewed every third of it."""

    lease: float = Field(
        default=30.0,
        ge=1.0,
        le=3600.0,
        description="seconds a worker holds a partition without renewing it",
    )
    shards: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="partitions per store: how many workers one store can use",
    )


class Pipeline(_Frozen):
    """A checked pipeline definition; relative paths are already resolved."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    source: SourceSpec
    event: EventSpec
    destination: Destination
    state: str = DEFAULT_STATE
    workers: Workers | None = None  # leased work across processes; needs a PostgreSQL state
    file: Path = Field(exclude=True)
    #: dotted key -> why its value is missing, for values only some commands need.
    deferred: dict[str, str] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="after")
    def _workers_share_a_server(self) -> Pipeline:
        if self.workers is not None and not self.state_url.startswith("postgresql"):
            raise ValueError(
                "workers: leased work needs a PostgreSQL state "
                "(state: postgresql+psycopg://...), where every worker meets"
            )
        return self

    def require(self, command: str) -> None:
        """Raise DefinitionError if `command` (run, dry-run, validate, status) lacks a value."""
        problems: list[tuple[str, str]] = []
        destination = self.destination
        needs = _NEEDS.get(command, _NEEDS["run"])
        if "store_id" in needs and destination.store_id is None:
            key = "destination.store_id"
            problems.append((key, self.deferred.get(key, f"required for {command}")))
        if (
            "credentials" in needs
            and destination.token is None
            and destination.secret is None
            and not destination.per_store_credentials
        ):
            deferred = [(k, v) for k, v in self.deferred.items() if k != "destination.store_id"]
            choices = (
                "token, secret, credentials or token_file"
                if destination.store_column
                else "token or secret"
            )
            missing = ("destination", f"give {choices} (required for {command})")
            problems += deferred or [missing]
        if problems:
            raise DefinitionError(self.file, problems)

    @property
    def folder(self) -> Path:
        """The pipeline file's folder, against which relative paths resolve."""
        return self.file.parent

    @property
    def rejects_dir(self) -> Path:
        """Where this pipeline's quarantine files go (SPEC §5)."""
        return self.folder / ".etl" / "rejects" / self.name

    @property
    def state_url(self) -> str:
        """The state store as a SQLAlchemy URL (a bare path means a SQLite file)."""
        if "://" in self.state:
            return self.state
        return f"sqlite:///{self.state}"

    def mapped_columns(self) -> list[str]:
        """Every source column the definition refers to, in a stable order, once each."""
        return list(self.column_keys())

    def column_keys(self) -> dict[str, str]:
        """Every source column the definition refers to -> the key that names it first."""
        event = self.event
        references: list[tuple[str, str]] = [
            (value.column, f"event.{key}.column")
            for key, value in (("source", event.source), ("event_name", event.event_name))
            if isinstance(value, ColumnRef)
        ]
        references.append((event.occurred_at, "event.occurred_at"))
        if self.destination.store_column:
            references.append((self.destination.store_column, "destination.store_id.column"))
        customer = event.customer
        references += [(c, f"event.customer.{n}") for n, c in customer.identifier_columns().items()]
        references += [
            (c, f"event.customer.properties.{n}") for n, c in customer.properties.items()
        ]
        references += [(c, f"event.properties.{n}") for n, c in event.properties.items()]
        references += [(c, f"event.id.key[{i}]") for i, c in enumerate(event.id.key or ())]
        if event.id.column:
            references.append((event.id.column, "event.id.column"))
        if self.source.incremental:
            references.append((self.source.incremental.cursor, "source.incremental.cursor"))
        keys: dict[str, str] = {}
        for column, key in references:
            keys.setdefault(column, key)
        return keys


def _resolve_paths(raw: dict[str, Any], folder: Path, problems: list[tuple[str, str]]) -> None:
    """Make source, query and state paths absolute, relative to the pipeline's folder."""
    source = raw.get("source")
    if isinstance(source, dict):
        path = source.get("path")
        if isinstance(path, str) and path:
            resolved = path if os.path.isabs(path) else str(folder / path)
            source["path"] = resolved
            if not _glob_or_path_exists(resolved):
                problems.append(("source.path", f"no file, folder or glob match at {resolved}"))
        url = source.get("url")
        if isinstance(url, str):
            source["url"] = _resolve_file_url(url, folder, problems)
        query = source.get("query")
        if isinstance(query, str) and query.strip().lower().endswith(".sql") and "\n" not in query:
            query_file = folder / query.strip()
            if not query_file.is_file():
                problems.append(("source.query", f"query file {query_file} does not exist"))
            else:
                source["query"] = _read_query(query_file, problems)
    destination = raw.get("destination")
    if isinstance(destination, dict):
        credentials = destination.get("credentials")
        if isinstance(credentials, str) and credentials and not os.path.isabs(credentials):
            destination["credentials"] = str(folder / credentials)
    state = raw.setdefault("state", DEFAULT_STATE)
    if isinstance(state, str) and "://" not in state and not os.path.isabs(state):
        raw["state"] = str(folder / state)


#: A file database URL (SQLite, DuckDB): `sqlite:///relative.db` or `sqlite:////abs.db`.
_FILE_URL = re.compile(r"^(?P<scheme>(sqlite|duckdb)(\+\w+)?:///)(?P<path>[^?]*)(?P<args>\?.*)?$")


def _resolve_file_url(url: str, folder: Path, problems: list[tuple[str, str]]) -> str:
    """A file database URL with its path resolved against the pipeline's folder.

    The drivers would resolve it against the working directory, and silently create an
    empty database where none exists; a missing file is a definition error instead.
    """
    match = _FILE_URL.match(url)
    if not match or match["path"] in ("", ":memory:"):
        return url
    path = Path(match["path"]) if os.path.isabs(match["path"]) else folder / match["path"]
    if not path.is_file():
        problems.append(("source.url", f"no database file at {path}"))
    return f"{match['scheme']}{path}{match['args'] or ''}"


def _read_query(file: Path, problems: list[tuple[str, str]]) -> str:
    try:
        return file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        problems.append(("source.query", f"cannot read {file}: {reason}"))
        return ""


def _glob_or_path_exists(path: str) -> bool:
    import glob

    return os.path.exists(path) or bool(glob.glob(path))


def _describe(error: ErrorDetails) -> tuple[str, str]:
    """One pydantic error as (dotted key, readable problem)."""
    location = [str(part) for part in error["loc"] if not str(part).startswith("function-")]
    # Union members show up in the location (e.g. 'str', 'ColumnRef'); they name no key.
    location = [part for part in location if part not in ("str", "ColumnRef", "constrained-str")]
    key = ".".join(location) or "(top level)"
    if error["type"] == "extra_forbidden":
        return key, "unknown key"
    if error["type"] == "missing":
        return key, "required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if ": " in message and message.split(": ", 1)[0].startswith(("source", "event", "destination")):
        key, message = message.split(": ", 1)
    return key, message


def parse_pipeline(path: str | os.PathLike[str]) -> Pipeline:
    """Read, substitute, resolve and check a pipeline file.

    Raises DefinitionError listing all problems at once.
    """
    file = Path(path).resolve()
    if not file.is_file():
        raise DefinitionError(file, [("(file)", "pipeline file does not exist")])
    try:
        raw = read_yaml(file)
    except YamlFileError as exc:
        raise DefinitionError(file, [(exc.where, exc.problem)]) from None
    if not isinstance(raw, dict):
        raise DefinitionError(file, [("(top level)", "expected a mapping of keys")])

    substitution = Substitution(environment(file.parent))
    raw = substitution.apply(raw)
    deferred = _defer(raw, substitution.missing)
    problems = list(substitution.missing.items())
    _resolve_paths(raw, file.parent, problems)
    try:
        pipeline = Pipeline.model_validate({**raw, "file": file, "deferred": deferred})
    except ValidationError as exc:
        described = (_describe(error) for error in exc.errors())
        # A key whose variable is missing already has its one line; pydantic's would repeat it.
        problems.extend(
            item
            for item in _dedupe(described)
            if not any(_within(missing, item[0]) for missing in substitution.missing)
        )
        pipeline = None
    if problems:
        raise DefinitionError(file, problems)
    assert pipeline is not None
    for value in (pipeline.destination.token, pipeline.destination.secret, pipeline.source.url):
        if value is not None:  # so that even a crash report cannot show them
            redact.register_secret(value.get_secret_value())
    return pipeline


def _defer(raw: dict[str, Any], missing: dict[str, str]) -> dict[str, str]:
    """Take the missing destination values out of `raw` and `missing`, for `require`."""
    destination = raw.get("destination")
    deferred = {key: missing.pop(key) for key in _DEFERRABLE if key in missing}
    if isinstance(destination, dict):
        for key in deferred:
            destination.pop(key.rsplit(".", 1)[1], None)
    return deferred


def _within(key: str, ancestor: str) -> bool:
    """True when `key` is `ancestor` or lies under it (`source.url` within `source`)."""
    return key == ancestor or key.startswith(f"{ancestor}.") or key.startswith(f"{ancestor}[")


def _dedupe(items: Any) -> list[tuple[str, str]]:
    return list(dict.fromkeys(items))
