"""Write the shipped sample data (`make sample-data`): small, realistic, reproducible.

    orders_shipped.csv              3,000 orders (CSV: mixed timestamp styles, text types)
    subscriptions_renewed.parquet   2,000 renewals (Parquet: real timestamp dtype)
    reviews.sqlite                  2,000 reviews in table `reviews` (SQL source)

A fixed seed makes every run write the same rows. About 4 % of the rows of each file
break a SPEC §5 rule the way real exports do: no customer identifier, a malformed
email or phone, an unparsable date, a guest with both email and phone, an event name
that is not snake_case. `etl validate pipelines/<name>.yaml` lists them by rule.
Only numpy, pandas, pyarrow and the standard library are used.
"""

from __future__ import annotations

import sqlite3
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
SEED = 20240301
START = pd.Timestamp("2024-03-01T00:00:00Z")
FIRST_NAMES = [
    "Ann",
    "Bob",
    "Chloé",
    "Dmitri",
    "Eve",
    "Farah",
    "Grace",
    "Hiro",
    "Ines",
    "José",
    "Kofi",
    "Lena",
    "Mateo",
    "Noor",
    "Olu",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Yuki",
]
DOMAINS = ["gmail.com", "Example.COM", "outlook.com", "yahoo.com", "fastmail.fm", "proton.me"]
AREA_CODES = ["212", "310", "312", "415", "617", "206", "303", "512", "646", "702"]
BAD_EMAILS = ["ann@", "bob.example.com", "carl@@mail.com", "dana@mail", "  @gmail.com"]
BAD_PHONES = ["12345", "call me", "+1 (0) 00", "+44 12"]
BAD_DATES = ["31/02/2024", "yesterday", "2024-13-45T10:00:00Z", "N/A"]


