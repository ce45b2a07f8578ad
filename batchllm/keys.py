"""Row keys, input hashes and seen ids for a whole Arrow batch of input rows at once.

A nightly run reads mostly rows that an earlier run has done already; finding them must not cost
a Python dict and a Python hash per row. This module computes, with numpy over the batch's Arrow
buffers:

* ``batch_digests``: each row's input hash, a 64-bit hash of its cells in column order (a null
  differs from an empty cell), written as 16 hex digits (``digest_strings``). It is what the run
  stores as ``input_hash`` for rows read from a file. Rows handed over as dicts (the Python API)
  keep ``render.input_hash``; a row whose stored hash is of the other kind is recognised by its
  request key after rendering instead.
* ``batch_keys``: each row's key from the id column, exactly as ``row_key`` makes it; rows
  without an id get their content key from ``row_key`` (the caller's, per row).
* ``SeenIds``: the ids a read has met (sorted arrays of 64-bit hashes), for duplicate ids;
  ``DuplicateIds`` refuses a second row with a seen id.
* ``row_key``: one row's key, its id or a content hash, with ids and internal keys apart.

It knows nothing of prompts, the done index or the run directory.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from batchllm.hashing import hash_one, hash_strings, pair_hash

U64 = np.uint64
_PRIME = U64(0x100000001B3)
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
#: how keys batchllm makes begin (content hashes, unreadable lines), and the escape of an id
#: that begins like one (``row_key`` and ``batch_keys`` both escape with ``\``)
_INTERNAL_PREFIXES = ("h:", "line:", "\\")
#: ids added one at a time before they are sorted into a layer
_PENDING = 4096


def digestible(schema: pa.Schema) -> bool:
    """Whether every column has a columnar input hash (text, bytes, numbers, booleans, times)."""
    return all(_cells_type(field.type) for field in schema)


def batch_digests(batch: pa.RecordBatch) -> np.ndarray:
    """Each row's input hash as a 64-bit number (the schema must be ``digestible``): the hash
    of its cells' bytes joined, paired with each cell's length (a null's is -1), so that the
    join is unambiguous."""
    cells = [_as_bytes(column) for column in batch.columns]
    names = orjson.dumps(batch.schema.names).decode()
    lengths = np.full(batch.num_rows, U64(hash_one(names)), U64)
    total = np.zeros(batch.num_rows, np.int64)
    with np.errstate(over="ignore"):
        for column in cells:
            length = np.asarray(pc.binary_length(column).fill_null(-1), np.int64)
            lengths = lengths * _PRIME + length.astype(U64)
            total += length.clip(0)
    # zero bytes up to a whole number of words: the joined rows' words are hashed in place
    padding = _zeros((-total) % 8)
    joined = pc.binary_join_element_wise(
        *cells, padding, pa.scalar(b"", pa.large_binary()), null_handling="replace"
    )
    return pair_hash(hash_strings(joined), lengths)


def digest_strings(hashes: np.ndarray) -> pa.Array:
    """Each 64-bit hash as 16 lowercase hex digits (a string array, without a Python object)."""
    count = len(hashes)
    octets = hashes.astype(">u8").view(np.uint8).reshape(count, 8)
    nibbles = np.empty((count, 16), np.uint8)
    nibbles[:, 0::2] = octets >> 4
    nibbles[:, 1::2] = octets & 15
    offsets = np.arange(0, 16 * count + 1, 16, dtype=np.int32)
    data = _HEX[nibbles].tobytes()
    return pa.Array.from_buffers(
        pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def batch_keys(batch: pa.RecordBatch, id_column: str | None) -> tuple[pa.Array, np.ndarray] | None:
    """Each row's key from its id (``\\``-escaped like ``row_key``) and which rows have no id
    (their key is their content's: ``row_key`` of the row). None: the ids are not all text or
    integers, or not valid UTF-8; then every key is made per row."""
    if id_column is None:
        return None
    ids = batch.column(id_column)
    try:
        for column in batch.columns:  # a cell that is not UTF-8 is an error row: row by row
            if pa.types.is_binary(column.type):
                pc.cast(column, pa.string())
        if pa.types.is_integer(ids.type) or pa.types.is_binary(ids.type):
            ids = pc.cast(ids, pa.string())
    except pa.ArrowInvalid:
        return None
    if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)):
        return None
    missing = np.asarray(pc.or_kleene(ids.is_null(), pc.equal(ids, "")).fill_null(True))
    starts = [pc.starts_with(ids, prefix) for prefix in _INTERNAL_PREFIXES]
    internal = pc.or_(pc.or_(starts[0], starts[1]), starts[2]).fill_null(False)
    if pc.any(internal).as_py():
        escaped = pc.binary_join_element_wise(pa.scalar("\\"), ids, pa.scalar(""))
        ids = pc.if_else(internal, escaped, ids)
    return ids, missing


class SeenIds:
    """The ids one read of the input has met, as 64-bit hashes (8 bytes an id): sorted layers,
    merged as they grow, and a few ids added one at a time before they are sorted in."""

    __slots__ = ("_layers", "_pending")

    def __init__(self) -> None:
        self._layers: list[np.ndarray] = []
        self._pending: set[int] = set()

    def add(self, key: str) -> bool:
        """Add one id; True when it was not seen before."""
        hashed = hash_one(key)
        value = U64(hashed)
        if hashed in self._pending or any(_has(layer, value) for layer in self._layers):
            return False
        self._pending.add(hashed)
        if len(self._pending) >= _PENDING:
            self._sort_in(np.fromiter(self._pending, U64, len(self._pending)))
            self._pending = set()
        return True

    def add_many(self, hashes: np.ndarray) -> np.ndarray:
        """Add ids in order; for each, whether it was seen before (earlier in ``hashes`` too)."""
        seen = np.zeros(len(hashes), np.bool_)
        for layer in self._layers:
            at = np.searchsorted(layer, hashes).clip(0, max(len(layer) - 1, 0))
            seen |= layer[at] == hashes
        if self._pending:
            seen |= np.isin(hashes, np.fromiter(self._pending, U64, len(self._pending)))
        _, first = np.unique(hashes, return_index=True)
        repeated = np.ones(len(hashes), np.bool_)
        repeated[first] = False
        self._sort_in(hashes[~(seen | repeated)])
        return seen | repeated

    def know(self, hashes: np.ndarray) -> None:
        """Add ids known to be distinct and not seen yet (the rows of an unread prefix)."""
        if len(hashes):
            self._sort_in(hashes)

    def _sort_in(self, hashes: np.ndarray) -> None:
        layer = np.sort(hashes)
        while self._layers and len(self._layers[-1]) <= 2 * len(layer):
            layer = np.sort(np.concatenate([self._layers.pop(), layer]), kind="mergesort")
        self._layers.append(layer)


def _zeros(lengths: np.ndarray) -> pa.Array:
    """A binary array of runs of zero bytes, of the given lengths."""
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = pa.py_buffer(bytes(int(offsets[-1])))
    return pa.Array.from_buffers(
        pa.large_binary(), len(lengths), [None, pa.py_buffer(offsets), data]
    )


def _has(layer: np.ndarray, value: np.uint64) -> bool:
    at = int(np.searchsorted(layer, value))
    return at < len(layer) and layer[at] == value


def _cells_type(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_temporal(kind)
        or pa.types.is_decimal(kind)
    )


def _as_bytes(column: pa.Array) -> pa.Array:
    """A column's cells as bytes: text and bytes as they are, others in Arrow's text form."""
    kind = column.type
    if pa.types.is_large_binary(kind):
        return column
    textual = pa.types.is_binary(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)
    return pc.cast(column if textual else pc.cast(column, pa.string()), pa.large_binary())


class DuplicateIds:
    """The ids one read of the input has met: a second row with a seen id would hide the first
    in the results, so it is refused. One 8-byte hash an id (``SeenIds``)."""

    __slots__ = ("_column", "_seen")

    def __init__(self, id_column: str | None) -> None:
        self._column = id_column
        self._seen = SeenIds()

    def problem(self, key: str) -> str | None:
        """Why the row with ``key`` cannot be sent, if its id was seen before in this read
        (a content hash, ``h:``, is no id: identical rows share one result)."""
        if self._column is None or key.startswith("h:") or self._seen.add(key):
            return None
        return self.refusal(key)

    def seen(self, hashes: np.ndarray) -> np.ndarray:
        """For ids hashed with ``hash_strings`` (none a content hash), in order: whether each
        was seen before in this read."""
        return self._seen.add_many(hashes)

    def know(self, hashes: list[np.ndarray]) -> None:
        """Ids hashed with ``hash_strings``, distinct, met before this read (an unread prefix)."""
        for part in hashes:
            self._seen.know(part)

    def refusal(self, key: str) -> str:
        return f"duplicate id '{key}' in column '{self._column}': not sent"


def row_key(row: dict[str, Any], id_column: str | None) -> str:
    """The row's identity across runs: its id, or a hash of its whole content (``h:...``).

    Without an id column, rows with identical content share one key (and one result). An id
    that begins like a key batchllm makes (``h:``, ``line:``) is escaped with a backslash, so
    ids and content hashes never meet; every other id is its own key, unchanged.
    """
    if id_column is not None:
        value = row.get(id_column)
        if value is not None and value != "":
            text = str(value)
            return "\\" + text if text.startswith(_INTERNAL_PREFIXES) else text
    content = orjson.dumps(row, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return "h:" + hashlib.blake2b(content, digest_size=12).hexdigest()
