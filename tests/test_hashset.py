"""The lean set of 64-bit hashes behaves like a set."""

from __future__ import annotations

import random

from batchllm.hashset import HashSet64


def test_hashset_matches_a_python_set_through_growth() -> None:
    """Adds, repeats, zero and negative keys, and growth far past the first table all agree."""
    rng = random.Random(3)
    keys = [rng.getrandbits(64) - (1 << 63) for _ in range(20_000)] + [0, 1, -1]
    lean, plain = HashSet64(), set()
    for key in keys + keys[:500]:
        assert lean.add(key) is ((key or 1) not in plain)
        plain.add(key or 1)
    assert len(lean) == len(plain)
    assert all(key in lean for key in keys)
    others = [rng.getrandbits(64) for _ in range(5_000)]
    assert sum(key in lean for key in others) == sum((key or 1) in plain for key in others)
    assert "not an int" not in lean


def test_an_empty_set_holds_nothing() -> None:
    """A new set has no keys and answers no for any int, including 0 and its stand-in 1."""
    empty = HashSet64()
    assert len(empty) == 0
    assert 0 not in empty and 1 not in empty and 12345 not in empty


def test_zero_is_stored_as_one() -> None:
    """0 marks an empty slot, so the key 0 is kept as 1: adding one makes the other present."""
    lean = HashSet64()
    assert lean.add(0) is True
    assert 1 in lean and 0 in lean
    assert lean.add(1) is False
    assert len(lean) == 1


def test_keys_that_collide_in_the_table_are_all_kept() -> None:
    """Keys with the same low bits (the same first slot) probe on and are all found."""
    lean = HashSet64(capacity=16)
    keys = [5 + 16 * i for i in range(7)]
    assert all(lean.add(key) for key in keys)
    assert all(key in lean for key in keys)
    assert (5 + 16 * 7) not in lean


def test_a_small_set_grows_and_keeps_every_key() -> None:
    """A capacity-8 set given 100 keys grows as it fills and still finds every one, and only
    them."""
    lean = HashSet64(capacity=8)
    for key in range(2, 102):
        assert lean.add(key) is True
    assert len(lean) == 100
    assert all(key in lean for key in range(2, 102))
    assert not any(key in lean for key in range(102, 200))
