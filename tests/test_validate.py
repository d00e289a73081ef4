"""SPEC §5 rules: exact reject rule and reason per failing row."""

from __future__ import annotations

import re

import email_validator
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from specs import event_spec

from etl.definition import EventSpec
from etl.emails import address, addresses, plain_addresses
from etl.identifiers import phone
from etl.quarantine import REJECT_REASON, REJECT_RULE
from etl.transform import Transformer
from etl.validate import Validator

EVENT = EventSpec.model_validate(
    {
        "source": "app",
        "event_name": {"column": "name"},
        "occurred_at": "ts",
        "customer": {
            "external_id": "cid",
            "email": "email",
            "phone_number": "phone",
            "default_region": "US",
        },
        "properties": {"n": "n"},
    }
)
GOOD = {
    "name": "order_shipped",
    "ts": "2024-03-01T12:30:00Z",
    "cid": None,
    "email": "a@b.com",
    "phone": None,
    "n": 1,
}


@pytest.mark.parametrize(
    ("change", "rule", "reason"),
    [
        (
            {"name": "order-shipped!"},
            "event_name",
            "event_name 'order-shipped!' is not a snake_case name of at most 255 characters",
        ),
        (
            {"ts": "yesterday"},
            "occurred_at",
            "occurred_at 'yesterday' is not an ISO 8601 timestamp",
        ),
        (
            {"phone": "+14155552671"},
            "customer_identity",
            "has both email and phone_number but no external_id",
        ),
        ({"email": None}, "customer_identity", "has no external_id, email or phone_number"),
        ({"email": None, "phone": "+1 555"}, "phone_number", "phone_number '+1 555' is not E.164"),
        (
            {"email": "bob@"},
            "email",
            "email 'bob@' is not a valid address: There must be something after the @-sign",
        ),
        ({"n": {"a": 1}}, "properties", "property 'n' is a nested list or object"),
    ],
    ids=["bad-name", "bad-time", "both-ids", "no-ids", "bad-phone", "bad-email", "nested"],
)
def test_reject(change: dict, rule: str, reason: str) -> None:
    chunk = pd.DataFrame([GOOD, {**GOOD, **change}])
    split = Validator(EVENT).split(chunk)
    assert list(split.valid.index) == [0]
    assert split.rejects[[REJECT_RULE, REJECT_REASON]].values.tolist() == [[rule, reason]]


@pytest.mark.parametrize(
    ("change", "column", "expected"),
    [
        ({"name": "Order Shipped"}, "name", "order_shipped"),
        ({"name": "orderShipped"}, "name", "order_shipped"),
        ({"email": None, "phone": "(415) 555-2671"}, "phone", "+14155552671"),
        ({"email": None, "phone": "+44 20 7946 0958"}, "phone", "+442079460958"),
        ({"email": " Bob+tag@Example.COM "}, "email", "Bob+tag@example.com"),
    ],
    ids=["spaces", "camel", "us-phone", "uk-phone", "email-domain"],
)
def test_normalise(change: dict, column: str, expected: str) -> None:
    split = Validator(EVENT).split(pd.DataFrame([{**GOOD, **change}]))
    assert split.rejects.empty
    assert split.valid[column].tolist() == [expected]


LONG = "x" * 256


@pytest.mark.parametrize(
    ("change", "rule", "reason"),
    [
        (
            {"name": LONG},
            "event_name",
            f"event_name '{LONG}' is not a snake_case name of at most 255 characters",
        ),
        (
            {"cid": "c" * 256},
            "external_id",
            f"external_id '{'c' * 256}' is not a string of at most 255 characters",
        ),
        ({"ts": None}, "occurred_at", "occurred_at '' is not an ISO 8601 timestamp"),
        (
            {"ts": "2024-02-30"},
            "occurred_at",
            "occurred_at '2024-02-30' is not an ISO 8601 timestamp",
        ),
        ({"n": [1, 2]}, "properties", "property 'n' is a nested list or object"),
        ({"n": float("inf")}, "properties", "property 'n' is not a finite number"),
        (
            {"email": "a@b.test"},
            "email",
            "email 'a@b.test' is not a valid address: "
            "The part after the @-sign is a special-use or reserved name"
            " that cannot be used with email",
        ),
        (
            {"name": "Order--Shipped", "ts": "soon"},
            "event_name",
            "event_name 'Order--Shipped' is not a snake_case name of at most 255 characters; "
            "occurred_at 'soon' is not an ISO 8601 timestamp",
        ),
    ],
    ids=[
        "long-name",
        "long-external-id",
        "none-time",
        "impossible-date",
        "list",
        "inf",
        "special-domain",
        "two-rules",
    ],
)
def test_reject_more(change: dict, rule: str, reason: str) -> None:
    test_reject(change, rule, reason)


