"""Phone numbers in E.164 (SPEC §5) exactly as phonenumbers makes them, column-wise.

phonenumbers is the authority: a value's answer is `phone(value, region)` (parse, then
`is_possible_number`, then the E.164 format). Calling it costs tens of microseconds per
value, and in a real customer base nearly every number is distinct, so `e164` settles
with numpy passes over the column's bytes every value for which the answer below is
PROVABLY the library's (integer keys: calling code, length and first digit of N), and
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
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

import numpy as np
import phonenumbers
import pyarrow as arrow
import pyarrow.compute as pc
from phonenumbers import PhoneMetadata

_TEXT = arrow.large_string()
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_MAX_DIGITS = 15
_MAX_INPUT = 250  # phonenumbers' _MAX_INPUT_STRING_LENGTH
_DIGITS = frozenset("0123456789")
_CODES = np.array(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE), dtype=np.int64)


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

    def settles(self, written: int) -> frozenset[tuple[int, int]]:
        """(length, first digit) of every settleable N; `written` is the number of digits
        written besides N (parse needs at least three in all)."""
        return frozenset(
            (length, int(digit))
            for length in self.lengths
            if 2 <= length <= _MAX_DIGITS - len(self.code) and written + length >= 3
            for digit in _DIGITS - self.blocked
        )


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
def _own_code(region: str) -> frozenset[tuple[int, int]]:
    """(length, first digit) of the N of numbers written without "+" that start with the
    region's own calling code and are too long for the region without it
    ("1-415-555-2671" in the US): parse then takes the code off (the default-country
    branch of `_maybe_extract_country_code`) and N is the rest, under the rules of step 3."""
    plan = _national(region)
    if plan is None:
        return frozenset()
    metadata = PhoneMetadata.metadata_for_region(region, None)
    if metadata is None or metadata.country_code is None or metadata.general_desc is None:
        return frozenset()
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
        return frozenset()
    if not possible or possible[0] == -1:
        return frozenset()
    too_long = {n for n in range(max(possible) + 1, _MAX_DIGITS + 1) if n not in local}
    blocked = frozenset("0") | own | other
    return frozenset(
        (length, int(digit))
        for length in plan.lengths
        if length >= 2 and len(plan.code) + length in too_long
        for digit in _DIGITS - blocked
    )


#: The separators step 1 admits, by byte.
_SEPARATOR_BYTES = np.zeros(256, dtype=bool)
_SEPARATOR_BYTES[list(b" ().-")] = True
_PLUS = ord("+")
_LONGEST = _MAX_DIGITS + 1  # lengths of N beyond this are never settled
_NATIONAL, _OWN, _CODE = 0, 1, 2  # plan slots: the region's, its own code's, "+<code>"


@dataclass(frozen=True)
class _Texts:
    """A text array's bytes: `offsets[i]:offsets[i + 1]` of `data` is value i."""

    offsets: np.ndarray
    data: np.ndarray

    @classmethod
    def of(cls, texts: arrow.Array) -> _Texts:
        offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)
        offsets = offsets[texts.offset : texts.offset + len(texts) + 1]
        buffer = texts.buffers()[2]
        data = (
            np.frombuffer(buffer, dtype=np.uint8) if buffer is not None else np.zeros(0, np.uint8)
        )
        return cls(offsets - offsets[0], data[offsets[0] : offsets[-1]])

    def count(self, flags: np.ndarray) -> np.ndarray:
        """How many bytes of each value are flagged."""
        running = np.concatenate(([0], np.cumsum(flags, dtype=np.int64)))
        counted: np.ndarray = running[self.offsets[1:]] - running[self.offsets[:-1]]
        return counted

    def kept(self, flags: np.ndarray) -> _Texts:
        """The values with only their flagged bytes."""
        running = np.concatenate(([0], np.cumsum(flags, dtype=np.int64)))
        return _Texts(running[self.offsets], self.data[flags])

    def digit(self, position: np.ndarray) -> np.ndarray:
        """The digit at `position` (per value) of each value, -1 where it has none."""
        where = self.offsets[:-1] + position
        inside = (position >= 0) & (where < self.offsets[1:])
        found = self.data[np.minimum(where, max(len(self.data) - 1, 0))] if len(self.data) else 0
        return np.where(inside, np.asarray(found, dtype=np.int64) - ord("0"), -1)


