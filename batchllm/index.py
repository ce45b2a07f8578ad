"""The done index: what a run directory's parts hold, in flat sorted arrays of 64-bit hashes.

Three questions are asked of it, each for a whole batch of rows at once (``numpy.searchsorted``
over sorted ``uint64`` arrays, never a Python object per row):

* is (row key, input hash) done, by a run with the job's current fingerprint? (``by_input``:
  the same row data under the same job makes the same request, so it is skipped unrendered)
* is (row key, request key) done? (``by_request``)
* was this request answered ok, by any run of this job? (``answers``: its reply is reused, not
  sent again; the hash is kept with where its row is, and the row is read only when asked for)

A key's latest outcome decides whether it counts as failed (for ``--retry-failed``); parts are read
in ``parts_in_order`` order and rows within a part in ``seq`` order, so a stable sort keeps the
last one. Strings are hashed by ``batchllm.hashing``, numpy over whole Arrow arrays. About 34
bytes a done row.

Its layers come from the parts or, mapped, from the file ``batchllm.index_file`` keeps; it is kept
up to date as the run writes parts (``add_part``). Which parts exist, in what order: the store's.
"""

from __future__ import annotations

import ctypes
import mmap
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batchllm.errors import RunDirError
from batchllm.hashing import U64, find_sorted, hash_one, hash_strings, pair_hash, pair_one

__all__ = [
    "DoneIndex",
    "assemble",
    "build_index",
    "damaged",
    "hash_one",
    "hash_strings",
    "pair_hash",
]
from batchllm.outcome import OK, TERMINAL

#: the columns the index reads from a part
INDEX_COLUMNS = ("row_key", "request_key", "input_hash", "status", "run_id")
#: deltas (one per part written) kept apart before they are folded into one
_FOLD_AT = 32
#: rows of a part read at a time
_READ_ROWS = 1 << 14
#: one-at-a-time lookups between letting go of the mapped pages they touched
_RELEASE_AFTER = 256


