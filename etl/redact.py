"""Masking of personal data before it reaches a terminal or a log (SPEC §7).

Quarantine files keep the original rows (the user needs them to fix the data);
everything printed or logged goes through here first.
"""

from __future__ import annotations

import re
from typing import Any

from etl import wire


def mask_email(value: str) -> str:
    """`jane.doe@example.com` -> `j***@example.com`; a value without `@` is masked whole."""
    local, at, domain = value.partition("@")
    if not at:
        return mask_text(value)
    return f"{local[:1]}***@{domain}"


def mask_phone(value: str) -> str:
    """`+14155552671` -> `+1******71`: enough to recognise, not enough to call."""
    if len(value) <= 4:
        return "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]


def mask_text(value: str) -> str:
    """Anything else personal: keep the first character only."""
    return value[:1] + "***" if value else value


def mask_body(body: dict[str, Any]) -> dict[str, Any]:
    """An event body fit to print: the customer's email and phone number masked."""
    customer = dict(body.get(wire.CUSTOMER, {}))
    for field, mask in ((wire.EMAIL, mask_email), (wire.PHONE_NUMBER, mask_phone)):
        if isinstance(customer.get(field), str):
            customer[field] = mask(customer[field])
    return {**body, wire.CUSTOMER: customer}


_EMAIL_IN_TEXT = re.compile(r"[^\s\"'<>@,;:()\[\]]+@[^\s\"'<>@,;:()\[\]]+\.[A-Za-z]{2,}")
_PHONE_IN_TEXT = re.compile(r"\+\d[\d ().-]{6,}\d")  # E.164-like only: not an IP address


def mask_free_text(text: str) -> str:
    """A message that may quote a value (an API's error, a transport error): every email
    address and phone-like number in it masked, the rest kept readable."""
    text = _EMAIL_IN_TEXT.sub(lambda found: mask_email(found.group()), text)
    return _PHONE_IN_TEXT.sub(lambda found: mask_phone(found.group()), text)
