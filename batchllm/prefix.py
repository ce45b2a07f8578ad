"""The input's unchanged prefix: what a run read of the input, so that the next run over an input
that has only grown (rows appended) reads only the rows appended.

A run that reads a plain CSV or JSON Lines file to its end (no ``--limit``; every batch keyed
column-wise, with an id a row, no repeated id, no unusable line) records in ``prefix/`` of the run
directory the byte range it read, a hash of those bytes, and each row's key hash and input-hash
hash (16 bytes a row, in a file of the range's own: a *chunk*). The next run hashes each recorded
range again (hashing bytes is far cheaper than parsing them); while the ranges match and every
row of a chunk is done in the done index (asked a slice at a time, exactly as a row that was read
is asked), the chunk's rows count as reused without being read, and reading starts after the
last such chunk. A chunk whose bytes changed, or that holds a row still to do (a failed row with
``--retry-failed``, a changed prompt, the rows an interrupted run never finished), ends the skip:
from there on the input is read as before, and recorded again.

A local Parquet file is recorded a chunk a row group (its bytes as ``batchllm.prefix_parquet``
places them): a file written again with row groups appended keeps its earlier row groups' bytes
at the same offsets, and the next run reads from the first row group that is not a done,
unchanged chunk. A row group not at the place and size recorded (the file written with other
row group sizes, a page compressed otherwise) ends the skip as changed bytes do.

What a chunk holds depends only on the input's bytes and how they are read (``reading()``, its
format too: a chunk of a CSV file never stands for a Parquet file's rows); whether a row is done
is always the done index's. Compressed and object-storage inputs and CSV files in other
encodings are always read in full. Files: ``prefix/chunks.json`` (replaced at once, naming only
complete chunk files) and ``prefix/chunk-*.u64``, written only by the run holding the
directory's lock; the estimate reads them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from batchllm.index import DoneIndex
from batchllm.job import InputSpec
from batchllm.prefix_parquet import RowGroup, file_rows, row_groups
from batchllm.source import Source

PREFIX_DIR = "prefix"
#: bumped whenever the row keys' or input hashes' hashing changes
VERSION = 1
#: rows of a chunk asked of the index at a time
_ASK_ROWS = 1 << 18
#: chunk files kept before their chunks are joined into one file (their ranges stay apart)
_JOIN_AT = 8


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes ``start``..``end`` of the input, hashed (``sha1``), and its ``rows`` rows' hashes at
    row ``first`` of ``file``."""

    start: int
    end: int
    sha1: str
    rows: int
    file: str
    first: int = 0


@dataclass(slots=True)
class Skip:
    """What a run need not read: up to byte ``offset`` (``rows`` rows, ``failed`` of them with a
    failed result), the key hashes of those rows, and the chunks that hold them. ``end``: where
    this run's read of the input stops (its size now), None when the input is read in full."""

    offset: int = 0
    rows: int = 0
    failed: int = 0
    ids: list[np.ndarray] = field(default_factory=list)
    kept: list[Chunk] = field(default_factory=list)
    end: int | None = None
    stamp: tuple[int, int] | None = None

    @property
    def span(self) -> tuple[int, int] | None:
        return None if self.end is None else (self.offset, self.end)


def reading(spec: InputSpec, source: Source) -> dict[str, Any]:
    """How the input is read, as a chunk depends on it."""
    return {
        "version": VERSION,
        "format": spec.format,
        "delimiter": spec.delimiter,
        "encoding": spec.encoding,
        "id_column": spec.id_column,
        "columns": source.columns,
    }


@dataclass(frozen=True, slots=True)
class Unchanged:
    """The recorded chunks whose bytes the input still holds (from the first on, contiguous),
    and the input's size and modification time when they were hashed."""

    chunks: list[Chunk]
    size: int
    mtime_ns: int


def unchanged(run_dir: Path, source: Source) -> Unchanged | None:
    """The chunks whose bytes are unchanged (None: the input is read in full, whatever is
    done). Only hashes bytes: it may run while the done index is being built."""
    if not source.spans or source.spec.id_column is None:
        return None
    try:
        return _unchanged(run_dir, source)
    except OSError:
        return None  # the read in full says what is wrong with the input


