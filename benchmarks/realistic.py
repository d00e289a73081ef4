"""Benchmark data that looks like a real customer export, not like the loader's happy path.

Every benchmark that needs rows reads these files (written once to `benchmarks/.data/`,
fixed seed, so every machine benchmarks the same bytes). What a real export has and a
generated happy path does not (issue 10 item 6):

- phones mostly in US national formats with punctuation ("(415) 555-2671",
  "415.555.2671", "415-555-2671", "1-415-555-2671"), so `default_region: US` is needed,
  and some E.164 numbers (bare and spaced) from GB, DE, FR, BR, IN, JP and AU;
- emails with upper-case domains (and some upper-case local parts) and surrounding
  blanks, some with a `+tag`, a few with an internationalised domain;
- timestamps as text, naive and with an offset (`Z`, `+02:00`, `-05:00`) in one column;
- null markers in number columns: Parquet nulls, and in the CSV the literal text
  `NaN` and `NULL`, as pandas and warehouses write them;
- unicode first and last names;
- guest checkouts without a customer id (exactly one of email / phone);
- about 5 % of the rows breaking exactly one SPEC §5 rule each (see `BROKEN`);
- (nearly) every email and phone distinct, as in a real customer base: customers are
  drawn from a space twenty times the row count, so caching per distinct value cannot
  hide the per-value cost.

Columns are built with numpy and Arrow kernels, a row group at a time, so the
10,000,000-row file is written in bounded memory in well under a minute.

    python -m benchmarks.realistic   # writes the files and prints their make-up
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

DATA = Path(__file__).parent / ".data"
SEED = 20240301
GROUP = 500_000
STORE = "bench-store"

#: Rule -> share of ALL rows that break it (and only it): 5 % together.
BROKEN = {
    "occurred_at": 0.010,
    "email": 0.010,
    "phone_number": 0.010,
    "customer_identity": 0.010,
    "external_id": 0.005,
    "properties": 0.005,
}
GUEST_SHARE = 0.10  # rows without a customer id: exactly one of email / phone
PHONE_SHARE = 0.75  # customers with a phone (all of them have an email)

_FIRST = [
    "Ann",
    "José",
    "Zoë",
    "Łukasz",
    "Søren",
    "Ümit",
    "François",
    "Siobhán",
    "Chloé",
    "Björn",
    "Nguyễn",
    "Jürgen",
    "María",
    "Ólafur",
    "Dvořák",
    "Ayşe",
    "美咲",
    "Дмитрий",
    "محمد",
    "Mike",
    "Emily",
    "Priya",
    "Kwame",
    "Ngozi",
    "O'Neil",
    "Anne-Marie",
]
_LAST = [
    "Lee",
    "García",
    "Müller",
    "O'Brien",
    "Smith",
    "Kowalski",
    "Nørgaard",
    "Çelik",
    "Dubois",
    "Nakamura",
    "Иванов",
    "Silva",
    "Patel",
    "Okafor",
    "Johansson",
    "Łęcki",
    "van der Berg",
    "Wang",
    "Ó Súilleabháin",
    "Rossi",
    "Jones",
    "Kim",
]
_DOMAINS = [
    "gmail.com",
    "Gmail.com",
    "GMAIL.COM",
    "yahoo.com",
    "Yahoo.com",
    "outlook.com",
    "Outlook.COM",
    "hotmail.com",
    "icloud.com",
    "iCloud.com",
    "example.co.uk",
    "Example.CO.UK",
    "web.de",
    "orange.fr",
    "uol.com.br",
    "proton.me",
    "Company.io",
]
#: (calling code, fixed national prefix, random digits after it): possible numbers.
_FOREIGN = [
    ("44", "20", 8),
    ("44", "7", 9),
    ("49", "30", 8),
    ("49", "151", 8),
    ("33", "6", 8),
    ("55", "119", 8),
    ("91", "9", 9),
    ("81", "90", 8),
    ("61", "4", 8),
]
#: Values that break one rule each (`BROKEN`).
_BAD_TIMES = ["yesterday", "31/02/2024 10:00", "2024-13-45T99:00:00", "N/A", "soon"]
_BAD_EMAILS = [
    "ann..lee@example.com",
    "no-at-sign.example.com",
    "ann@",
    "@example.com",
    "ann lee@example.com",
    "ann@example",
    "ann@exa_mple.com",
]
_BAD_PHONES = ["555-01", "12345", "+1 415 555 2671 999", "000", "+999 123", "phone"]


def _text(values: pa.Array) -> pa.Array:
    return pc.cast(values, pa.string())


def _join(*parts: Any) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _pick(rng: np.random.Generator, n: int, options: list[str]) -> pa.Array:
    return pa.array(np.array(options, dtype=object)[rng.integers(0, len(options), n)], pa.string())


def _digits(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(_text(pa.array(values)), width, "0")


def _choose(
    rng: np.random.Generator, n: int, weights: list[float], options: list[pa.Array]
) -> pa.Array:
    which = rng.choice(len(options), size=n, p=np.array(weights) / sum(weights))
    return pc.choose(pa.array(which.astype(np.int8)), *options)


def _phones(rng: np.random.Generator, customers: np.ndarray) -> pa.Array:
    """Mostly US national formats, some E.164 from other countries; distinct per customer."""
    n = len(customers)
    scrambled = (customers.astype(np.int64) * 2_654_435_761) % 6_400_000_000
    area = _text(pa.array(200 + scrambled // 8_000_000))
    exchange = _text(pa.array(200 + (scrambled // 10_000) % 800))
    line = _digits(scrambled % 10_000, 4)
    foreign = rng.integers(0, len(_FOREIGN), n)
    codes = np.array([f[0] for f in _FOREIGN], dtype=object)[foreign]
    leads = np.array([f[1] for f in _FOREIGN], dtype=object)[foreign]
    widths = np.array([f[2] for f in _FOREIGN])[foreign]
    cut = pc.if_else(
        pa.array(widths == 9), _digits(scrambled % 10**9, 9), _digits(scrambled % 10**8, 8)
    )
    e164 = _join("+", pa.array(codes, pa.string()), pa.array(leads, pa.string()), cut)
    spaced = _join("+", pa.array(codes, pa.string()), " ", pa.array(leads, pa.string()), " ", cut)
    return _choose(
        rng,
        n,
        [30, 20, 15, 8, 4, 3, 13, 7],
        [
            _join("(", area, ") ", exchange, "-", line),
            _join(area, ".", exchange, ".", line),
            _join(area, "-", exchange, "-", line),
            _join(area, " ", exchange, " ", line),
            _join("1-", area, "-", exchange, "-", line),
            _join("+1 ", area, "-", exchange, "-", line),
            e164,
            spaced,
        ],
    )


def _emails(rng: np.random.Generator, customers: np.ndarray) -> pa.Array:
    """first.last<n>@domain, distinct per customer; domains often upper-case, some blanks."""
    n = len(customers)
    first = pc.ascii_lower(
        _pick(
            rng,
            n,
            [
                "ann",
                "jose",
                "zoe",
                "lukasz",
                "soren",
                "mike",
                "emily",
                "priya",
                "kwame",
                "maria",
                "chloe",
            ],
        )
    )
    last = _pick(
        rng,
        n,
        [
            "lee",
            "garcia",
            "muller",
            "obrien",
            "smith",
            "kowalski",
            "dubois",
            "nakamura",
            "silva",
            "patel",
            "okafor",
            "rossi",
        ],
    )
    number = _text(pa.array(customers))
    local = _choose(
        rng,
        n,
        [70, 15, 10, 5],
        [
            _join(first, ".", last, number),
            _join(pc.utf8_capitalize(first), ".", pc.utf8_capitalize(last), number),
            _join(first, last, number, "+shop"),
            _join(first, "_", number),
        ],
    )
    domain = _choose(
        rng,
        n,
        [199, 1],
        [_pick(rng, n, _DOMAINS), _pick(rng, n, ["bücher.de", "Bücher.DE", "müller.ch"])],
    )
    address = _join(local, "@", domain)
    return _choose(
        rng,
        n,
        [85, 8, 4, 3],
        [
            address,
            _join(" ", address, " "),
            _join(address, "  "),
            _join("\t", address),
        ],
    )


def _timestamps(rng: np.random.Generator, n: int) -> pa.Array:
    """ISO 8601 text, naive and with offsets mixed in one column."""
    seconds = rng.integers(1_672_531_200, 1_735_689_600, n).astype("datetime64[s]")
    plain = pa.array(np.datetime_as_string(seconds, unit="s").astype(object), pa.string())
    micros = _digits(rng.integers(0, 1_000_000, n), 6)
    return _choose(
        rng,
        n,
        [40, 30, 15, 10, 5],
        [
            pc.replace_substring(plain, "T", " ", max_replacements=1),
            _join(plain, "Z"),
            _join(plain, "+02:00"),
            _join(plain, "-05:00"),
            _join(plain, ".", micros),
        ],
    )


def _kinds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Each row's kind: 0 customer, 1 guest with email, 2 guest with phone, then one
    broken rule per row (3 + index in `BROKEN`)."""
    shares = [*BROKEN.values()]
    guest = GUEST_SHARE * (1 - sum(shares))
    weights = [1 - sum(shares) - guest, guest * 0.6, guest * 0.4, *shares]
    return rng.choice(len(weights), size=n, p=np.array(weights) / sum(weights))


