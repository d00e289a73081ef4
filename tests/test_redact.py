"""Masking a whole event body before it is printed (the single values: tests/test_report.py)."""

from __future__ import annotations

from etl.redact import mask_body, mask_text_pii


def test_a_body_is_masked_without_touching_the_original() -> None:
    body = {"id": "e-1", "customer": {"email": "ann@shop.io", "phone_number": "+972501234567",
                                      "external_id": "c-1"}, "properties": {"total": 1}}
    assert mask_body(body) == {
        "id": "e-1",
        "customer": {"email": "a***@shop.io", "phone_number": "+9*********67", "external_id": "c-1"},
        "properties": {"total": 1},
    }
    assert body["customer"]["email"] == "ann@shop.io"


def test_free_text_has_its_emails_and_phones_masked_and_nothing_else() -> None:
    text = ("customer.email: Jane.Doe+x@mail.example.com refused; phone +14155552671 or 4155552671;"
            " event 5b1d0c2e-1234-5678-9abc-def012345678 at 2024-03-01T12:30:00Z, order o-123456")
    assert mask_text_pii(text) == (
        "customer.email: J***@mail.example.com refused; phone +1********71 or 41******71;"
        " event 5b1d0c2e-1234-5678-9abc-def012345678 at 2024-03-01T12:30:00Z, order o-123456")
