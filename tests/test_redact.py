"""Masking a whole event body before it is printed (the single values: tests/test_report.py)."""

from __future__ import annotations

from etl.redact import mask_body


def test_a_body_is_masked_without_touching_the_original() -> None:
    body = {
        "id": "e-1",
        "customer": {"email": "ann@shop.io", "phone_number": "+972501234567", "external_id": "c-1"},
        "properties": {"total": 1},
    }
    assert mask_body(body) == {
        "id": "e-1",
        "customer": {
            "email": "a***@shop.io",
            "phone_number": "+9*********67",
            "external_id": "c-1",
        },
        "properties": {"total": 1},
    }
    assert body["customer"]["email"] == "ann@shop.io"
