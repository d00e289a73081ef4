"""The column-wise SHA-1 of the event ids against hashlib, at every block boundary."""

from __future__ import annotations

import hashlib

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.sha1 import digests

#: Lengths around the 55/56 and 64-byte edges of SHA-1's padding, and a few blocks long.
EDGES = st.sampled_from([0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 200])
MESSAGES = st.one_of(st.binary(max_size=200), EDGES.map(lambda n: b"x" * n))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=150), EDGES.map(lambda n: b"p" * n)), st.lists(MESSAGES))
def test_digests_are_hashlibs(prefix: bytes, tails: list[bytes]) -> None:
    found = digests(prefix, pa.array(tails, pa.large_binary()))
    assert [bytes(row) for row in found] == [hashlib.sha1(prefix + t).digest() for t in tails]


def test_text_and_sliced_arrays_hash_their_own_values() -> None:
    values = pa.array(["ann", "zoë", "", "a" * 70, "b"], pa.large_string()).slice(1, 3)
    expected = [hashlib.sha1(b"ns" + v.encode()).digest() for v in ["zoë", "", "a" * 70]]
    assert [bytes(row) for row in digests(b"ns", values)] == expected