def test_reject_keeps_original_row_and_columns() -> None:
    chunk = pd.DataFrame(
        [GOOD, {**GOOD, "email": " Bad@ ", "name": "Order Shipped"}], index=[10, 11]
    )
    split = Validator(EVENT).split(chunk)
    assert list(split.valid.index) == [10]
    assert list(split.rejects.columns) == [*chunk.columns, REJECT_RULE, REJECT_REASON]
    assert split.rejects.loc[11, "email"] == " Bad@ "
    assert split.rejects.loc[11, "name"] == "Order Shipped"


def test_constant_source_too_long_rejects_every_row() -> None:
    event = EVENT.model_copy(update={"source": LONG})
    split = Validator(event).split(pd.DataFrame([GOOD, GOOD]))
    assert split.valid.empty
    assert (
        split.rejects[REJECT_REASON].tolist()
        == [f"source '{LONG}' is not a snake_case name of at most 255 characters"] * 2
    )


def test_nat_in_datetime_column_is_rejected() -> None:
    chunk = pd.DataFrame([GOOD, GOOD]).assign(
        ts=pd.to_datetime(["2024-03-01T12:30:00Z", None], utc=True)
    )
    split = Validator(EVENT).split(chunk)
    assert list(split.valid.index) == [0]
    assert split.rejects[REJECT_REASON].tolist() == ["occurred_at '' is not an ISO 8601 timestamp"]


def test_epoch_numbers_are_rejected() -> None:
    split = Validator(EVENT).split(pd.DataFrame([{**GOOD, "ts": 1_709_296_200}]))
    assert split.rejects[REJECT_REASON].tolist() == [
        "occurred_at '1709296200' is not an ISO 8601 timestamp"
    ]


@pytest.mark.parametrize(
    ("timezone", "values", "expected"),
    [
        ("UTC", ["2024-03-01T12:30:00+02:00"], ["2024-03-01 10:30:00+00:00"]),
        ("UTC", ["2024-03-01"], ["2024-03-01 00:00:00+00:00"]),
        ("America/New_York", ["2024-03-01"], ["2024-03-01 05:00:00+00:00"]),
        ("Europe/Paris", ["2024-07-01 12:00"], ["2024-07-01 10:00:00+00:00"]),
        (
            "America/New_York",
            ["2024-03-01", "2024-03-01T12:30:00+02:00", " 2024-03-01T12:30:00Z "],
            ["2024-03-01 05:00:00+00:00", "2024-03-01 10:30:00+00:00", "2024-03-01 12:30:00+00:00"],
        ),
    ],
    ids=["offset", "date-only-utc", "date-only-new-york", "naive-paris", "mixed-column"],
)
def test_occurred_at_in_utc(timezone: str, values: list[str], expected: list[str]) -> None:
    event = EVENT.model_copy(update={"timezone": timezone})
    chunk = pd.DataFrame([GOOD] * len(values)).assign(ts=values)
    split = Validator(event).split(chunk)
    assert split.rejects.empty
    assert [str(t) for t in split.valid["ts"]] == expected


def test_nonexistent_local_time_is_rejected() -> None:
    event = EVENT.model_copy(update={"timezone": "Europe/Paris"})
    split = Validator(event).split(pd.DataFrame([{**GOOD, "ts": "2024-03-31T02:30:00"}]))
    assert split.rejects[REJECT_REASON].tolist() == [
        "occurred_at '2024-03-31T02:30:00' is not an ISO 8601 timestamp"
    ]


