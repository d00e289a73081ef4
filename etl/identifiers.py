"""Phone numbers in E.164 (SPEC §5) exactly as phonenumbers makes them, column-wise.

phonenumbers is the authority: a value's answer is `phone(value, region)` (parse, then
`is_possible_number`, then the E.164 format). Calling it costs tens of microseconds per
value, and in a real customer base nearly every number is distinct, so `e164` settles
with Arrow kernels every value for which the answer below is PROVABLY the library's, and
calls the library once per distinct value for the rest. Why the fast answer is the
library's (phonenumbers 9, `parse`):

1. A value made only of ASCII digits (at least three) and the separators space ( ) . -,
   with at most a leading "+", and at most 250 characters, is parsed from its digits alone: the
   possible-number extraction drops leading/trailing separators, the viability pattern
   accepts any such value with at least three digits, no extension pattern can match
   (each needs a letter, "#", ";", "," or "~"), and normalisation keeps only the digits.
2. With a "+", the calling code is the first 1-3 digits that form a known code (the codes
   are prefix-free); the national number N is the rest. Without one, the code is the
   default region's and N is all the digits, provided the number does not start with a
   digit that may begin the region's international prefix, its own calling code, or the
   region's national prefix (in which case parse may strip or reinterpret digits).
3. N is kept whole when it starts neither with 0 (an "Italian leading zero") nor with a
   digit that may begin the national prefix of the calling code's main region.
4. `is_possible_number` with no type checks only the length of N against the lengths of
   the calling code's main region (local-only lengths count); those lengths are read
   from the library itself (`_lengths`). The E.164 text is then "+", code and N; it must
   have at most 15 digits (SPEC §5).

"May begin" comes from the library's own metadata regexes (`_first_digits`); a region
whose prefix pattern cannot be read that way simply gets no fast path. Tested with
hypothesis against the library (tests/test_identifiers.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

import phonenumbers
import pyarrow as arrow
import pyarrow.compute as pc
from phonenumbers import PhoneMetadata

_TEXT = arrow.large_string()
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_MAX_DIGITS = 15
_MAX_INPUT = 250  # phonenumbers' _MAX_INPUT_STRING_LENGTH
_SEPARATED = r"^\+?[0-9 ().\-]*$"
_DIGITS = frozenset("0123456789")
_CODES = sorted(str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


@lru_cache(maxsize=65536)
def phone(value: str, region: str | None) -> str | None:
    """The library's answer: the E.164 form, or None when the number cannot be one."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164 if _E164.match(e164) else None


@dataclass(frozen=True)
class _Plan:
    """For one calling code: the national numbers the fast path may settle."""

    code: str
    lengths: frozenset[int]  # lengths of N that is_possible_number accepts
    blocked: frozenset[str]  # first digits of N after which parse may change N

    def keys(self, tag: str, written: int) -> list[str]:
        """`tag|length|first digit` of every settleable N (see `_key`); `written` is the
        number of digits written besides N (parse needs at least three in all)."""
        return [
            f"{tag}|{length}|{digit}"
            for length in sorted(self.lengths)
            if 2 <= length <= _MAX_DIGITS - len(self.code) and written + length >= 3
            for digit in sorted(_DIGITS - self.blocked)
        ]


def _first_digits(pattern: str | None) -> frozenset[str] | None:
    """The digits a match of `pattern` at the start of a digit string may begin with
    (none for no pattern); None when that cannot be read off the pattern for sure."""
    if not pattern:
        return frozenset()
    try:
        first, nullable = _first(_parser.parse(pattern))
    except (re.error, _Unknown):
        return None
    return None if nullable else frozenset(first & _DIGITS)


class _Unknown(Exception):
    """A regex construct `_first` does not reason about."""


def _first(items: Any) -> tuple[set[str], bool]:
    """(characters a match may begin with, whether it may be empty) of a parsed sequence."""
    result: set[str] = set()
    for op, av in items:
        first, nullable = _first_item(op, av)
        result |= first
        if not nullable:
            return result, False
    return result, True


