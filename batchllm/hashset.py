"""A set of 64-bit hashes in one flat array: the memory-lean set for per-row bookkeeping.

A Python ``set`` of ints costs about 65 bytes an entry (the int object and its slot); this one
costs at most 16 (8-byte slots, never more than half full), for under a microsecond more
per operation. Open addressing with linear probing; 0 marks an empty slot, so a key of 0 is stored
as 1 (a harmless collision for hashes).
"""

from __future__ import annotations

from array import array

_START = 1 << 12


class HashSet64:
    __slots__ = ("_mask", "_size", "_table")

    def __init__(self, capacity: int = _START) -> None:
        self._table = array("q", bytes(8 * capacity))
        self._mask = capacity - 1
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, key: int) -> bool:
        """Add ``key``; True when it was not there yet."""
        key = key or 1
        table, mask = self._table, self._mask
        slot = key & mask
        while found := table[slot]:
            if found == key:
                return False
            slot = (slot + 1) & mask
        table[slot] = key
        self._size += 1
        if self._size * 2 > mask:
            self._grow()
        return True

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, int):
            return False
        key = key or 1
        table, mask = self._table, self._mask
        slot = key & mask
        while found := table[slot]:
            if found == key:
                return True
            slot = (slot + 1) & mask
        return False

    def _grow(self) -> None:
        """Double the table; the keys are distinct, so each goes to the first free slot."""
        old = self._table
        table = array("q", bytes(16 * len(old)))
        mask = 2 * len(old) - 1
        for key in old:
            if key:
                slot = key & mask
                while table[slot]:
                    slot = (slot + 1) & mask
                table[slot] = key
        self._table, self._mask = table, mask