def customers(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """A customer per row: id, a valid email, a valid US phone in mixed formats, a first name."""
    number = rng.integers(1, 1200, n)
    first = np.array(FIRST_NAMES)[number % len(FIRST_NAMES)]
    domain = np.array(DOMAINS)[rng.integers(0, len(DOMAINS), n)]
    area = np.array(AREA_CODES)[number % len(AREA_CODES)]
    line = 2_000_000 + number * 4_567 % 7_000_000
    local = [f"{a}{str(x)[:3]}{str(x)[3:]}" for a, x in zip(area, line, strict=True)]
    styles = rng.integers(0, 3, n)
    phone = [
        f"+1{digits}"
        if style == 0
        else f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
        if style == 1
        else f"{digits[:3]}.{digits[3:6]}.{digits[6:]}"
        for digits, style in zip(local, styles, strict=True)
    ]
    return pd.DataFrame(
        {
            "customer_id": [f"cus_{x:05d}" for x in number],
            "email": [
                f"{_ascii(f).lower()}.{x}@{d}"
                for f, x, d in zip(first, number, domain, strict=True)
            ],
            "phone": phone,
            "first_name": first,
        }
    )


def _ascii(name: str) -> str:
    """ "Chloé" -> "chloe": most mailboxes are plain ASCII."""
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()


def spoil(rng: np.random.Generator, n: int, kinds: list[str], share: float = 0.04) -> np.ndarray:
    """Which rows break which rule: '' for a good row, else one of `kinds`."""
    spoilt = np.full(n, "", dtype=object)
    bad = rng.random(n) < share
    spoilt[bad] = np.array(kinds)[rng.integers(0, len(kinds), bad.sum())]
    return spoilt


def iso_mixed(rng: np.random.Generator, stamps: pd.DatetimeIndex) -> list[str]:
    """Timestamps as exports write them: Z, an offset, naive local, or just the date."""
    style = rng.choice(4, len(stamps), p=[0.55, 0.2, 0.15, 0.1])
    paris = stamps.tz_convert("Europe/Paris")
    out = []
    for s, p, k in zip(stamps, paris, style, strict=True):
        if k == 0:
            out.append(s.strftime("%Y-%m-%dT%H:%M:%SZ"))
        elif k == 1:
            out.append(p.isoformat())
        elif k == 2:
            out.append(s.strftime("%Y-%m-%d %H:%M:%S"))
        else:
            out.append(s.strftime("%Y-%m-%d"))
    return out


def times(rng: np.random.Generator, n: int, days: int = 60) -> pd.DatetimeIndex:
    seconds = np.sort(rng.integers(0, days * 86_400, n))
    return START + pd.to_timedelta(seconds, unit="s")


def corrupt(
    frame: pd.DataFrame,
    kinds: np.ndarray,
    rng: np.random.Generator,
    rules: dict[str, tuple[str, list[str]]],
) -> None:
    """For each kind of fault, overwrite its rows' column with a realistic bad value."""
    for kind, (column, choices) in rules.items():
        rows = kinds == kind
        frame.loc[rows, column] = rng.choice(np.array(choices, dtype=object), rows.sum())


def zulu(stamps: pd.DatetimeIndex) -> pd.Index:
    return stamps.strftime("%Y-%m-%dT%H:%M:%SZ")


def orders(rng: np.random.Generator, n: int = 3000) -> pd.DataFrame:
    frame = customers(rng, n)
    shipped = times(rng, n)
    frame.insert(0, "order_id", [f"#{100_000 + i}" for i in range(n)])
    frame["shipped_at"] = iso_mixed(rng, shipped)
    frame["order_total"] = np.round(rng.gamma(2.0, 40.0, n), 2)
    frame["item_count"] = rng.integers(1, 8, n)
    frame["gift"] = rng.random(n) < 0.12
    frame["currency"] = rng.choice(["USD", "EUR", "GBP", "CAD"], n, p=[0.7, 0.15, 0.1, 0.05])
    frame["updated_at"] = zulu(shipped + pd.to_timedelta(rng.integers(60, 86_400, n), unit="s"))
    guest = rng.random(n) < 0.15  # guest checkouts: no customer id, one contact only
    frame.loc[guest, "customer_id"] = None
    frame.loc[guest & (rng.random(n) < 0.5), "email"] = None
    frame.loc[guest & frame["email"].notna(), "phone"] = None
    frame.loc[rng.random(n) < 0.05, "first_name"] = None
    kinds = spoil(rng, n, ["no_identifier", "bad_email", "bad_phone", "bad_date", "guest_both"])
    frame.loc[kinds == "no_identifier", ["customer_id", "email", "phone"]] = None
    corrupt(
        frame,
        kinds,
        rng,
        {
            "bad_email": ("email", BAD_EMAILS),
            "bad_phone": ("phone", BAD_PHONES),
            "bad_date": ("shipped_at", BAD_DATES),
        },
    )
    both = kinds == "guest_both"
    contacts = customers(rng, both.sum())
    frame.loc[both, "customer_id"] = None
    frame.loc[both, "email"] = contacts["email"].to_numpy()
    frame.loc[both, "phone"] = contacts["phone"].to_numpy()
    return frame


def subscriptions(rng: np.random.Generator, n: int = 2000) -> pa.Table:
    renewed = times(rng, n, days=90)
    months = rng.choice([1, 3, 12], n, p=[0.6, 0.25, 0.15])
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.35, 0.15])
    monthly = pd.Series(plan).map({"basic": 9.0, "plus": 19.0, "pro": 49.0})
    names = ["subscription_renewed", "Subscription Renewed", "subscriptionRenewed"]
    frame = pd.DataFrame(
        {
            "subscription_id": [f"sub_{i:06d}" for i in range(n)],
            "event_type": rng.choice(names, n, p=[0.8, 0.15, 0.05]),
            "email": customers(rng, n)["email"],
            "renewed_at": renewed,
        }
    ).astype({"event_type": object, "renewed_at": object})
    kinds = spoil(rng, n, ["no_identifier", "bad_email", "bad_date", "bad_event"])
    frame.loc[kinds == "no_identifier", "email"] = None
    frame.loc[kinds == "bad_date", "renewed_at"] = None  # a renewal time that was never set
    corrupt(
        frame,
        kinds,
        rng,
        {
            "bad_email": ("email", BAD_EMAILS),
            "bad_event": ("event_type", ["subscription-renewed!", "renewed 🎉"]),
        },
    )
    stamp = pa.timestamp("us", "UTC")
    return pa.table(
        {
            "subscription_id": pa.array(frame["subscription_id"], pa.string()),
            "event_type": pa.array(frame["event_type"], pa.string()),
            "email": pa.array(frame["email"], pa.string()),
            "plan": pa.array(plan),
            "months": pa.array(months, pa.int32()),
            "amount": pa.array(np.round(monthly * months * np.where(months > 1, 0.95, 1.0), 2)),
            "renewed_at": pa.array(frame["renewed_at"], stamp),
            "updated_at": pa.array(renewed + pd.Timedelta(minutes=5), stamp),
        }
    )