def group(rng: np.random.Generator, start: int, n: int) -> pa.Table:
    """Rows start..start+n of the export (Arrow kernels only, no Python per row)."""
    kinds = _kinds(rng, n)
    broken = {rule: kinds == 3 + i for i, rule in enumerate(BROKEN)}
    customers = rng.integers(0, 20 * 10_000_000, n)
    guest_email, guest_phone = kinds == 1, kinds == 2
    no_id = guest_email | guest_phone | broken["customer_identity"]
    has_phone = (rng.random(n) < PHONE_SHARE) & ~guest_email
    has_phone |= guest_phone | broken["customer_identity"] | broken["phone_number"]
    has_email = ~guest_phone

    customer_id = _join("c-", _text(pa.array(customers)))
    customer_id = pc.if_else(
        pa.array(broken["external_id"]), pa.scalar("c-" + "x" * 300), customer_id
    )
    email = pc.if_else(
        pa.array(broken["email"]), _pick(rng, n, _BAD_EMAILS), _emails(rng, customers)
    )
    phone = pc.if_else(
        pa.array(broken["phone_number"]), _pick(rng, n, _BAD_PHONES), _phones(rng, customers)
    )
    shipped = pc.if_else(
        pa.array(broken["occurred_at"]), _pick(rng, n, _BAD_TIMES), _timestamps(rng, n)
    )
    total = np.round(rng.gamma(2.0, 40.0, n), 2)
    total[broken["properties"]] = np.inf
    total_null = (rng.random(n) < 0.03) & ~broken["properties"]
    items_null = rng.random(n) < 0.05
    null_text = pa.scalar(None, pa.string())
    return pa.table(
        {
            "order_id": _join("o-", _text(pa.array(np.arange(start, start + n)))),
            "customer_id": pc.if_else(pa.array(no_id), null_text, customer_id),
            "email": pc.if_else(pa.array(has_email), email, null_text),
            "phone": pc.if_else(pa.array(has_phone), phone, null_text),
            "first_name": _pick(rng, n, _FIRST),
            "last_name": _pick(rng, n, _LAST),
            "shipped_at": shipped,
            "order_total": pa.array(total, mask=total_null),
            "item_count": pa.array(rng.integers(1, 9, n), mask=items_null),
            "gift": pa.array(rng.random(n) < 0.1),
            "currency": _pick(rng, n, ["USD"] * 8 + ["EUR", "GBP"]),
        }
    )