@dataclass(slots=True)
class Keys:
    """Sorted distinct keys, each with whether its latest outcome is not ok."""

    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, U64))
    failed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.bool_))

    @classmethod
    def build(cls, keys: list[np.ndarray], failed: list[np.ndarray]) -> Keys:
        """From keys in outcome order (oldest first): the last outcome of each key decides.
        Empties both lists as it takes them in (each array is let go as soon as it can be)."""
        if not keys:
            return cls()
        flat = np.concatenate(keys)
        keys.clear()
        order = np.argsort(flat, kind="stable")
        flat = flat[order]
        states = np.concatenate(failed)
        failed.clear()
        states = states[order]
        del order
        last = np.ones(len(flat), np.bool_)
        last[:-1] = flat[1:] != flat[:-1]
        return cls(flat[last], states[last])

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found, failed) for each hash."""
        if not len(self.keys):
            none = np.zeros(len(hashes), np.bool_)
            return none, none.copy()
        at = np.searchsorted(self.keys, hashes).clip(0, len(self.keys) - 1)
        found = self.keys[at] == hashes
        return found, found & self.failed[at]


@dataclass(slots=True)
class Layer:
    """One part's contribution, or the whole directory's as it was opened."""

    by_request: Keys
    by_input: Keys
    answers: np.ndarray
    #: where each answer's row is: part number << 32 | row group
    where: np.ndarray


class DoneIndex:
    """Which (row, request) and (row, input) pairs are done, and which requests were answered."""

    def __init__(self, same_job: frozenset[str] = frozenset()) -> None:
        self._same_job = same_job
        self._parts: list[Path] = []
        self._layers: list[Layer] = []
        #: leading layers never folded (the index file's, memory-mapped)
        self._fixed = 0
        #: one-at-a-time lookups since the mapped pages were last let go
        self._single = 0
        self._lock = threading.Lock()

    # --- asking -------------------------------------------------------------------------

    def done_inputs(self, keys: list[str], digests: list[str], *, retry_failed: bool) -> np.ndarray:
        """For each row, whether its (row key, input hash) is done."""
        return self._done("by_input", keys, digests, retry_failed)

    def done_requests(
        self, keys: list[str], requests: list[str], *, retry_failed: bool
    ) -> np.ndarray:
        """For each row, whether its (row key, request key) is done."""
        return self._done("by_request", keys, requests, retry_failed)

    def is_done(self, row_key: str, request_key: str, *, retry_failed: bool) -> bool:
        return self._done_one("by_request", row_key, request_key, retry_failed)

    def is_done_input(self, row_key: str, input_hash: str, *, retry_failed: bool) -> bool:
        return self._done_one("by_input", row_key, input_hash, retry_failed)

    def has_answer(self, request_key: str) -> bool:
        """Whether a reply to this request is stored (ok, any run of this job)."""
        key = U64(hash_one(request_key))
        return any(_find_one(layer.answers, key) >= 0 for layer in self._one_lookup())

    def answered(self, request_keys: list[str]) -> np.ndarray:
        """For each request, whether a reply to it is stored (ok, any run of this job)."""
        hashes = hash_strings(request_keys)
        found = np.zeros(len(hashes), np.bool_)
        for layer in self._snapshot():
            found |= find_sorted(layer.answers, hashes) >= 0
            _release(layer.answers)
        return found

    def answer(self, request_key: str) -> dict[str, Any] | None:
        """The stored ok outcome of ``request_key`` as a row (read from its part), if any."""
        key = U64(hash_one(request_key))
        for layer in reversed(self._one_lookup()):
            at = _find_one(layer.answers, key)
            if at >= 0:
                where = int(layer.where[at])
                row = _read_answer(self._parts[where >> 32], where & 0xFFFFFFFF, request_key)
                if row is not None:
                    return row
        return None

    @property
    def empty(self) -> bool:
        return not any(len(layer.by_request.keys) for layer in self._snapshot())

    def __len__(self) -> int:
        return sum(len(layer.by_request.keys) for layer in self._snapshot())

    # --- building -------------------------------------------------------------------------

    def add_part(self, part: Path, table: pa.Table | None = None) -> None:
        """Take in a part (read from disk unless its table is given); newer than all before."""
        with self._lock:
            number = len(self._parts)
            self._parts.append(part)
        layer = layer_of([(number, part, table)], self._same_job)
        with self._lock:
            self._layers.append(layer)
            if len(self._layers) - self._fixed > _FOLD_AT:
                fixed = self._layers[: self._fixed]
                self._layers = [*fixed, _fold(self._layers[self._fixed :])]

    def _snapshot(self) -> list[Layer]:
        with self._lock:
            return list(self._layers)

    def _one_lookup(self) -> list[Layer]:
        """The layers, for one key's lookup; every ``_RELEASE_AFTER`` of those the pages they
        touched in the mapped layers are let go (each touches a few pages of every array)."""
        layers = self._snapshot()
        self._single += 1
        if self._single >= _RELEASE_AFTER:
            self._single = 0
            for layer in layers[: self._fixed]:
                _release(layer.by_request.keys, layer.by_request.failed, layer.answers)
                _release(layer.by_input.keys, layer.by_input.failed, layer.where)
        return layers

    def _done_one(self, which: str, key: str, other: str, retry: bool) -> bool:
        pair = U64(pair_one(hash_one(key), hash_one(other)))
        done = failed = False
        for layer in self._one_lookup():
            keys: Keys = getattr(layer, which)
            at = _find_one(keys.keys, pair)
            if at >= 0:
                done, failed = True, bool(keys.failed[at])
        return done and not (retry and failed)

    def input_states(self, keys: np.ndarray, digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For keys and input hashes already hashed (``hash_strings``): whether each (row key,
        input hash) is done, and whether its latest outcome failed; one pass over the index."""
        pairs = pair_hash(keys, digests)
        order = np.argsort(pairs)  # looked up in order: far fewer cache misses
        done, failed = self._states("by_input", pairs[order])
        found, fails = np.empty_like(done), np.empty_like(failed)
        found[order], fails[order] = done, failed
        return found, fails

    def _done(self, which: str, keys: list[str], others: list[str], retry: bool) -> np.ndarray:
        return self._done_hashed(which, pair_hash(hash_strings(keys), hash_strings(others)), retry)

    def _done_hashed(self, which: str, hashes: np.ndarray, retry: bool) -> np.ndarray:
        done, failed = self._states(which, hashes)
        return done & ~failed if retry else done

    def _states(self, which: str, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        done = np.zeros(len(hashes), np.bool_)
        failed = np.zeros(len(hashes), np.bool_)
        for layer in self._snapshot():
            keys: Keys = getattr(layer, which)
            found, fails = keys.lookup(hashes)
            _release(keys.keys, keys.failed)
            done |= found
            failed = np.where(found, fails, failed)
        return done, failed


def build_index(parts: list[Path], same_job: frozenset[str]) -> DoneIndex:
    """The index of ``parts`` (oldest first); ``same_job``: runs with the job's fingerprint."""
    layers = [layer_of(list(enumerate(parts)), same_job)] if parts else []
    return assemble(parts, layers, same_job, 0)


def assemble(
    parts: list[Path], layers: list[Layer], same_job: frozenset[str], fixed: int
) -> DoneIndex:
    """An index of ``parts`` from its layers (oldest first), the first ``fixed`` never folded."""
    index = DoneIndex(same_job)
    index._parts = list(parts)
    index._layers = layers
    index._fixed = fixed
    _trim()
    return index


def _release(*arrays: np.ndarray) -> None:
    """Let go of the pages a lookup touched in arrays mapped from a file (``numpy.memmap``):
    they stay in the page cache, cheap to touch again, but no longer count in this process's
    memory, so a batch of lookups over the whole file never holds the file."""
    for array in arrays:
        mapped = getattr(array, "_mmap", None)
        if isinstance(mapped, mmap.mmap):
            mapped.madvise(mmap.MADV_DONTNEED)


def _trim() -> None:
    """Give the heap's free pages back (glibc): what building the index freed."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)


def damaged(part: Path, exc: BaseException) -> RunDirError:
    """The one-line error for a part that cannot be read."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return RunDirError(
        f"{part}: damaged results part ({reason}); move it out of the run directory "
        "(its rows are then asked again) or restore it from a backup, and run again"
    )