def _first_item(op: Any, av: Any) -> tuple[set[str], bool]:
    if op is sre.LITERAL:
        return {chr(av)}, False
    if op is sre.ANY or (op is sre.CATEGORY and av is sre.CATEGORY_DIGIT):
        return set(_DIGITS), False
    if op is sre.IN:
        chars: set[str] = set()
        for kind, value in av:
            if kind is sre.LITERAL:
                chars.add(chr(value))
            elif kind is sre.RANGE:
                chars |= {chr(c) for c in range(value[0], value[1] + 1)}
            elif kind is sre.CATEGORY and value is sre.CATEGORY_DIGIT:
                chars |= _DIGITS
            else:
                raise _Unknown(kind)
        return chars, False
    if op is sre.SUBPATTERN:
        return _first(av[-1])
    if op is sre.BRANCH:
        parts = [_first(branch) for branch in av[1]]
        return set().union(*(p[0] for p in parts)), any(p[1] for p in parts)
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
        low, _high, body = av
        first, nullable = _first(body)
        return first, nullable or low == 0
    raise _Unknown(op)


def _lengths(code: int) -> frozenset[int]:
    """Lengths of N that is_possible_number accepts for `code` (it checks nothing else)."""
    return frozenset(
        length
        for length in range(1, 18)
        if phonenumbers.is_possible_number(
            phonenumbers.PhoneNumber(country_code=code, national_number=int("9" * length))
        )
    )


@cache
def _international(code: str) -> _Plan | None:
    """Numbers written "+<code>N" (step 3)."""
    number = int(code)
    main = phonenumbers.region_code_for_country_code(number)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(number, main)
    if metadata is None:
        return None
    national = _first_digits(metadata.national_prefix_for_parsing)
    if national is None:
        return None
    return _Plan(code, _lengths(number), frozenset("0") | national)


@cache
def _national(region: str) -> _Plan | None:
    """Numbers written without "+" for the default region (step 2)."""
    if region not in phonenumbers.SUPPORTED_REGIONS:  # parse would refuse it
        return None
    metadata = PhoneMetadata.metadata_for_region(region, None)
    if metadata is None or metadata.country_code is None:
        return None
    code = str(metadata.country_code)
    dialling = _first_digits(metadata.international_prefix)
    national = _first_digits(metadata.national_prefix_for_parsing)
    if dialling is None or national is None:
        return None
    blocked = frozenset({"0", code[0]}) | dialling | national
    return _Plan(code, _lengths(metadata.country_code), blocked)


@cache
def _own_code(region: str) -> tuple[str, ...]:
    """Keys (tag "c<code>") of numbers written without "+" that start with the region's
    own calling code and are too long for the region without it ("1-415-555-2671" in
    the US): parse then takes the code off (the default-country branch of
    `_maybe_extract_country_code`) and N is the rest, under the rules of step 3."""
    plan = _national(region)
    if plan is None:
        return ()
    metadata = PhoneMetadata.metadata_for_region(region, None)
    if metadata is None or metadata.country_code is None or metadata.general_desc is None:
        return ()
    number = metadata.country_code
    main = PhoneMetadata.metadata_for_region_or_calling_code(
        number, phonenumbers.region_code_for_country_code(number)
    )
    dialling = _first_digits(metadata.international_prefix)
    own = _first_digits(metadata.national_prefix_for_parsing)
    other = _first_digits(main.national_prefix_for_parsing) if main is not None else None
    general = metadata.general_desc
    possible, local = general.possible_length, general.possible_length_local_only
    if dialling is None or own is None or other is None or plan.code[0] in dialling:
        return ()
    if not possible or possible[0] == -1:
        return ()
    too_long = {n for n in range(max(possible) + 1, _MAX_DIGITS + 1) if n not in local}
    blocked = frozenset("0") | own | other
    return tuple(
        f"c{plan.code}|{length}|{digit}"
        for length in sorted(plan.lengths)
        if length >= 2 and len(plan.code) + length in too_long
        for digit in sorted(_DIGITS - blocked)
    )


