"""Email addresses (SPEC §5) exactly as email-validator judges them, column-wise.

email-validator is the authority: a value's answer is `address(value)`. Calling it
costs 70 µs per value (300 µs with an internationalised domain, which IDNA encodes), and
in a real customer base nearly every address is distinct, so `addresses` settles with
Arrow kernels every value whose answer is PROVABLY the library's, and asks the library
once per distinct value for the rest. Why the fast answers are the library's
(email-validator 2, `validate_email` with its default options):

1. Plain addresses (`plain_addresses`): an ASCII dot-atom local part and a domain of
   ASCII labels ending in a letter-only top-level label, at most 64 characters in all and
   not under a special-use domain. The library accepts them and only lower-cases the
   domain.
2. Plain local part, any domain (`_by_domain`): the local part is a dot-atom of at most 64
   ASCII characters, which the library splits off at its "@" (no quote, "<" or combining
   character can precede it) and accepts without changing it; the rest of the value is
   the domain part, judged by the library on its own. So the library is asked once per
   DISTINCT domain part, with the local part "a": when it accepts, the value's answer
   is the local part, "@" and that domain lower-cased, provided the address also passes
   the library's last check, its length (each of the original, normalised and IDNA ASCII
   forms at most 254 UTF-8 bytes; computed here from the three forms of the domain the
   library returned). A domain it refuses leaves its values to the per-value call, so a
   reason is always the library's own sentence.

Tested with hypothesis against the library (tests/test_validate.py).
"""

from __future__ import annotations

from functools import lru_cache

import email_validator
import numpy as np
import pandas as pd
import pyarrow as arrow
import pyarrow.compute as pc

from etl.columns import arrow_array, arrow_series

_TEXT = arrow.large_string()
_NULL = arrow.scalar(None, _TEXT)
_ATOM = r"[A-Za-z0-9_+-]+"
_LABEL = r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*"
_DOMAIN = rf"@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}$"
_PLAIN = rf"^{_ATOM}(?:\.{_ATOM})*{_DOMAIN}"
_LOWER_ATOM = r"[a-z0-9_+-]+"
_PLAIN_LOWER_LOCAL = rf"^{_LOWER_ATOM}(?:\.{_LOWER_ATOM})*{_DOMAIN}"
_PLAIN_LOCAL = rf"^{_ATOM}(?:\.{_ATOM})*@"
_PLAIN_MAX = 64
_LOCAL_MAX = 64  # the library's limit on a local part
_ADDRESS_MAX = 254  # the library's EMAIL_MAX_LENGTH, in UTF-8 bytes
_SPECIAL_DOMAIN = r"\.(?:" + "|".join(email_validator.SPECIAL_USE_DOMAIN_NAMES) + r")$"

#: Addresses kept across chunks. Each chunk already asks once per distinct value, and a
#: backfill's customers rarely repeat across chunks: on the realistic export 0.5 % of the
#: rows reach the library with 3 % hits, so 65,536 entries only grew (about 20 MB by the
#: end of a 10,000,000-row dry run).
_CACHED = 4096


