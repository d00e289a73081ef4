"""The phone fast path against phonenumbers: every value it settles gets the library's answer."""

from __future__ import annotations

import phonenumbers
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl import identifiers
from etl.identifiers import e164, phone

#: Regions of the benchmark data and of real backfills, None (no default_region), and
#: regions whose prefix patterns are unusual (NANPA islands, Argentina, Italy, Russia).
REGIONS = [
    "US",
    "CA",
    "GB",
    "DE",
    "FR",
    "BR",
    "IN",
    "JP",
    "AU",
    "IL",
    "AG",
    "AR",
    "IT",
    "RU",
    "CN",
    "MX",
    "SE",
    "NL",
    None,
]
SEPARATORS = ["", "", " ", "-", ".", "(", ")", ") ", " - ", "  "]

punctuated = st.builds(
    lambda plus, parts: plus + "".join(sep + digits for sep, digits in parts),
    #: calling codes, national and international dialling prefixes, written with or without "+"
    st.sampled_from(
        [
            "",
            "",
            "+",
            " +",
            "+0",
            "1",
            "1-",
            "+1 ",
            "44",
            "+44 ",
            "0",
            "00",
            "011",
            "55",
            "+55 ",
            "90",
            "81",
            "+81 ",
        ]
    ),
    st.lists(
        st.tuples(st.sampled_from(SEPARATORS), st.text("0123456789", min_size=1, max_size=5)),
        min_size=1,
        max_size=6,
    ),
)
#: Values just outside the fast path's alphabet: letters, "#", extensions, other pluses.
near = st.text("0123456789 ()+.-x#;,ext/", min_size=1, max_size=20)


def _fast(values: list[str | None], region: str | None) -> list[str | None]:
    texts = pa.array([v.strip() if v else v for v in values], pa.large_string())
    return identifiers._fast(texts, region).to_pylist()


def _check(values: list[str], region: str | None) -> int:
    """Assert fast == library wherever the fast path settles; return how many it settled."""
    settled = 0
    for value, fast in zip(values, _fast(values, region), strict=True):
        if fast is not None:
            assert fast == phone(value.strip(), region), (value, region)
            settled += 1
    return settled


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(punctuated, near), min_size=1, max_size=30), st.sampled_from(REGIONS))
def test_fast_path_agrees_with_phonenumbers(values: list[str], region: str | None) -> None:
    _check(values, region)
    assert e164(pa.array([v.strip() for v in values]), region).to_pylist() == [
        phone(v.strip(), region) for v in values
    ]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)), st.data())
def test_fast_path_on_every_region_example_numbers(region: str, data: st.DataObject) -> None:
    """Real numbers of every region, written in its national and international formats,
    parsed with that region and with US as the default region."""
    formats = [
        phonenumbers.PhoneNumberFormat.NATIONAL,
        phonenumbers.PhoneNumberFormat.INTERNATIONAL,
        phonenumbers.PhoneNumberFormat.E164,
    ]
    numbers = [
        phonenumbers.example_number_for_type(region, kind)
        for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE)
    ]
    values = [phonenumbers.format_number(n, f) for n in numbers if n is not None for f in formats]
    default = data.draw(st.sampled_from([region, "US", None]))
    _check(values, default)


@pytest.mark.parametrize(
    ("region", "value", "expected"),
    [
        ("US", "(415) 555-2671", "+14155552671"),
        ("US", "415.555.2671", "+14155552671"),
        ("US", "415-555-2671", "+14155552671"),
        ("US", "1-415-555-2671", "+14155552671"),
        ("US", "1 (415) 555-2671", "+14155552671"),
        ("US", "+1 415-555-2671", "+14155552671"),
        ("US", "+44 20 7946 0958", "+442079460958"),
        ("US", "+5511987654321", "+5511987654321"),
        ("US", "+819012345678", "+819012345678"),
        (None, "+61412345678", "+61412345678"),
        ("GB", "20 7946 0958", "+442079460958"),
    ],
)
def test_fast_path_settles_the_usual_formats(region: str | None, value: str, expected: str) -> None:
    """The formats of a real customer base never reach the per-value library call."""
    assert _fast([value], region) == [expected]
    assert phone(value, region) == expected


@pytest.mark.parametrize(
    ("region", "value"),
    [
        ("US", "1-015-555-2671"),  # 0 after the calling code: an Italian leading zero
        ("US", "011 44 20 7946 0958"),  # the international dialling prefix
        ("US", "+4402079460958"),  # "(0)" written into an international number
        ("US", "+01 415 555 2671"),  # no calling code starts with 0
        ("GB", "020 7946 0958"),  # the national prefix
        ("US", "415 555 2671 x12"),  # an extension
        ("US", "1-800-FLOWERS"),  # letters
        ("DE", "8 1"),  # two digits: parse does not take it for a number
        ("BR", "+55 90 11 98765-4321"),  # 90 starts a Brazilian carrier-code prefix
    ],
)
def test_fast_path_leaves_prefixes_and_letters_to_the_library(region: str, value: str) -> None:
    assert _fast([value], region) == [None]
    assert e164(pa.array([value]), region).to_pylist() == [phone(value, region)]


@pytest.mark.parametrize(
    ("pattern", "first"),
    [
        ("011", {"0"}),
        ("0|180020", {"0", "1"}),
        ("(183[12])|0", {"0", "1"}),
        ("00(?:1[245]|2[1-35])", {"0"}),
        ("([457]\\d{6})$|1", {"1", "4", "5", "7"}),
        (None, set()),
    ],
)
def test_first_digits_of_prefix_patterns(pattern: str | None, first: set[str]) -> None:
    assert identifiers._first_digits(pattern) == first


@pytest.mark.parametrize("pattern", ["0?", "(?=1)1", "[^0]", "(?:0|)"])
def test_unreadable_or_optional_prefix_patterns_disable_the_fast_path(pattern: str) -> None:
    assert identifiers._first_digits(pattern) is None
