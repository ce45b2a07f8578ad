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