def layer_of(
    parts: list[tuple[int, Path, pa.Table | range | None]] | list[tuple[int, Path]],
    same_job: frozenset[str],
) -> Layer:
    """The layer of ``parts``: (number, part), or with the part's table, or the range of its
    row groups to read."""
    req: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    inp: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    answers: list[np.ndarray] = []
    where: list[np.ndarray] = []
    for number, part, *table in parts:
        for group, batch in _batches(part, table[0] if table else None):
            requests = hash_strings(batch.column("request_key"))
            _take(batch, requests, same_job, req, inp)
            ok = np.asarray(pc.equal(batch.column("status"), OK).fill_null(False))
            answers.append(requests[ok])
            where.append(np.full(int(ok.sum()), (number << 32) | group, np.int64))
    pa.default_memory_pool().release_unused()  # what reading the parts took, before sorting
    by_request, by_input = Keys.build(*req), Keys.build(*inp)
    flat = np.concatenate(answers) if answers else np.zeros(0, U64)
    answers.clear()
    located = np.concatenate(where) if where else np.zeros(0, np.int64)
    where.clear()
    order = np.argsort(flat, kind="stable")
    return Layer(by_request, by_input, flat[order], located[order])


def _take(
    batch: pa.RecordBatch,
    requests: np.ndarray,
    same_job: frozenset[str],
    req: tuple[list[np.ndarray], list[np.ndarray]],
    inp: tuple[list[np.ndarray], list[np.ndarray]],
) -> None:
    """Add a batch's terminal outcomes to the (row, request) and (row, input) key lists."""
    terminal = pc.is_in(batch.column("status"), pa.array(sorted(TERMINAL))).fill_null(False)
    chosen = np.asarray(terminal)
    batch = batch.filter(terminal)
    rows = hash_strings(batch.column("row_key"))
    failed = np.asarray(pc.not_equal(batch.column("status"), OK).fill_null(True))
    req[0].append(pair_hash(rows, requests[chosen]))
    req[1].append(failed)
    if "input_hash" not in batch.schema.names or not same_job:
        return
    mine = pc.and_(
        pc.is_in(batch.column("run_id"), pa.array(sorted(same_job))),
        pc.is_valid(batch.column("input_hash")),
    )
    kept = np.asarray(mine.fill_null(False))
    digests = hash_strings(batch.column("input_hash").filter(mine))
    inp[0].append(pair_hash(rows[kept], digests))
    inp[1].append(failed[kept])


def _batches(part: Path, table: pa.Table | range | None) -> Any:
    """(row group, batch) of the index's columns, in order (of the groups ``table`` names when
    it is a range)."""
    if isinstance(table, pa.Table):
        for batch in table.select(_present(table.schema.names)).to_batches():
            yield 0, batch
        return
    try:
        parquet = pq.ParquetFile(part, memory_map=False)
        columns = _present(parquet.schema_arrow.names)
        groups = table if isinstance(table, range) else range(parquet.num_row_groups)
        for group in groups:
            # a slice of a row group at a time: a large part never has to fit in memory
            batches = parquet.iter_batches(
                _READ_ROWS, row_groups=[group], columns=columns, use_threads=False
            )
            for batch in batches:
                yield group, batch
    except FileNotFoundError:
        return  # merged away by the run holding the lock (a reader without it)
    except (OSError, pa.ArrowException) as exc:
        raise damaged(part, exc) from None


def _present(names: list[str]) -> list[str]:
    return [name for name in INDEX_COLUMNS if name in names]


def _fold(layers: list[Layer]) -> Layer:
    def keys(name: str) -> Keys:
        chosen = [getattr(layer, name) for layer in layers]
        return Keys.build([k.keys for k in chosen], [k.failed for k in chosen])

    flat = np.concatenate([layer.answers for layer in layers])
    located = np.concatenate([layer.where for layer in layers])
    order = np.argsort(flat, kind="stable")
    return Layer(keys("by_request"), keys("by_input"), flat[order], located[order])


def _find_one(sorted_keys: np.ndarray, key: np.uint64) -> int:
    at = int(np.searchsorted(sorted_keys, key, side="right")) - 1
    return at if at >= 0 and sorted_keys[at] == key else -1


def _read_answer(part: Path, group: int, request_key: str) -> dict[str, Any] | None:
    try:
        table = pq.ParquetFile(part).read_row_group(group)
    except FileNotFoundError:
        return None
    except (OSError, pa.ArrowException) as exc:
        raise damaged(part, exc) from None
    mask = pc.and_(
        pc.equal(table.column("request_key"), request_key), pc.equal(table.column("status"), OK)
    )
    rows = table.filter(mask).to_pylist()
    return rows[-1] if rows else None
