"""Keys and hashes for a whole batch of input rows: the same answers as row by row, faster."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from batchllm.hashing import hash_one, hash_strings, pair_hash, pair_one
from batchllm.keys import (
    DuplicateIds,
    SeenIds,
    batch_digests,
    batch_keys,
    digest_strings,
    digestible,
    row_key,
)

WORDS = ["", "a", "abcdefg", "abcdefgh", "abcdefghi", "é" * 5, "x" * 1000, "line\nbreak"]


def test_the_array_hash_is_the_one_string_hash_for_every_length() -> None:
    """hash_strings over an array equals hash_one on each string, whatever its length (under,
    at and over a word), its encoding, and its place in the array."""
    hashes = hash_strings(WORDS)
    assert [int(h) for h in hashes] == [hash_one(word) for word in WORDS]
    sliced = hash_strings(pa.array(["skip", *WORDS], pa.large_string()).slice(1))
    assert list(sliced) == list(hashes)


def test_strings_that_differ_anywhere_hash_apart() -> None:
    """A change in any byte, or a trailing zero byte, gives another hash."""
    base = "the invoice total is wrong"
    variants = [base, base + " ", base[:-1] + "G", "T" + base[1:], base + "\x00"]
    assert len({hash_one(text) for text in variants}) == len(variants)


def test_bytes_and_nulls_hash_like_their_text_and_the_empty_string() -> None:
    """A binary array hashes as its text would; a null like the empty string; chunks join."""
    text = hash_strings(["ab", "cd"])
    binary = hash_strings(pa.array([b"ab", b"cd"], pa.binary()))
    assert list(text) == list(binary)
    assert list(hash_strings(pa.array([None, ""]))) == [hash_one("")] * 2
    chunked = pa.chunked_array([pa.array(["ab"]), pa.array(["cd"])])
    assert list(hash_strings(chunked)) == list(text)


def test_pairing_is_the_same_one_at_a_time_and_ordered() -> None:
    """pair_hash over arrays equals pair_one; (a, b) and (b, a) differ."""
    a = np.array([1, 2, 3], np.uint64)
    b = np.array([7, 8, 9], np.uint64)
    expected = [pair_one(int(x), int(y)) for x, y in zip(a, b, strict=True)]
    assert [int(v) for v in pair_hash(a, b)] == expected
    assert pair_one(1, 2) != pair_one(2, 1)


def _batch(**columns: list[object]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(columns)


def test_row_digests_see_every_cell_and_where_it_ends() -> None:
    """Rows differing in one cell, in a null against an empty cell, or in where the text splits
    between cells, all hash apart; the same row hashes alike in any batch."""
    batch = _batch(
        a=["x", "x", "x", None, "", "xy", "x"], b=["yz", "yZ", "yz", "", None, "z", "yz"]
    )
    digests = list(batch_digests(batch))
    assert digests[0] == digests[2] == digests[6]
    assert len({digests[i] for i in (0, 1, 3, 4, 5)}) == 5
    alone = batch_digests(_batch(a=["x"], b=["yz"]))
    assert int(alone[0]) == int(digests[0])


def test_the_column_names_are_part_of_the_digest() -> None:
    """The same cells under other column names are other rows."""
    assert batch_digests(_batch(a=["x"]))[0] != batch_digests(_batch(b=["x"]))[0]


def test_digests_are_written_as_sixteen_hex_digits() -> None:
    """The stored input hash: 16 lowercase hex digits, big-endian."""
    written = digest_strings(np.array([0, 255, 2**64 - 1], np.uint64)).to_pylist()
    assert written == ["0000000000000000", "00000000000000ff", "ffffffffffffffff"]


def test_only_flat_columns_have_a_columnar_digest() -> None:
    """Text, bytes, numbers, booleans and times can be hashed column-wise; lists cannot."""
    assert digestible(pa.schema([("a", pa.string()), ("n", pa.int64()), ("f", pa.float64()),
                                 ("t", pa.bool_()), ("b", pa.binary())]))  # fmt: skip
    assert not digestible(pa.schema([("tags", pa.list_(pa.string()))]))


def test_batch_keys_are_row_key_for_every_row() -> None:
    """Ids as keys, escaped when they look like internal keys; rows with no id are marked for
    a content key, which row_key gives."""
    ids = ["T1", "h:42", "line:7", "\\x", None, "", "42"]
    batch = _batch(id=ids, text=["a"] * len(ids))
    found = batch_keys(batch, "id")
    assert found is not None
    keys, missing = found
    rows = batch.to_pylist()
    for key, absent, row in zip(keys.to_pylist(), missing, rows, strict=True):
        if absent:
            assert row_key(row, "id").startswith("h:")
        else:
            assert key == row_key(row, "id")
    assert list(missing) == [False, False, False, False, True, True, False]


def test_integer_ids_key_like_their_text_and_other_ids_go_row_by_row() -> None:
    """Integer ids become their text; float ids are left to the row-by-row path (None)."""
    keys = batch_keys(_batch(id=[1, 22]), "id")
    assert keys is not None and keys[0].to_pylist() == ["1", "22"]
    assert batch_keys(_batch(id=[1.5]), "id") is None
    assert batch_keys(_batch(id=["a"]), None) is None


def test_seen_ids_find_repeats_within_and_across_batches() -> None:
    """add_many marks an id seen before (this batch or an earlier one); add does the same one
    at a time, and both see each other's ids."""
    seen = SeenIds()
    first = hash_strings(["a", "b", "a"])
    assert list(seen.add_many(first)) == [False, False, True]
    assert list(seen.add_many(hash_strings(["c", "b"]))) == [False, True]
    assert seen.add("d") is True and seen.add("a") is False
    assert list(seen.add_many(hash_strings(["d", "e"]))) == [True, False]


def test_seen_ids_keep_every_id_as_layers_merge() -> None:
    """Thousands of ids added in batches: every one is found again afterwards."""
    seen = SeenIds()
    ids = [f"id-{n}" for n in range(20_000)]
    for start in range(0, len(ids), 1_000):
        assert not seen.add_many(hash_strings(ids[start : start + 1_000])).any()
    assert seen.add_many(hash_strings(ids[::97])).all()


def test_duplicate_ids_are_refused_but_content_keys_are_not_ids() -> None:
    """A second row with the same id is refused, naming the id and column; two rows keyed by
    identical content (h:...) share one result and are not duplicates; without an id column
    nothing is refused."""
    ids = DuplicateIds("ticket")
    assert ids.problem("T1") is None
    assert ids.problem("T1") == "duplicate id 'T1' in column 'ticket': not sent"
    assert ids.problem("h:abc") is None and ids.problem("h:abc") is None
    none = DuplicateIds(None)
    assert none.problem("T1") is None and none.problem("T1") is None


@pytest.mark.parametrize(
    ("row", "key"),
    [({"id": "T1"}, "T1"), ({"id": 7}, "7"), ({"id": "h:9"}, "\\h:9"), ({"id": "\\a"}, "\\\\a")],
)
def test_row_key_is_the_id_escaped_when_it_looks_internal(row: dict[str, object], key: str) -> None:
    """The id is the key as it is, unless it begins like a key batchllm makes."""
    assert row_key(row, "id") == key


def test_row_key_without_an_id_is_a_content_hash() -> None:
    """No id column, or an empty id: a hash of the whole row, the same for identical rows."""
    a = row_key({"id": "", "text": "x"}, "id")
    assert a.startswith("h:") and a == row_key({"text": "x", "id": ""}, "id")
    assert row_key({"text": "x"}, None) != row_key({"text": "y"}, None)