def _unchanged(run_dir: Path, source: Source) -> Unchanged:
    stat = source.path.stat()
    found = Unchanged([], stat.st_size, stat.st_mtime_ns)
    saved = _load(run_dir)
    if saved is None or saved.get("reading") != reading(source.spec, source):
        return found
    offset = 0
    groups = _groups(source)
    with source.path.open("rb") as data:
        for at, chunk in enumerate(Chunk(**entry) for entry in saved.get("chunks", [])):
            if chunk.start != offset or chunk.end > stat.st_size:
                break
            if groups is not None and (at >= len(groups) or groups[at] != _group(chunk)):
                break  # the row groups were written again otherwise: read them
            if _sha1(data, chunk.start, chunk.end) != chunk.sha1:
                break
            found.chunks.append(chunk)
            offset = chunk.end
    return found


def _groups(source: Source) -> list[RowGroup] | None:
    """A Parquet input's row groups (a chunk each), None for an input chunked by its reads."""
    return row_groups(source.path) if source.spec.format == "parquet" else None


def _group(chunk: Chunk) -> RowGroup:
    """The row group a chunk of a Parquet input was recorded for."""
    return RowGroup(chunk.start, chunk.end, chunk.rows)


def plan(run_dir: Path, index: DoneIndex, found: Unchanged | None, *, retry_failed: bool) -> Skip:
    """Of the unchanged chunks, those whose rows are all done, from the first on."""
    if found is None:
        return Skip()
    skip = Skip(end=found.size, stamp=(found.size, found.mtime_ns))
    for chunk in found.chunks if not index.empty else []:
        asked = _ask(run_dir / PREFIX_DIR / chunk.file, chunk, index, retry_failed)
        if asked is None:
            break
        skip.failed += asked[0]
        skip.ids.append(asked[1])
        skip.offset, skip.rows = chunk.end, skip.rows + chunk.rows
        skip.kept.append(chunk)
    return skip


def _ask(
    path: Path, chunk: Chunk, index: DoneIndex, retry_failed: bool
) -> tuple[int, np.ndarray] | None:
    """(failed rows, key hashes) when every row of the chunk is done, else None."""
    failed = 0
    keys: list[np.ndarray] = []
    for at in range(0, chunk.rows, _ASK_ROWS):
        count = min(_ASK_ROWS, chunk.rows - at)
        try:
            pairs = np.fromfile(path, "<u8", 2 * count, offset=16 * (chunk.first + at))
        except (OSError, ValueError):
            return None
        if len(pairs) != 2 * count:
            return None
        pairs = pairs.reshape(count, 2)
        found, fails = index.input_states(pairs[:, 0].copy(), pairs[:, 1].copy())
        if not found.all() or (retry_failed and fails.any()):
            return None
        failed += int(fails.sum())
        keys.append(pairs[:, 0].copy())
    return failed, np.concatenate(keys) if keys else np.zeros(0, np.uint64)


def _sha1(data: Any, start: int, end: int) -> str:
    """The hash of bytes ``start``..``end`` of an open file."""
    digest = hashlib.sha1(usedforsecurity=False)
    data.seek(start)
    left = end - start
    while left > 0:
        block = data.read(min(left, 1 << 20))
        if not block:
            break
        digest.update(block)
        left -= len(block)
    return digest.hexdigest()


