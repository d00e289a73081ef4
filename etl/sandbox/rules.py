"""The body checks of the sandbox (SPEC §4/§5), written apart from the loader's schema.

The loader validates with pandera, column-wise; these are plain checks on one
parsed JSON body. Keeping the two independent (sharing only `etl.wire` names)
means a bug in the loader's schema shows up as a 400 from the sandbox instead of
being mirrored by it.

`check_event(body)` returns None for a valid body, or `(field, message)` for the
first problem found, with `field` the wire path (`customer.phone_number`,
`properties.total`).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from email_validator import EmailNotValidError, validate_email

from etl import wire

MAX_LENGTH = 255
_SNAKE = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")
_E164 = re.compile(r"\+[1-9]\d{1,14}")
_PROPERTY_NAME = re.compile(r"[A-Za-z0-9_]+")

_REQUIRED = (wire.SOURCE, wire.EVENT_NAME, wire.OCCURRED_AT, wire.ID, wire.CUSTOMER)
_TOP_LEVEL = frozenset((*_REQUIRED, wire.PROPERTIES))
_CUSTOMER_FIELDS = frozenset((*wire.CUSTOMER_IDENTIFIERS, wire.PROPERTIES))

Problem = tuple[str, str]


def check_event(body: Any) -> Problem | None:
    """The first rule `body` breaks as `(wire field path, message)`, or None when valid."""
    if not isinstance(body, dict):
        return "body", "the body must be a JSON object"
    for name in body:
        if name not in _TOP_LEVEL:
            return name, f"unknown field {name!r}"
    for name in _REQUIRED:
        if name not in body:
            return name, f"{name} is required"
    return (
        _check_name(wire.SOURCE, body[wire.SOURCE])
        or _check_name(wire.EVENT_NAME, body[wire.EVENT_NAME])
        or _check_time(body[wire.OCCURRED_AT])
        or _check_id(body[wire.ID])
        or _check_customer(body[wire.CUSTOMER])
        or (
            _check_properties(wire.PROPERTIES, body[wire.PROPERTIES])
            if wire.PROPERTIES in body
            else None
        )
    )


def _check_name(field: str, value: Any) -> Problem | None:
    if not isinstance(value, str) or len(value) > MAX_LENGTH or not _SNAKE.fullmatch(value):
        return (
            field,
            f"{field} must be a non-empty snake_case string of at most {MAX_LENGTH} characters",
        )
    return None


def _check_time(value: Any) -> Problem | None:
    message = f"{wire.OCCURRED_AT} must be an ISO 8601 timestamp with a time zone"
    if not isinstance(value, str):
        return wire.OCCURRED_AT, message
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return wire.OCCURRED_AT, message
    if parsed.tzinfo is None:
        return wire.OCCURRED_AT, message
    return None


def _check_id(value: Any) -> Problem | None:
    if not isinstance(value, str) or not value:
        return wire.ID, f"{wire.ID} must be a non-empty string"
    return None


def _check_customer(customer: Any) -> Problem | None:
    if not isinstance(customer, dict):
        return wire.CUSTOMER, f"{wire.CUSTOMER} must be an object"
    for name in customer:
        if name not in _CUSTOMER_FIELDS:
            return f"{wire.CUSTOMER}.{name}", f"unknown field {name!r}"
    if wire.EXTERNAL_ID not in customer:
        given = [name for name in (wire.EMAIL, wire.PHONE_NUMBER) if name in customer]
        if len(given) != 1:
            return wire.CUSTOMER, (
                f"{wire.CUSTOMER} needs {wire.EXTERNAL_ID}, or else exactly one of "
                f"{wire.EMAIL} and {wire.PHONE_NUMBER}"
            )
    return (
        _check_customer_field(
            wire.EXTERNAL_ID,
            customer,
            _is_external_id,
            f"a non-empty string of at most {MAX_LENGTH} characters",
        )
        or _check_customer_field(wire.EMAIL, customer, _is_email, "a valid email address")
        or _check_customer_field(
            wire.PHONE_NUMBER, customer, _is_e164, "an E.164 phone number such as +14155552671"
        )
        or (
            _check_properties(f"{wire.CUSTOMER}.{wire.PROPERTIES}", customer[wire.PROPERTIES])
            if wire.PROPERTIES in customer
            else None
        )
    )


def _check_customer_field(
    name: str, customer: dict[str, Any], ok: Any, expected: str
) -> Problem | None:
    if name in customer and not ok(customer[name]):
        return f"{wire.CUSTOMER}.{name}", f"{name} must be {expected}"
    return None


def _is_external_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_LENGTH


def _is_e164(value: Any) -> bool:
    return isinstance(value, str) and _E164.fullmatch(value) is not None


def _is_email(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def _check_properties(field: str, properties: Any) -> Problem | None:
    if not isinstance(properties, dict):
        return field, f"{field} must be an object"
    for name, value in properties.items():
        if not _PROPERTY_NAME.fullmatch(name):
            return f"{field}.{name}", f"property name {name!r} must match [A-Za-z0-9_]+"
        if not isinstance(value, (str, bool, int, float)):
            kind = "null" if value is None else type(value).__name__
            return (
                f"{field}.{name}",
                f"property values must be a string, boolean or number, not {kind}",
            )
    return None
