"""Masking of personal data before it reaches a terminal or a log (SPEC §7).

Quarantine files keep the original rows (the user needs them to fix the data);
everything printed or logged goes through here first.
"""

from __future__ import annotations

import re
from typing import Any

from etl import wire

#: Credential values seen while parsing definitions, scrubbed from crash reports.
_SECRETS: set[str] = set()
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+\d{7,15}\b|\(\d{3}\) ?\d{3}-\d{4}")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


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


def mask_in_text(text: str, email: Any = None, phone: Any = None) -> str:
    """`text` (a log line, a reject reason) with personal data and secrets masked.

    The row's own `email` and `phone` values are masked wherever they appear, even
    when malformed (the reason for a reject often quotes them); then everything
    `mask_free_text` masks.
    """
    for value, mask in ((email, mask_email), (phone, mask_phone)):
        if isinstance(value, str) and value.strip():
            text = text.replace(value.strip(), mask(value.strip()))
    return mask_free_text(text)


def register_secret(value: str) -> None:
    """Remember a credential so that `mask_free_text` removes it wherever it shows up."""
    if len(value) >= 4:
        _SECRETS.add(value)


def mask_free_text(text: str) -> str:
    """Text of unknown content (a traceback): secrets, URL passwords, emails, phones masked."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _URL_PASSWORD.sub(r"\1***@", text)
    text = _EMAIL.sub(lambda match: mask_email(match.group()), text)
    return _PHONE.sub(lambda match: mask_phone(match.group()), text)