def _load(run_dir: Path) -> dict[str, Any] | None:
    try:
        saved = orjson.loads((run_dir / PREFIX_DIR / "chunks.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return saved if isinstance(saved, dict) else None


class Recorder:
    """The chunk one run reads, recorded as it is read (rows in order) and kept at its end."""

    def __init__(self, run_dir: Path, source: Source, skip: Skip) -> None:
        self._dir = run_dir / PREFIX_DIR
        self._source, self._skip = source, skip
        self._name = f"chunk-{skip.offset:016x}-{os.getpid()}.u64"
        self._out: Any = None
        self._rows = 0
        #: whether the read can still be recorded
        self.open = skip.end is not None and skip.stamp is not None

    def add(self, keys: np.ndarray, digests: np.ndarray) -> None:
        """Rows read, in order: their key hashes and input-hash hashes."""
        if not self.open:
            return
        if self._out is None:
            self._dir.mkdir(exist_ok=True)
            self._out = (self._dir / (self._name + ".tmp")).open("wb")
        np.stack([keys.astype("<u8"), digests.astype("<u8")], axis=1).tofile(self._out)
        self._rows += len(keys)

    def spoil(self) -> None:
        """A row was read that a chunk cannot stand for: nothing of this read is kept."""
        self.open = False
        self._close()
        (self._dir / (self._name + ".tmp")).unlink(missing_ok=True)

    def finish(self) -> None:
        """The read reached the input's end: keep its chunk, if the input did not change (a
        chunk is a cache: one that cannot be written is not kept, and the run goes on)."""
        try:
            self._finish()
        except OSError:
            self.spoil()

    def _finish(self) -> None:
        skip = self._skip
        if not self.open or skip.end is None or not self._unchanged():
            self.spoil()
            return
        self._close()
        read = self._read_chunks() if self._rows else []
        if read is None:
            self.spoil()
            return
        if read:
            os.replace(self._dir / (self._name + ".tmp"), self._dir / self._name)
        chunks = skip.kept + read
        if len({chunk.file for chunk in chunks}) > _JOIN_AT:
            chunks = _joined(self._dir, chunks)
        self._save(chunks)

    def _read_chunks(self) -> list[Chunk] | None:
        """The chunks of this read (None: it cannot be kept): one for the bytes read, or one a
        row group read of a Parquet input."""
        skip, groups = self._skip, _groups(self._source)
        assert skip.end is not None
        with self._source.path.open("rb") as data:
            if groups is not None:
                return _group_chunks(data, groups, skip.offset, self._rows, self._name)
            data.seek(skip.end - 1)
            if data.read(1) != b"\n":  # the last row may go on: not a row's end
                return None
            sha1 = _sha1(data, skip.offset, skip.end)
        return [Chunk(skip.offset, skip.end, sha1, self._rows, self._name)]

    def _unchanged(self) -> bool:
        stat = self._source.path.stat()
        return (stat.st_size, stat.st_mtime_ns) == self._skip.stamp

    def _save(self, chunks: list[Chunk]) -> None:
        body = {
            "reading": reading(self._source.spec, self._source),
            "chunks": [asdict(chunk) for chunk in chunks],
        }
        tmp = self._dir / "chunks.json.tmp"
        self._dir.mkdir(exist_ok=True)
        with tmp.open("wb") as out:
            out.write(orjson.dumps(body, option=orjson.OPT_INDENT_2))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self._dir / "chunks.json")
        named = {chunk.file for chunk in chunks}
        for path in self._dir.glob("chunk-*"):
            if path.name not in named:
                path.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._out is not None:
            self._out.flush()
            os.fsync(self._out.fileno())
            self._out.close()
            self._out = None


def _group_chunks(
    data: Any, groups: list[RowGroup], offset: int, rows: int, name: str
) -> list[Chunk] | None:
    """A chunk for each row group read from byte ``offset`` on, its rows at ``first`` of the
    file ``name`` (None unless ``rows``, the rows read, are all the file's rows from there)."""
    starts = [group.start for group in groups]
    total = file_rows(data.name)
    if offset not in starts or total is None:
        return None
    at = starts.index(offset)
    if rows != total - sum(group.rows for group in groups[:at]):
        return None
    read = groups[at:]
    chunks: list[Chunk] = []
    first = 0
    for group in read:
        sha1 = _sha1(data, group.start, group.end)
        chunks.append(Chunk(group.start, group.end, sha1, group.rows, name, first))
        first += group.rows
    return chunks


def _joined(folder: Path, chunks: list[Chunk]) -> list[Chunk]:
    """The chunks' rows in one file (each chunk keeps its own range and hash)."""
    name = f"chunk-joined-{chunks[-1].end:016x}-{os.getpid()}.u64"
    tmp = folder / (name + ".tmp")
    joined: list[Chunk] = []
    with tmp.open("wb") as out:
        for chunk in chunks:
            with (folder / chunk.file).open("rb") as data:
                data.seek(16 * chunk.first)
                left = 16 * chunk.rows
                while left > 0:
                    block = data.read(min(left, 1 << 20))
                    if not block:
                        raise OSError(f"{folder / chunk.file}: shorter than its chunks")
                    out.write(block)
                    left -= len(block)
            first = sum(c.rows for c in joined)
            joined.append(Chunk(chunk.start, chunk.end, chunk.sha1, chunk.rows, name, first))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, folder / name)
    return joined