@pytest.mark.parametrize(
    ("region", "phone", "expected"),
    [
        ("GB", "020 7946 0958", "+442079460958"),
        ("GB", "+44 (0)20 7946 0958", "+442079460958"),
        ("IL", "050-123-4567", "+972501234567"),
        ("IL", "+972 50 123 4567", "+972501234567"),
        (None, "+972501234567", "+972501234567"),
    ],
    ids=["gb-national", "gb-international", "il-national", "il-international", "e164-as-is"],
)
def test_phone_e164(region: str | None, phone: str, expected: str) -> None:
    customer = EVENT.customer.model_copy(update={"default_region": region})
    event = EVENT.model_copy(update={"customer": customer})
    split = Validator(event).split(pd.DataFrame([{**GOOD, "email": None, "phone": phone}]))
    assert split.rejects.empty
    assert split.valid["phone"].tolist() == [expected]


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("ann+promo@EXAMPLE.com", "ann+promo@example.com"),
        ("Ann.Lee+x@Mail.Example.CO.UK", "Ann.Lee+x@mail.example.co.uk"),
        ("jörg@Bücher.de", "jörg@bücher.de"),
        ("first.o'brien@example.com", "first.o'brien@example.com"),
    ],
    ids=["plus-tag", "upper-local-kept", "unicode", "apostrophe"],
)
def test_email_normalised(email: str, expected: str) -> None:
    test_normalise({"email": email}, "email", expected)


ID_EVENT = event_spec(id={"column": "ref"})


def test_id_column_taken_as_is_and_missing_rejected() -> None:
    chunk = pd.DataFrame(
        {
            "ref": [" ord-1 ", None, "", "r" * 256, "ord-5"],
            "cid": ["c"] * 5,
            "ts": ["2024-03-01"] * 5,
        }
    )
    split = Validator(ID_EVENT).split(chunk)
    assert split.valid["ref"].tolist() == ["ord-1", "ord-5"]
    assert split.rejects[[REJECT_RULE, REJECT_REASON]].values.tolist() == [
        ["id", "id column 'ref' is missing"],
        ["id", "id '' is not a non-empty string of at most 255 characters"],
        ["id", f"id '{'r' * 256}' is not a non-empty string of at most 255 characters"],
    ]


def test_integer_id_column_becomes_decimal_text() -> None:
    chunk = pd.DataFrame(
        {"ref": pd.array([7, None], dtype="Int64"), "cid": ["c", "c"], "ts": ["2024-03-01"] * 2}
    )
    split = Validator(ID_EVENT).split(chunk)
    assert split.valid["ref"].tolist() == ["7"]
    assert split.rejects[REJECT_REASON].tolist() == ["id column 'ref' is missing"]


EMAIL_CHARS = "aZ09._+-@'\"é !#"


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(EMAIL_CHARS, min_size=1, max_size=20),
            st.from_regex(
                r"[a-zA-Z0-9_+-]{1,8}(\.[a-z]{1,3})?@([a-zA-Z0-9-]{1,6}\.){1,3}(com|Test|LOCAL|x1|io)",
                fullmatch=True,
            ),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_email_fast_path_agrees_with_email_validator(emails: list[str]) -> None:
    split = Validator(EVENT).split(pd.DataFrame([{**GOOD, "email": e} for e in emails]))
    for position, email in enumerate(emails):
        text = email.strip()
        if not text:
            continue
        try:
            info = email_validator.validate_email(text, check_deliverability=False)
        except email_validator.EmailNotValidError:
            assert position not in split.valid.index
        else:
            assert (
                split.valid.loc[position, "email"]
                == f"{text.rsplit('@', 1)[0]}@{info.domain.lower()}"
            )