@lru_cache(maxsize=_CACHED)
def address(value: str) -> tuple[str | None, str | None]:
    """The library's answer: (normalised address, None) or (None, why it is invalid)."""
    try:
        info = email_validator.validate_email(value, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        return None, str(exc).rstrip(".")
    local = value.rsplit("@", 1)[0]
    return f"{local}@{info.domain.lower()}", None


@lru_cache(maxsize=_CACHED)
def _domain(part: str) -> tuple[str, int] | None:
    """(the domain lower-cased, the UTF-8 length of its longest form) as the library makes
    the domain part `part` of an address with a plain local part; None if it refuses it."""
    try:
        info = email_validator.validate_email(f"a@{part}", check_deliverability=False)
    except email_validator.EmailNotValidError:
        return None
    longest = max(len(form.encode()) for form in (part, info.domain, info.ascii_domain))
    return info.domain.lower(), longest


def plain_addresses(texts: arrow.Array) -> arrow.Array:
    """Addresses of step 1, normalised (domain lower-cased); null elsewhere.

    Most addresses have a lower-case local part: lower-casing them whole is the answer.
    The others are split at "@" (they are few, so the slower kernels run on few rows)."""
    lowered = pc.ascii_lower(texts)
    usable = pc.and_(
        pc.less_equal(pc.utf8_length(texts), _PLAIN_MAX),
        pc.invert(pc.match_substring_regex(lowered, _SPECIAL_DOMAIN)),
    )
    whole = pc.fill_null(
        pc.and_(pc.match_substring_regex(texts, _PLAIN_LOWER_LOCAL), usable), False
    )
    result = pc.if_else(whole, lowered, _NULL)
    rest = pc.invert(whole)
    mixed = pc.fill_null(
        pc.and_(pc.match_substring_regex(texts.filter(rest), _PLAIN), usable.filter(rest)),
        False,
    )
    if not pc.any(mixed).as_py():
        return result
    local, domain = _halves(texts.filter(rest).filter(mixed))
    positions = np.flatnonzero(rest.to_numpy(zero_copy_only=False))[
        mixed.to_numpy(zero_copy_only=False)
    ]
    return _placed(result, positions, _join(local, pc.ascii_lower(domain)))


def _by_domain(texts: arrow.Array) -> arrow.Array:
    """Addresses of step 2, normalised; null elsewhere (the library asked once per domain)."""
    plain = pc.fill_null(pc.match_substring_regex(texts, _PLAIN_LOCAL), False)
    if not pc.any(plain).as_py():
        return arrow.nulls(len(texts), _TEXT)
    local, domain = _halves(texts.filter(plain))
    parts = pc.unique(domain)
    judged = [_domain(part) for part in parts.to_pylist()]
    which = pc.index_in(domain, value_set=parts)
    normal = pc.take(arrow.array([j[0] if j else None for j in judged], _TEXT), which)
    longest = pc.take(arrow.array([j[1] if j else None for j in judged], arrow.int64()), which)
    size = pc.add(pc.binary_length(local).cast(arrow.int64()), 1)
    fits = pc.and_(
        pc.less_equal(pc.binary_length(local), _LOCAL_MAX),
        pc.less_equal(pc.add(size, longest), _ADDRESS_MAX),
    )
    settled = pc.if_else(pc.fill_null(fits, False), _join(local, normal), _NULL)
    return _placed(
        arrow.nulls(len(texts), _TEXT),
        np.flatnonzero(plain.to_numpy(zero_copy_only=False)),
        settled,
    )


def addresses(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(normalised address, why it is invalid) of every value of a trimmed text column:
    the fast steps first, then the library once per distinct value left open."""
    texts = arrow_array(text, _TEXT)
    settled = plain_addresses(texts)
    why = arrow.nulls(len(texts), _TEXT)
    open_ = pc.and_(pc.is_valid(texts), pc.is_null(settled))
    if pc.any(open_).as_py():
        where = open_.to_numpy(zero_copy_only=False)
        settled = _placed(settled, np.flatnonzero(where), _by_domain(texts.filter(open_)))
        rest = pc.and_(pc.is_valid(texts), pc.is_null(settled))
        values = pc.unique(texts.filter(rest))
        answers = [address(value) for value in values.to_pylist()]
        which = pc.index_in(texts, value_set=values)
        found = pc.take(arrow.array([a[0] for a in answers], _TEXT), which)
        settled = pc.if_else(rest, found, settled)
        why = pc.if_else(rest, pc.take(arrow.array([a[1] for a in answers], _TEXT), which), why)
    return (
        arrow_series(settled, text.index).astype("string"),
        arrow_series(why, text.index).astype("string"),
    )


def _halves(texts: arrow.Array) -> tuple[arrow.Array, arrow.Array]:
    """(before, after) the first "@" of values that have one."""
    parts = pc.split_pattern(texts, "@", max_splits=1)
    return pc.list_element(parts, 0), pc.list_element(parts, 1)


def _join(local: arrow.Array, domain: arrow.Array) -> arrow.Array:
    return pc.binary_join_element_wise(local, domain, arrow.scalar("@", _TEXT))


def _placed(base: arrow.Array, positions: np.ndarray, values: arrow.Array) -> arrow.Array:
    """`base` with `values` at `positions` (in order); a null value keeps base's null."""
    if not len(positions):
        return base
    chosen = np.zeros(len(base), dtype=bool)
    chosen[positions] = True
    return pc.replace_with_mask(base, arrow.array(chosen), values)
