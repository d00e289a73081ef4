"""SPEC §5 rules: exact reject rule and reason per failing row."""

from __future__ import annotations

import pandas as pd
import pytest

from etl.definition import EventSpec
from etl.validate import REJECT_REASON, REJECT_RULE, Validator

EVENT = EventSpec.model_validate(
    {
        "source": "app",
        "event_name": {"column": "name"},
        "occurred_at": "ts",
        "customer": {"external_id": "cid", "email": "email", "phone_number": "phone", "default_region": "US"},
        "properties": {"n": "n"},
    }
)
GOOD = {"name": "order_shipped", "ts": "2024-03-01T12:30:00Z", "cid": None, "email": "a@b.com", "phone": None, "n": 1}


@pytest.mark.parametrize(
    ("change", "rule", "reason"),
    [
        ({"name": "order-shipped!"}, "event_name",
         "event_name 'order-shipped!' is not a snake_case name of at most 255 characters"),
        ({"ts": "yesterday"}, "occurred_at", "occurred_at 'yesterday' is not an ISO 8601 timestamp"),
        ({"phone": "+14155552671"}, "customer_identity", "has both email and phone_number but no external_id"),
        ({"email": None}, "customer_identity", "has no external_id, email or phone_number"),
        ({"email": None, "phone": "+1 555"}, "phone_number", "phone_number '+1 555' is not E.164"),
        ({"email": "bob@"}, "email", "email 'bob@' is not a valid address: There must be something after the @-sign"),
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