@settings(max_examples=100, deadline=None)
@given(st.lists(st.from_regex(r"\+?[0-9]{1,17}", fullmatch=True), min_size=1, max_size=10))
def test_phone_rule_is_what_phonenumbers_says(phones: list[str]) -> None:
    split = Validator(EVENT).split(
        pd.DataFrame([{**GOOD, "email": None, "phone": p} for p in phones])
    )
    for position, value in enumerate(phones):
        expected = phone(value, "US")
        if expected is None:
            assert split.rejects.loc[position, REJECT_RULE] == "phone_number"
        else:
            assert re.fullmatch(r"\+[1-9]\d{1,14}", expected)
            assert split.valid.loc[position, "phone"] == expected


def test_blank_external_id_is_absent_and_a_bool_one_is_rejected() -> None:
    chunk = pd.DataFrame(
        {
            "cid": ["  ", True, None],
            "email": [None, "a@b.com", None],
            "phone": [None] * 3,
            "name": ["e"] * 3,
            "ts": ["2024-03-01"] * 3,
            "n": [1] * 3,
        }
    )
    split = Validator(EVENT).split(chunk)
    assert split.valid.empty
    assert split.rejects[[REJECT_RULE, REJECT_REASON]].values.tolist() == [
        ["customer_identity", "has no external_id, email or phone_number"],
        ["external_id", "external_id 'True' is not a string of at most 255 characters"],
        ["customer_identity", "has no external_id, email or phone_number"],
    ]


def test_empty_chunk_gives_empty_split_and_no_events() -> None:
    split = Validator(EVENT).split(pd.DataFrame([GOOD]).iloc[:0])
    assert split.valid.empty
    assert list(split.rejects.columns) == [*GOOD, REJECT_RULE, REJECT_REASON]
    assert Transformer(EVENT, "store").to_events(split.valid) == []


def test_every_property_problem_of_a_row_is_named() -> None:
    event = event_spec(properties={"a": "a", "b": "b"})
    chunk = pd.DataFrame(
        {
            "cid": ["c"] * 3,
            "ts": ["2024-03-01"] * 3,
            "a": [[1], 1.0, float("inf")],
            "b": [float("inf"), 2.0, float("-inf")],
        }
    )
    split = Validator(event).split(chunk)
    assert split.valid.index.tolist() == [1]
    assert split.rejects[REJECT_REASON].tolist() == [
        "property 'a' is a nested list or object; property 'b' is not a finite number",
        "property 'a' is not a finite number; property 'b' is not a finite number",
    ]


def test_mixed_naive_aware_and_broken_timestamps_in_one_column() -> None:
    """Each part parsed apart; a broken ISO value rejects its row only."""
    event = EVENT.model_copy(update={"timezone": "America/New_York"})
    values = [
        "2024-03-01 12:30:00",
        "2024-03-01T12:30:00Z",
        "2024-07-01T12:30:00+02:00",
        "2024-13-45T99:00:00",
        "yesterday",
        "2024-03-01T12:30:00.250",
    ]
    split = Validator(event).split(pd.DataFrame([GOOD] * len(values)).assign(ts=values))
    assert [str(t) for t in split.valid["ts"]] == [
        "2024-03-01 17:30:00+00:00",
        "2024-03-01 12:30:00+00:00",
        "2024-07-01 10:30:00+00:00",
        "2024-03-01 17:30:00.250000+00:00",
    ]
    assert split.rejects[REJECT_REASON].tolist() == [
        "occurred_at '2024-13-45T99:00:00' is not an ISO 8601 timestamp",
        "occurred_at 'yesterday' is not an ISO 8601 timestamp",
    ]