def _key(tag: str | arrow.Array, national: arrow.Array) -> arrow.Array:
    """`tag|len(N)|N[0]` for every row (one tag, or a tag per row): what decides whether
    the fast path settles it."""
    length = pc.cast(pc.utf8_length(national), _TEXT)
    return _join(tag, "|", length, "|", pc.utf8_slice_codeunits(national, 0, 1))


def _join(*parts: str | arrow.Array) -> arrow.Array:
    """Element-wise concatenation of text arrays and constants."""
    texts = [arrow.scalar(p, _TEXT) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*texts, arrow.scalar("", _TEXT))


def _fast(texts: arrow.Array, region: str | None) -> arrow.Array:
    """The E.164 form where the fast path settles the value, null elsewhere."""
    null = arrow.scalar(None, _TEXT)
    shaped = pc.fill_null(
        pc.and_(
            pc.match_substring_regex(texts, _SEPARATED),
            pc.less_equal(pc.utf8_length(texts), _MAX_INPUT),
        ),
        False,
    )
    digits = pc.replace_substring_regex(pc.if_else(shaped, texts, null), "[^0-9]", "")
    plus = pc.fill_null(pc.starts_with(texts, "+"), False)
    keys = pc.if_else(plus, null, digits)  # national numbers for now
    allowed: list[str] = []
    result = null
    plan = _national(region) if region else None
    if plan is not None:
        keys = _key(f"n{plan.code}", keys)
        allowed += plan.keys(f"n{plan.code}", 0)
        result = _join(f"+{plan.code}", digits)
        own = pc.fill_null(pc.and_(pc.invert(plus), pc.starts_with(digits, plan.code)), False)
        if pc.any(own).as_py():
            national = pc.utf8_slice_codeunits(digits, len(plan.code), _MAX_INPUT)
            keys = pc.if_else(own, _key(f"c{plan.code}", national), keys)
            allowed += _own_code(region)
            result = pc.if_else(own, _join("+", digits), result)
    code_length = arrow.array([0] * len(texts), arrow.int8())
    for size in (3, 2, 1):  # the shortest known prefix wins, as in phonenumbers
        prefix = pc.utf8_slice_codeunits(digits, 0, size)
        known = pc.fill_null(pc.and_(plus, pc.is_in(prefix, value_set=arrow.array(_CODES))), False)
        code_length = pc.if_else(known, size, code_length)
    for size in (1, 2, 3):
        here = pc.equal(code_length, size)
        if not pc.any(here).as_py():
            continue
        codes = pc.utf8_slice_codeunits(digits, 0, size)
        for code in pc.unique(codes.filter(here)).to_pylist():
            international = _international(code)
            if international is not None:
                allowed += international.keys(f"p{code}", len(code))
        tagged = _join("p", codes)
        rest = pc.utf8_slice_codeunits(digits, size, _MAX_INPUT)
        keys = pc.if_else(here, _key(tagged, rest), keys)
    result = pc.if_else(plus, _join("+", digits), result)
    settled = pc.fill_null(pc.is_in(keys, value_set=arrow.array(allowed, _TEXT)), False)
    return pc.if_else(settled, result, null)


def e164(texts: arrow.Array, region: str | None) -> arrow.Array:
    """`phone(value, region)` for every value of a (trimmed) text array; null stays null.
    The library runs once per distinct value the fast path leaves open."""
    texts = texts.cast(_TEXT)
    fast = _fast(texts, region)
    unsettled = pc.and_(pc.is_valid(texts), pc.is_null(fast))
    if not pc.any(unsettled).as_py():
        return fast
    values = pc.unique(texts.filter(unsettled))
    answers = arrow.array([phone(v, region) for v in values.to_pylist()], _TEXT)
    looked_up = pc.take(answers, pc.index_in(texts, value_set=values))
    return pc.if_else(unsettled, looked_up, fast)