def reviews(rng: np.random.Generator, n: int = 2000) -> pd.DataFrame:
    people = customers(rng, n)
    written = times(rng, n, days=45)
    by_phone = rng.random(n) < 0.3  # SMS reviews carry a phone, web reviews an email
    titles = [
        "Love it",
        "Great fit",
        "Arrived late",
        "Would buy again",
        "Not as pictured",
        "Perfect gift",
        "Okay",
        "Five stars",
        "Too small",
        "Excellent quality",
    ]
    frame = pd.DataFrame(
        {
            "review_id": np.arange(1, n + 1),
            "customer_email": people["email"].where(~by_phone, None),
            "customer_phone": people["phone"].where(by_phone, None),
            "rating": rng.choice([1, 2, 3, 4, 5], n, p=[0.05, 0.07, 0.13, 0.3, 0.45]),
            "title": rng.choice(titles, n),
            "written_at": zulu(written),
            "updated_at": zulu(written + pd.to_timedelta(rng.integers(0, 7_200, n), unit="s")),
        }
    )
    kinds = spoil(rng, n, ["no_identifier", "both", "bad_phone", "bad_date"])
    frame.loc[kinds == "no_identifier", ["customer_email", "customer_phone"]] = None
    frame.loc[kinds == "both", "customer_email"] = people["email"][kinds == "both"]
    frame.loc[kinds == "both", "customer_phone"] = people["phone"][kinds == "both"]
    frame.loc[kinds == "bad_phone", "customer_email"] = None
    corrupt(
        frame,
        kinds,
        rng,
        {
            "bad_phone": ("customer_phone", BAD_PHONES),
            "bad_date": ("written_at", BAD_DATES),
        },
    )
    return frame


def write_sqlite(frame: pd.DataFrame, path: Path) -> None:
    path.unlink(missing_ok=True)
    rows = [
        tuple(None if pd.isna(v) else int(v) if isinstance(v, np.integer) else v for v in row)
        for row in frame.astype(object).itertuples(index=False, name=None)
    ]
    connection = sqlite3.connect(path)
    with connection:
        connection.execute(
            "CREATE TABLE reviews (review_id INTEGER PRIMARY KEY, customer_email TEXT, "
            "customer_phone TEXT, rating INTEGER NOT NULL, title TEXT, written_at TEXT, "
            "updated_at TEXT NOT NULL)"
        )
        connection.executemany("INSERT INTO reviews VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    connection.close()


def main() -> None:
    rng = np.random.default_rng(SEED)
    orders(rng).to_csv(HERE / "orders_shipped.csv", index=False)
    pq.write_table(subscriptions(rng), HERE / "subscriptions_renewed.parquet")
    write_sqlite(reviews(rng), HERE / "reviews.sqlite")
    for name in ("orders_shipped.csv", "subscriptions_renewed.parquet", "reviews.sqlite"):
        print(f"wrote sample_data/{name} ({(HERE / name).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