LOCALS = st.from_regex(r"[A-Za-z0-9_+'-]{1,20}(\.[A-Za-z0-9]{1,8}){0,2}", fullmatch=True)
DOMAINS = st.sampled_from(
    [
        "gmail.com",
        "GMAIL.COM",
        "Example.CO.UK",
        "web.de",
        "iCloud.com",
        "bücher.de",
        "Bücher.DE",
        "mail.test",
        "x.local",
        "a-b.io",
        "a--b.io",
        "xn--bcher-kva.de",
        "example",
        "exa_mple.com",
        "123.45",
        "e.x" + "y" * 60,
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["", " ", "  ", "\t"]),
            LOCALS,
            DOMAINS,
            st.sampled_from(["", " ", "  "]),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_email_fast_path_settles_only_what_email_validator_says(
    parts: list[tuple[str, str, str, str]],
) -> None:
    """Export-shaped addresses (blanks, upper-case domains and local parts, +tags, special
    and internationalised domains): every address the fast path settles is normalised as
    email-validator says, and split() gives email-validator's answer for every address."""
    emails = [f"{before}{local}@{domain}{after}" for before, local, domain, after in parts]
    fast = plain_addresses(pa.array([e.strip() for e in emails], pa.large_string())).to_pylist()
    split = Validator(EVENT).split(pd.DataFrame([{**GOOD, "email": e} for e in emails]))
    for position, email in enumerate(emails):
        text = email.strip()
        try:
            info = email_validator.validate_email(text, check_deliverability=False)
        except email_validator.EmailNotValidError:
            assert fast[position] is None and position not in split.valid.index
            continue
        expected = f"{text.rsplit('@', 1)[0]}@{info.domain.lower()}"
        assert fast[position] is None or fast[position] == expected
        assert split.valid.loc[position, "email"] == expected


def test_email_fast_path_settles_the_usual_export_shapes() -> None:
    """The addresses of a real customer base never reach the per-value library call."""
    emails = pa.array(
        ["ann.lee12@GMAIL.COM", "Ann.Lee12@Example.CO.UK", "ann+shop@iCloud.com"], pa.large_string()
    )
    assert plain_addresses(emails).to_pylist() == [
        "ann.lee12@gmail.com",
        "Ann.Lee12@example.co.uk",
        "ann+shop@icloud.com",
    ]


#: Domain parts a plain local part may meet: internationalised (the library's IDNA path),
#: refused ones (whose reasons must stay the library's), and long ones for its length check.
ANY_DOMAINS = st.sampled_from(
    [
        "müller.ch",
        "MÜLLER.CH",
        "Bücher.DE",
        "xn--mller-kva.ch",
        "例え.jp",
        "ДОМЕН.рф",
        "exa mple.com",
        "exa_mple.com",
        "x@y.com",
        "",
        ".example.com",
        "example..com",
        "münchen.local",
        "bücher.de>",
        "[127.0.0.1]",
        ".".join(["a" * 60] * 3) + ".müller.ch",
        ".".join(["a" * 60] * 4) + ".de",
        ".".join(["ü" * 30] * 4) + ".de",
    ]
)
ANY_LOCALS = st.one_of(
    LOCALS,
    st.sampled_from(
        ['"ann lee"', "ann lee", "ann..lee", ".ann", "ann.", "ännä", "a" * 64, "a" * 65]
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(ANY_LOCALS, st.one_of(DOMAINS, ANY_DOMAINS)), min_size=1, max_size=20))
def test_addresses_give_email_validators_answer_and_reason(parts: list[tuple[str, str]]) -> None:
    """Every value, settled by a fast step or not, gets the library's normalised address
    or the library's own sentence for why it is invalid (asked here value by value)."""
    emails = [f"{local}@{domain}" for local, domain in parts]
    found, why = addresses(pd.Series(emails, dtype="string"))
    for position, text in enumerate(emails):
        try:
            info = email_validator.validate_email(text, check_deliverability=False)
        except email_validator.EmailNotValidError as exc:
            assert (found[position], why[position]) == (pd.NA, str(exc).rstrip(".")), text
        else:
            expected = f"{text.rsplit('@', 1)[0]}@{info.domain.lower()}"
            assert (found[position], why[position]) == (expected, pd.NA), text


def test_internationalised_domains_are_judged_once_per_domain() -> None:
    """Distinct customers at IDNA domains never reach the per-value library call."""
    address.cache_clear()
    values = ["Ann.Lee1@Bücher.DE", "bob2@bücher.de", "zoe@müller.ch", "ann lee@müller.ch"]
    found, why = addresses(pd.Series(values, dtype="string"))
    assert found.tolist()[:3] == ["Ann.Lee1@bücher.de", "bob2@bücher.de", "zoe@müller.ch"]
    assert why.tolist()[3].startswith("The email address contains invalid characters")
    assert address.cache_info().misses == 1  # only "ann lee@müller.ch"
