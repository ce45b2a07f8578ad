"""The done index kept on disk: ``done-index.bin`` in a run directory, so that a run opens it
instead of reading and hashing every part again.

It holds the index's sorted arrays (``batchllm.index``) for an exact list of parts, named with
their sizes in the file's footer, and the runs whose rows counted as done by input. A run opens
it memory-mapped (``numpy.memmap``): nothing is read into memory but the pages its lookups touch.
Parts written since (the footer's parts are the current parts' first ones) are read and indexed
as before, as layers over it; anything else (a part gone or changed, as a compaction leaves them;
other runs counting by input; a damaged file) and the index is built from the parts as it was
before the file existed, never answered from a file that does not match.

Layout: the arrays one after the other (each 8-byte aligned), then the footer (JSON: version,
parts, runs, where each array is), its length (8 bytes, little-endian) and ``MAGIC``. A run
holding the directory's lock writes it when it ends (``save_index``): written aside under a
temporary name, synced and renamed over the old one, so a kill leaves the old file or the new one
whole. A file written at the end merges the old file with the parts written since, a slice at a
time (``_merge``); it is rebuilt from the parts only when the old one does not match. It does
not decide which parts exist or their order (``batchllm.parts``) nor what a part's rows mean
(``batchllm.index``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from batchllm.errors import RunDirError
from batchllm.index import DoneIndex, Keys, Layer, assemble, build_index, damaged, layer_of

log = structlog.get_logger("batchllm")

INDEX_FILE = "done-index.bin"
MAGIC = b"BLLMIDX1"
VERSION = 1
#: (array, dtype) in the order they are written
ARRAYS = (
    ("by_request.keys", np.uint64),
    ("by_request.failed", np.bool_),
    ("by_input.keys", np.uint64),
    ("by_input.failed", np.bool_),
    ("answers", np.uint64),
    ("where", np.int64),
)
#: rows of the old file merged at a time
_SLICE = 1 << 20
#: rows of the parts indexed at a time when the file is built from them
_BUILD_ROWS = 1 << 21

PartList = list[tuple[str, int]]


class Stale(Exception):
    """The file does not describe these parts (or cannot be read): build from the parts."""


def open_index(run_dir: Path, parts: list[Path], same_job: frozenset[str]) -> DoneIndex:
    """The done index of ``parts`` (oldest first): the file's arrays for the parts it covers,
    the rest read from their parts; built from all of them when the file does not match."""
    try:
        footer, covered = _usable(run_dir, parts, same_job)
        base = _mapped(run_dir / INDEX_FILE, footer)
    except Stale as why:
        if str(why):
            log.warning("index.rebuilt", path=str(run_dir / INDEX_FILE), reason=str(why))
        return build_index(parts, same_job)
    rest = [(number, part) for number, part in enumerate(parts) if number >= covered]
    layers = [base, *([layer_of(rest, same_job)] if rest else [])]
    return assemble(parts, layers, same_job, 1)


def save_done(run_dir: Path, parts: list[Path], same_job: frozenset[str]) -> None:
    """Write the run directory's index file for its parts (``batchllm.parts.done_parts``) now:
    a run's end, after compacting; a shard's directory has none (its parent's covers it).
    Failing only costs the next run the time to build the index from the parts."""
    if run_dir.parent.name == "shards":
        return
    try:
        save_index(run_dir, parts, same_job)
    except (OSError, ValueError, RunDirError, pa.ArrowException) as exc:
        log.warning("index.not_saved", path=str(run_dir / INDEX_FILE), error=str(exc))


def save_index(run_dir: Path, parts: list[Path], same_job: frozenset[str]) -> None:
    """Write the index of ``parts`` to ``run_dir``'s file (by the run holding its lock): the old
    file merged with the parts written since, or built from all parts when it does not match."""
    target = run_dir / INDEX_FILE
    for stale in run_dir.glob(INDEX_FILE + ".tmp*"):
        stale.unlink(missing_ok=True)  # what a killed writer left
    try:
        footer, covered = _usable(run_dir, parts, same_job)
    except Stale:
        footer, covered = None, 0
    if footer is not None and covered == len(parts):
        return  # the file is the parts' index already
    source, tmp = (target if footer is not None else None), f"{INDEX_FILE}.tmp{os.getpid()}"
    try:
        for step, chunk in enumerate(_chunks(list(enumerate(parts))[covered:])):
            out = target.with_name(f"{tmp}.{step}")
            _write_merged(out, layer_of(chunk, same_job), source, _footer(run_dir, parts, same_job))
            source = out
        assert source is not None
        os.replace(source, target)
    finally:
        for leftover in run_dir.glob(INDEX_FILE + ".tmp*"):
            leftover.unlink(missing_ok=True)
    _sync_dir(run_dir)


def _chunks(parts: list[tuple[int, Path]]) -> Iterator[list[tuple[int, Path, range | None]]]:
    """The parts in order as lists of row-group ranges of about ``_BUILD_ROWS`` rows (at least
    one list): a whole build holds one chunk's keys in memory, not every part's."""
    chunk: list[tuple[int, Path, range | None]] = []
    rows, yielded = 0, False
    for number, part in parts:
        try:
            meta = pq.ParquetFile(part).metadata
        except FileNotFoundError:
            continue
        except (OSError, pa.ArrowException) as exc:
            raise damaged(part, exc) from None
        first = 0
        for group in range(meta.num_row_groups):
            rows += meta.row_group(group).num_rows
            if rows >= _BUILD_ROWS:
                chunk.append((number, part, range(first, group + 1)))
                yield chunk
                chunk, rows, first, yielded = [], 0, group + 1, True
        if first < meta.num_row_groups:
            chunk.append((number, part, range(first, meta.num_row_groups)))
    if chunk or not yielded:
        yield chunk


def _write_merged(out: Path, new: Layer, source: Path | None, footer: dict[str, Any]) -> None:
    """Write ``out``: the index file ``source`` (if any) merged with the newer layer ``new``."""
    writer = _Writer(out)
    old_footer = _read_footer(source) if source is not None else None
    with source.open("rb") if source is not None else contextlib.nullcontext() as old:
        _write_layer(writer, new, old, old_footer)
    writer.close(footer)


def _usable(
    run_dir: Path, parts: list[Path], same_job: frozenset[str]
) -> tuple[dict[str, Any], int]:
    """The file's footer and how many of ``parts`` it covers; ``Stale`` when it cannot serve
    (an empty message: no file, or parts changed as a compaction does; else why it was bad)."""
    footer = _read_footer(run_dir / INDEX_FILE)
    recorded = [tuple(item) for item in footer["parts"]]
    current = _names(run_dir, parts[: len(recorded)])
    if current != recorded:
        raise Stale("")
    # runs begun since the file was written have rows only in the parts written since
    if same_job & frozenset(footer["known"]) != frozenset(footer["runs"]):
        raise Stale("")
    return footer, len(recorded)


def _read_footer(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size < 16:
                raise Stale("shorter than its footer")
            handle.seek(size - 16)
            tail = handle.read(16)
            if tail[8:] != MAGIC:
                raise Stale("no end marker (truncated or not an index)")
            length = int.from_bytes(tail[:8], "little")
            if length > size - 16:
                raise Stale("footer longer than the file")
            handle.seek(size - 16 - length)
            footer: dict[str, Any] = orjson.loads(handle.read(length))
            identity = _identity(os.fstat(handle.fileno()))
    except FileNotFoundError:
        raise Stale("") from None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise Stale(f"unreadable: {exc}") from None
    _check(footer, size - 16 - length)
    return {**footer, "identity": identity}


def _identity(stat: os.stat_result) -> list[int]:
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns]


def _check(footer: dict[str, Any], data_end: int) -> None:
    if footer.get("version") != VERSION:
        raise Stale(f"version {footer.get('version')!r}, not {VERSION}")
    if not all(isinstance(footer.get(key), list) for key in ("parts", "runs", "known")):
        raise Stale("a footer without its parts or runs")
    arrays = footer.get("arrays", {})
    for name, dtype in ARRAYS:
        if name not in arrays:
            raise Stale(f"no array {name}")
        offset, count = arrays[name]
        if offset < 0 or count < 0 or offset + count * np.dtype(dtype).itemsize > data_end:
            raise Stale(f"array {name} beyond the file's data")
    if (
        len(arrays["by_request.keys"])
        and arrays["by_request.keys"][1] != arrays["by_request.failed"][1]
    ):
        raise Stale("arrays of unequal length")


def _mapped(path: Path, footer: dict[str, Any]) -> Layer:
    """The file's arrays, mapped from the very file the footer was read from (a reader without
    the lock may see the file replaced between the two: then it builds from the parts)."""
    try:
        with path.open("rb") as handle:
            if _identity(os.fstat(handle.fileno())) != footer["identity"]:
                raise Stale("")
            arrays = {name: _map(handle, footer, name, dtype) for name, dtype in ARRAYS}
    except FileNotFoundError:
        raise Stale("") from None
    return Layer(
        Keys(arrays["by_request.keys"], arrays["by_request.failed"]),
        Keys(arrays["by_input.keys"], arrays["by_input.failed"]),
        arrays["answers"],
        arrays["where"],
    )


def _map(handle: BinaryIO, footer: dict[str, Any], name: str, dtype: Any) -> np.ndarray:
    offset, count = footer["arrays"][name]
    if not count:
        return np.zeros(0, dtype)
    try:
        return np.memmap(handle, dtype=dtype, mode="r", offset=offset, shape=(count,))
    except (OSError, ValueError) as exc:
        raise Stale(f"cannot map {name}: {exc}") from None


def _names(run_dir: Path, parts: list[Path]) -> list[tuple[str, int]]:
    named = []
    for part in parts:
        try:
            size = part.stat().st_size
        except FileNotFoundError:
            size = -1
        named.append((str(part.relative_to(run_dir)), size))
    return named


def _footer(run_dir: Path, parts: list[Path], same_job: frozenset[str]) -> dict[str, Any]:
    """What the file covers: its parts, the runs counted by input and every run then known."""
    known = same_job | _known_runs(run_dir)
    return {
        "version": VERSION,
        "parts": _names(run_dir, parts),
        "runs": sorted(same_job),
        "known": sorted(known),
    }


def _known_runs(run_dir: Path) -> frozenset[str]:
    """Every run the directory's manifests (its shards' too) name."""
    known: set[str] = set()
    for manifest in [run_dir / "manifest.json", *run_dir.glob("shards/*/manifest.json")]:
        with contextlib.suppress(FileNotFoundError):
            known.update(run["run_id"] for run in orjson.loads(manifest.read_bytes())["runs"])
    return frozenset(known)


# --- writing ---------------------------------------------------------------------------------


class _Writer:
    """Each array to a file of its own beside the target, then joined into it with the footer."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.files: dict[str, BinaryIO] = {}
        for name, _ in ARRAYS:
            self.files[name] = tmp.with_name(f"{tmp.name}.{name}").open("wb")

    def add(self, name: str, values: np.ndarray) -> None:
        self.files[name].write(np.ascontiguousarray(values).data)

    def close(self, footer: dict[str, Any]) -> None:
        arrays: dict[str, list[int]] = {}
        with self.tmp.open("wb") as out:
            for name, dtype in ARRAYS:
                side = self.files[name]
                side.close()
                offset = out.tell()
                with open(side.name, "rb") as data:
                    while block := data.read(1 << 22):
                        out.write(block)
                arrays[name] = [offset, (out.tell() - offset) // np.dtype(dtype).itemsize]
                out.write(b"\0" * (-out.tell() % 8))
                os.unlink(side.name)
            data_ = orjson.dumps({**footer, "arrays": arrays})
            out.write(data_ + len(data_).to_bytes(8, "little") + MAGIC)
            out.flush()
            os.fsync(out.fileno())


def _write_layer(
    writer: _Writer, new: Layer, old: BinaryIO | None, footer: dict[str, Any] | None
) -> None:
    for which in ("by_request", "by_input"):
        keys: Keys = getattr(new, which)
        columns = [keys.keys, keys.failed]
        names = [f"{which}.keys", f"{which}.failed"]
        _merge(writer, names, columns, _reader(old, footer, names), distinct=True)
    names = ["answers", "where"]
    _merge(writer, names, [new.answers, new.where], _reader(old, footer, names), distinct=False)


Reader = Callable[[int, int], list[np.ndarray]]


def _reader(
    old: BinaryIO | None, footer: dict[str, Any] | None, names: list[str]
) -> tuple[int, Reader]:
    """How many rows the old file has of these arrays, and a reader of rows ``a``..``b``."""
    if old is None or footer is None:
        return 0, lambda a, b: []
    dtypes = dict(ARRAYS)
    spots = [footer["arrays"][name] for name in names]

    def read(a: int, b: int) -> list[np.ndarray]:
        out = []
        for name, (offset, _) in zip(names, spots, strict=True):
            dtype = np.dtype(dtypes[name])
            old.seek(offset + a * dtype.itemsize)
            out.append(np.frombuffer(old.read((b - a) * dtype.itemsize), dtype))
        return out

    return int(spots[0][1]), read


def _merge(
    writer: _Writer,
    names: list[str],
    new: list[np.ndarray],
    old: tuple[int, Reader],
    *,
    distinct: bool,
) -> None:
    """Merge the old file's sorted rows with ``new`` (sorted; newer: a key in both keeps the new
    row when ``distinct``, else comes after the old ones), a slice of the old file at a time."""
    total, read = old
    taken = 0
    for start in range(0, total, _SLICE):
        end = min(total, start + _SLICE)
        columns = read(start, end + 1 if end < total else end)
        upto = len(new[0])
        if end < total:  # the new rows before the next slice's first key
            upto = int(np.searchsorted(new[0], columns[0][-1], side="left"))
            columns = [column[:-1] for column in columns]
        merged = _merge_slice(columns, [column[taken:upto] for column in new], distinct)
        taken = upto
        for name, column in zip(names, merged, strict=True):
            writer.add(name, column)
    for name, column in zip(names, new, strict=True):
        writer.add(name, column[taken:])


def _merge_slice(
    old: list[np.ndarray], new: list[np.ndarray], distinct: bool
) -> Iterator[np.ndarray]:
    if not len(new[0]):
        return iter(old)
    if distinct:
        at = np.searchsorted(old[0], new[0]).clip(0, max(len(old[0]) - 1, 0))
        hit = old[0][at] == new[0] if len(old[0]) else np.zeros(len(new[0]), np.bool_)
        keep = np.ones(len(old[0]), np.bool_)
        keep[at[hit]] = False
        old = [column[keep] for column in old]
    spots = np.searchsorted(old[0], new[0], side="right")
    return iter([np.insert(o, spots, n) for o, n in zip(old, new, strict=True)])


def _sync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