def _table(region: str | None, codes: Iterable[int]) -> np.ndarray:
    """settled[slot, length of N, first digit of N] for the plans of `region` and `codes`
    (slot `_CODE + code` for "+<code>")."""
    table = np.zeros((_CODE + 1000, _LONGEST + 1, 10), dtype=bool)
    plan = _national(region) if region else None
    if plan is not None:
        for length, digit in plan.settles(0):
            table[_NATIONAL, length, digit] = True
        for length, digit in _own_code(region or ""):
            table[_OWN, length, digit] = True
    for code in codes:
        international = _international(str(code))
        if international is not None:
            for length, digit in international.settles(len(international.code)):
                table[_CODE + code, length, digit] = True
    return table


def _fast(texts: arrow.Array, region: str | None) -> arrow.Array:
    """The E.164 form where the fast path settles the value, null elsewhere: numpy over
    the array's bytes, so a chunk costs a few passes over its data whatever its size."""
    raw = _Texts.of(texts)
    size = np.diff(raw.offsets)
    digit = (raw.data - ord("0")) < 10  # uint8: bytes below "0" wrap to large values
    plus = np.zeros(len(texts), dtype=bool)
    plus[size > 0] = raw.data[raw.offsets[:-1][size > 0]] == _PLUS
    # Step 1's shape: no byte but digits and separators, except one "+" in front.
    shaped = (
        texts.is_valid().to_numpy(zero_copy_only=False)
        & (raw.count(~(digit | _SEPARATOR_BYTES[raw.data])) == plus)
        & (size <= _MAX_INPUT)
    )
    digits = raw.kept(digit)  # of every value; only shaped ones are ever settled
    count = np.diff(digits.offsets)
    slot = np.full(len(texts), -1, dtype=np.int64)
    skip = np.zeros(len(texts), dtype=np.int64)  # digits before N
    plan = _national(region) if region else None
    if plan is not None:
        own = ~plus & (count >= len(plan.code))
        for position, char in enumerate(plan.code):
            own &= digits.digit(np.full(len(texts), position)) == int(char)
        slot = np.where(~plus, np.where(own, _OWN, _NATIONAL), slot)
        skip = np.where(own, len(plan.code), skip)
    code = np.zeros(len(texts), dtype=np.int64)
    code_size = np.zeros(len(texts), dtype=np.int64)
    prefix = np.zeros(len(texts), dtype=np.int64)
    coded = plus & (digits.digit(np.zeros(len(texts), dtype=np.int64)) > 0)  # no code starts 0
    for width in (1, 2, 3):  # prefix-free codes: at most one width is known
        prefix = prefix * 10 + np.maximum(digits.digit(np.full(len(texts), width - 1)), 0)
        here = coded & (count >= width) & (code_size == 0) & np.isin(prefix, _CODES)
        code, code_size = np.where(here, prefix, code), np.where(here, width, code_size)
    slot = np.where(plus, np.where(code_size > 0, _CODE + code, -1), slot)
    skip = np.where(plus, code_size, skip)
    first = digits.digit(skip)
    settled = shaped & (slot >= 0) & (first >= 0)
    table = _table(region, np.unique(code[settled & plus]).tolist())
    length = np.minimum(count - skip, _LONGEST)
    settled &= table[np.maximum(slot, 0), np.maximum(length, 0), np.maximum(first, 0)]
    national = slot == _NATIONAL
    return _e164_texts(digits, settled, national, plan.code if plan is not None else "")


def _e164_texts(
    digits: _Texts, settled: np.ndarray, national: np.ndarray, code: str
) -> arrow.Array:
    """ "+<code><digits>" where `national`, "+<digits>" elsewhere; null where not settled."""
    count = np.diff(digits.offsets)
    head = np.where(national, 1 + len(code), 1)
    size = np.where(settled, head + count, 0)
    offsets = np.concatenate(([0], np.cumsum(size)))
    starts = offsets[:-1]
    data = np.zeros(offsets[-1], dtype=np.uint8)
    data[starts[settled]] = _PLUS
    for position, char in enumerate(code.encode()):
        data[starts[settled & national] + 1 + position] = char
    row = np.repeat(np.arange(len(count)), count)
    chosen = settled[row]
    target = (starts + head - digits.offsets[:-1])[row] + np.arange(len(row))
    data[target[chosen]] = digits.data[chosen]
    validity = np.packbits(settled, bitorder="little")
    return arrow.Array.from_buffers(
        _TEXT,
        len(count),
        [arrow.py_buffer(validity), arrow.py_buffer(offsets), arrow.py_buffer(data)],
    )


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