def groups(rows: int) -> Iterator[pa.Table]:
    """The export's first `rows` rows, GROUP at a time; the same rows for every `rows`
    (a 1,000,000-row file is the first tenth of the 10,000,000-row one)."""
    rng = np.random.default_rng(SEED)
    for start in range(0, rows, GROUP):
        yield group(rng, start, min(GROUP, rows - start))


def parquet(rows: int) -> Path:
    """`orders_<rows>.parquet` in DATA, written once (row groups of GROUP rows)."""
    path = DATA / f"realistic_{rows}.parquet"
    if path.exists() and pq.ParquetFile(path).metadata.num_rows == rows:
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with pq.ParquetWriter(partial, next(groups(0), None) or _schema()) as writer:
        for table in groups(rows):
            writer.write_table(table)
    partial.replace(path)
    return path


def _schema() -> pa.Schema:
    return group(np.random.default_rng(0), 0, 1).schema


def csv(rows: int) -> Path:
    """The same rows as a CSV export: number nulls written as the text NaN or NULL."""
    path = DATA / f"realistic_{rows}.csv"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    writer = None
    try:
        for table in groups(rows):
            for name in ("order_total", "item_count"):
                column = table[name]
                marker = pc.if_else(pa.array(np.arange(len(table)) % 2 == 0), "NaN", "NULL")
                text = pc.coalesce(_text(column), marker)
                table = table.set_column(table.schema.get_field_index(name), name, text)
            writer = writer or pacsv.CSVWriter(partial, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    partial.replace(path)
    return path


def pipeline(source: Path, name: str, chunk_size: int = 50_000) -> Path:
    """A pipeline definition beside `source` mapping every column of the export."""
    kind = "csv" if source.suffix == ".csv" else "parquet"
    definition = {
        "name": name,
        "source": {"type": kind, "path": source.name, "chunk_size": chunk_size},
        "event": {
            "source": "shopify_backfill",
            "event_name": "order_shipped",
            "occurred_at": "shipped_at",
            "timezone": "America/New_York",
            "id": {"key": ["order_id"]},
            "customer": {
                "external_id": "customer_id",
                "email": "email",
                "phone_number": "phone",
                "default_region": "US",
                "properties": {"first_name": "first_name", "last_name": "last_name"},
            },
            "properties": {
                "order_id": "order_id",
                "total": "order_total",
                "items": "item_count",
                "gift": "gift",
                "currency": "currency",
            },
        },
        "destination": {"store_id": STORE, "token": "unused"},
        "state": f"{name}_state.db",
    }
    file = source.parent / f"{name}.yaml"
    file.write_text(yaml.safe_dump(definition, sort_keys=False, allow_unicode=True))
    return file


def main() -> None:
    table = pq.read_table(parquet(1_000_000))
    print(f"{table.num_rows:,} rows, {table.nbytes / 1e6:,.0f} MB in memory")
    for name in ("customer_id", "email", "phone", "order_total", "item_count"):
        column = table[name]
        print(
            f"  {name}: {column.null_count:,} null, {pc.count_distinct(column).as_py():,} distinct"
        )
    print(table.slice(0, 8).to_pandas().to_string())


if __name__ == "__main__":
    main()
