"""64-bit hashes of strings and byte strings, a whole Arrow array at a time (and one in Python).

Each string is taken as little-endian 8-byte words (the last zero-filled); each word is mixed
(splitmix64's finaliser) with its place in the string, the mixed words are summed, and the sum
is mixed with the length: one pass of numpy over all words, whatever the lengths. ``hash_one``
is the same hash in plain Python, for one lookup at a time. Nothing here is stored as it is:
the done index and compaction keep these hashes in memory only (the input hash a run stores is
written as hex digits by ``batchllm.keys``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

U64 = np.uint64
_PAIR = np.uint64(0x9E3779B97F4A7C15)
#: strings hashed at a time
_SLICE = 1 << 15


def hash_strings(values: pa.Array | pa.ChunkedArray | list[str]) -> np.ndarray:
    """A 64-bit hash of each string or byte string (a null hashes like the empty string)."""
    array = pa.array(values, pa.large_string()) if isinstance(values, list) else values
    if isinstance(array, pa.ChunkedArray):
        chunks = [hash_strings(chunk) for chunk in array.chunks]
        return np.concatenate(chunks) if chunks else np.zeros(0, U64)
    binary = pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)
    array = pc.cast(array, pa.large_binary() if binary else pa.large_string())
    n = len(array)
    if n > _SLICE:  # bounds the temporaries whatever the input
        return np.concatenate([_hash(array.slice(at, _SLICE)) for at in range(0, n, _SLICE)])
    return _hash(array) if n else np.zeros(0, U64)


def _hash(array: pa.LargeStringArray | pa.LargeBinaryArray) -> np.ndarray:
    """Each string as little-endian 8-byte words (the last one zero-filled), folded."""
    n = len(array)
    offsets_buf, data_buf = array.buffers()[1], array.buffers()[2]
    offsets = np.frombuffer(offsets_buf, np.int64, n + 1, array.offset * 8)
    first, last = int(offsets[0]), int(offsets[-1])
    lengths = offsets[1:] - offsets[:-1]
    counts = (lengths + 7) // 8
    if first % 8 == 0 and not (lengths % 8).any() and data_buf is not None:
        # every string a whole number of words, the first on a word: the words as they lie
        words = np.frombuffer(data_buf, np.dtype("<u8"), (last - first) // 8, first)
        return _fold_words(words, counts, lengths)
    raw = np.frombuffer(data_buf, np.uint8)[first:last] if data_buf is not None else b""
    data = np.zeros(last - first + 8, np.uint8)
    data[: last - first] = raw
    unaligned = np.ndarray((last - first + 1,), np.dtype("<u8"), data, strides=(1,))
    begins = np.cumsum(counts) - counts
    place = np.arange(int(counts.sum())) - np.repeat(begins, counts)
    words = unaligned[np.repeat(offsets[:-1] - first, counts) + 8 * place]
    partial = np.flatnonzero(lengths % 8)
    ends = begins[partial] + counts[partial] - 1  # a string's last word: keep only its bytes
    words[ends] &= (U64(1) << ((lengths[partial] % 8).astype(U64) * U64(8))) - U64(1)
    return _fold_words(words, counts, lengths, place)


def _fold_words(
    words: np.ndarray, counts: np.ndarray, lengths: np.ndarray, place: np.ndarray | None = None
) -> np.ndarray:
    """Each word mixed with its place in its string, summed per string, mixed with the length."""
    begins = np.cumsum(counts) - counts
    if place is None:
        place = np.arange(len(words)) - np.repeat(begins, counts)
    with np.errstate(over="ignore"):
        mixed = _mix(words ^ (place.astype(U64) * _PAIR))
        sums = np.zeros(len(counts), U64)
        filled = counts > 0
        if filled.any():
            sums[filled] = np.add.reduceat(mixed, begins[filled], dtype=U64)
        return _mix(sums + lengths.astype(U64) * _PAIR)


_M64 = (1 << 64) - 1


def hash_one(text: str) -> int:
    """``hash_strings`` of one string, in plain Python (for one lookup at a time)."""
    data = text.encode("utf-8", "surrogatepass")
    total = 0
    for place, at in enumerate(range(0, len(data), 8)):
        word = int.from_bytes(data[at : at + 8], "little")
        total += _mix_one(word ^ ((place * int(_PAIR)) & _M64))
    return _mix_one((total + len(data) * int(_PAIR)) & _M64)


def pair_one(first: int, second: int) -> int:
    """``pair_hash`` of one pair."""
    return _mix_one((first * int(_PAIR) + (second ^ (second >> 29))) & _M64)


def _mix_one(x: int) -> int:
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def pair_hash(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """One hash of two: (row, request) or (row, input)."""
    with np.errstate(over="ignore"):
        return _mix(first * _PAIR + (second ^ (second >> U64(29))))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves every output bit."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> U64(30))
        x = x * U64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> U64(27))
        x = x * U64(0x94D049BB133111EB)
        mixed: np.ndarray = x ^ (x >> U64(31))
        return mixed


def find_sorted(sorted_keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Where each of ``values`` is in ``sorted_keys`` (its last occurrence), or -1: a binary
    search each, so a call costs its own values, not a sort of ``sorted_keys``."""
    if not len(sorted_keys):
        return np.full(len(values), -1, np.int64)
    at = np.searchsorted(sorted_keys, values, side="right") - 1
    at = at.clip(0, len(sorted_keys) - 1)
    return np.where(sorted_keys[at] == values, at, -1)
