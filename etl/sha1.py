"""SHA-1 (FIPS 180-4) of many messages at once, in numpy: the event ids' hash (SPEC §4).

hashlib costs about 1.5 µs per call whatever the message, most of it the call itself,
and a chunk has one id per row: 50,000 calls, a third of the transform. Here the 80
rounds run once per chunk over arrays of 50,000 words (about 27 ms a 64-byte block).
Every id's message starts with the same bytes (the namespace, and the store, source and
event name when they are constants), so the blocks of that common prefix are hashed
once and each row hashes only its own last block or two. Tested against hashlib.
"""

from __future__ import annotations

import numpy as np
import pyarrow as arrow
import pyarrow.compute as pc

_INITIAL = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0)
_K = [np.uint32(k) for k in (0x5A827999, 0x6ED9EBA1, 0x8F1BBCDC, 0xCA62C1D6)]
_BLOCK = 64
_BINARY = arrow.large_binary()

State = list[np.ndarray]  # the five 32-bit words, each an array (one value per message)


def _rotated(x: np.ndarray, bits: int) -> np.ndarray:
    rotated: np.ndarray = (x << np.uint32(bits)) | (x >> np.uint32(32 - bits))
    return rotated


def _compress(state: State, block: np.ndarray) -> State:
    """The state after one 64-byte block per message (`block`: messages x 16 words)."""
    schedule = [np.ascontiguousarray(block[:, t]) for t in range(16)]
    for t in range(16, 80):
        schedule.append(
            _rotated(schedule[t - 3] ^ schedule[t - 8] ^ schedule[t - 14] ^ schedule[t - 16], 1)
        )
    a, b, c, d, e = state
    for t in range(80):
        if t < 20:
            f = d ^ (b & (c ^ d))
        elif 40 <= t < 60:
            f = (b & c) | (d & (b | c))
        else:
            f = b ^ c ^ d
        a, b, c, d, e = _rotated(a, 5) + f + e + _K[t // 20] + schedule[t], a, _rotated(b, 30), c, d
    return [s + x for s, x in zip(state, (a, b, c, d, e), strict=True)]


def digests(prefix: bytes, tails: arrow.Array) -> np.ndarray:
    """SHA-1 of `prefix` + each value of `tails` (binary or text), as rows x 20 bytes."""
    rows = len(tails)
    whole = len(prefix) // _BLOCK * _BLOCK
    state: State = [np.array([word], dtype=np.uint32) for word in _INITIAL]
    with np.errstate(over="ignore"):
        for start in range(0, whole, _BLOCK):
            block = np.frombuffer(prefix[start : start + _BLOCK], dtype=">u4").astype(np.uint32)
            state = _compress(state, block.reshape(1, 16))
        head = prefix[whole:]
        tails = tails.cast(_BINARY)
        sizes = pc.binary_length(tails).to_numpy(zero_copy_only=False).astype(np.int64)
        blocks = (len(head) + sizes + 8) // _BLOCK + 1  # room for 0x80 and the bit length
        words = np.empty((rows, 5), dtype=np.uint32)
        for count in np.unique(blocks).tolist():
            group = np.flatnonzero(blocks == count)
            chosen = tails if len(group) == rows else tails.take(group)
            message = _padded(head, chosen, sizes[group], count * _BLOCK, whole)
            hashed = [np.repeat(word, len(group)) for word in state]
            for block_number in range(count):
                hashed = _compress(hashed, message[:, block_number * 16 : block_number * 16 + 16])
            words[group] = np.stack(hashed, axis=1)
    return words.astype(">u4").view(np.uint8).reshape(rows, 20)


def _padded(
    head: bytes, tails: arrow.Array, sizes: np.ndarray, width: int, hashed_before: int
) -> np.ndarray:
    """The last `width` bytes of each message (head, tail, 0x80, zeros, its length in
    bits), as messages x words; Arrow joins them, since every row comes out `width` long."""
    ends = np.unique(sizes)
    suffixes = [
        b"\x80"
        + bytes(width - len(head) - size - 9)
        + ((hashed_before + len(head) + size) * 8).to_bytes(8, "big")
        for size in ends.tolist()
    ]
    suffix = pc.take(arrow.array(suffixes, _BINARY), np.searchsorted(ends, sizes))
    joined = pc.binary_join_element_wise(
        arrow.scalar(head, _BINARY), tails, suffix, arrow.scalar(b"", _BINARY)
    )
    _, offsets, data = joined.buffers()
    start = int(np.frombuffer(offsets, dtype=np.int64)[joined.offset])
    raw = np.frombuffer(data, dtype=np.uint8)[start : start + len(joined) * width]
    return raw.view(">u4").astype(np.uint32).reshape(len(joined), width // 4)
