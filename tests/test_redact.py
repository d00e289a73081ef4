"""Masking: what reaches a terminal or log is recognisable but not usable."""

from __future__ import annotations

from etl.redact import mask_body, mask_email, mask_phone, mask_text


def test_emails_keep_their_first_letter_and_domain() -> None:
    assert mask_email("jane.doe@example.com") == "j***@example.com"
    assert mask_email("no-at-sign") == "n***"


def test_phones_keep_country_prefix_and_last_two_digits() -> None:
    assert mask_phone("+14155552671") == "+1********71"
    assert mask_phone("+44") == "***"


def test_other_text_keeps_one_character() -> None:
    assert (mask_text("Ann"), mask_text("")) == ("A***", "")


def test_a_body_is_masked_without_touching_the_original() -> None:
    body = {"id": "e-1", "customer": {"email": "ann@shop.io", "phone_number": "+972501234567",
                                      "external_id": "c-1"}, "properties": {"total": 1}}
    assert mask_body(body) == {
        "id": "e-1",
        "customer": {"email": "a***@shop.io", "phone_number": "+9*********67", "external_id": "c-1"},
        "properties": {"total": 1},
    }
    assert body["customer"]["email"] == "ann@shop.io"
