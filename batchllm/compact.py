"""Merging and compaction: a run directory used every night stays a few large files.

A slow, rate-limited run cuts a small part every ``PART_SECONDS``: at the end of a run that left
``MERGE_FROM`` or more, they are merged into parts of up to ``PART_ROWS`` rows (the merged part
written aside, ``merge.json`` naming it and its sources, renamed into place, then the sources
deleted; a merge cut short is finished or undone when the directory is next opened).

At the end of a run that leaves ``COMPACT_PARTS`` or more parts besides the compacted ones, every
part is rewritten, oldest outcome first, into at most two:

* ``part-c<RUN>-1-current.parquet``: each row's latest outcome (by ``seq``), one per row, in row
  groups of ``GROUP_ROWS``;
* ``part-c<RUN>-0-history.parquet``: the outcomes they superseded, only with ``[output]
  keep_history`` (the default); without it they are dropped.

The ``c`` sorts them before every run's own parts (``parts_in_order``), which is right: they hold
everything older. ``results`` reads the current part as it is and looks for later outcomes only
in the parts written since (``batchllm.query``).

Crash-safe like a merge: the new parts are written aside (``.tmp``) and fsynced, then
``compact.json`` names them and their sources, they are renamed into place, and only then are the
sources deleted. Opening the directory finishes a compaction whose parts all landed, and undoes
one whose parts did not (the sources are whole). It does not decide when a run ends.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import structlog

from batchllm.hashing import find_sorted, hash_strings

log = structlog.get_logger("batchllm")

#: small parts a run must leave before they are merged at its end
MERGE_FROM = 8
#: parts written since the last compaction that start a new one
COMPACT_PARTS = 16
#: rows a row group of a compacted part holds
GROUP_ROWS = 65_536
SEQ_BITS = 36
#: ranges of row key hashes the outcomes are sorted in, one at a time (a power of 2, <= 256)
SORT_RANGES = 16
_RANGE_SHIFT = np.uint64(64 - SORT_RANGES.bit_length() + 1)
_RANGE_CHUNK = 1 << 20
MARKER = "compact.json"


def merge_small_parts(run_dir: Path, run_id: str, schema: pa.Schema, part_rows: int) -> None:
    """Merge a run's small parts, in order, into parts of up to ``part_rows`` rows (when there
    are at least ``MERGE_FROM`` of them: a few are no burden, and merging costs)."""
    parts = sorted((run_dir / "results").glob(f"part-{run_id}-*.parquet"))
    sizes = {part: pq.ParquetFile(part).metadata.num_rows for part in parts}
    if sum(size < part_rows for size in sizes.values()) < MERGE_FROM:
        return
    group: list[Path] = []
    rows = 0
    for part in [*parts, None]:
        size = sizes[part] if part is not None else 0
        if part is None or rows + size > part_rows:
            if len(group) > 1:
                _merge(run_dir, run_id, schema, group)
            group, rows = [], 0
        if part is not None:
            group.append(part)
            rows += size


def _merge(run_dir: Path, run_id: str, schema: pa.Schema, sources: list[Path]) -> None:
    first, last = _seq_of(sources[0]), _seq_of(sources[-1])
    target = run_dir / "results" / f"part-{run_id}-{first}-{last}.parquet"
    tmp = target.with_suffix(".parquet.tmp")
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for source in sources:
                writer.write_table(pq.read_table(source, schema=schema))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # no half-written part left behind
        raise
    marker = {"target": target.name, "sources": [source.name for source in sources]}
    atomic_write(run_dir / "merge.json", orjson.dumps(marker))
    os.replace(tmp, target)
    finish_merge(run_dir)


def finish_merge(run_dir: Path) -> None:
    """Complete the merge ``merge.json`` names: drop its sources once its part is in place
    (else its half-written part: the sources stay)."""
    path = run_dir / "merge.json"
    if not path.exists():
        return
    marker = orjson.loads(path.read_bytes())
    target = run_dir / "results" / marker["target"]
    if target.exists():
        for name in marker["sources"]:
            (run_dir / "results" / name).unlink(missing_ok=True)
    else:
        target.with_suffix(".parquet.tmp").unlink(missing_ok=True)
    path.unlink()


def _seq_of(part: Path) -> str:
    """The sequence number (or range) a part's name ends with: ``part-RUN-00003`` -> ``00003``."""
    return part.stem.rsplit("-", 1)[1]


def compacted(part: Path) -> bool:
    """Whether ``part`` was written by a compaction."""
    return part.name.startswith("part-c")


def should_compact(parts: list[Path]) -> bool:
    return sum(not compacted(part) for part in parts) >= COMPACT_PARTS


def compact(run_dir: Path, parts: list[Path], run_id: str, *, keep_history: bool) -> None:
    """Rewrite ``parts`` (oldest first) into a current part and, with history, a history part."""
    schema = pa.unify_schemas([pq.ParquetFile(part).schema_arrow for part in parts])
    if "seq" not in schema.names:
        schema = schema.append(pa.field("seq", pa.int64()))
    results = run_dir / "results"
    current = results / f"part-c{run_id}-1-current.parquet"
    history = results / f"part-c{run_id}-0-history.parquet"
    numbers = _run_numbers(run_dir)
    superseded = _superseded_seqs(parts, numbers)
    writers = {"current": _Writer(current, schema)}
    if keep_history:
        writers["history"] = _Writer(history, schema)
    try:
        for table in _tables(parts, schema, numbers):
            is_latest = find_sorted(superseded, np.asarray(table.column("seq"))) < 0
            writers["current"].write(table.filter(pa.array(is_latest)))
            if keep_history:
                writers["history"].write(table.filter(pa.array(~is_latest)))
        targets = [writer.close() for writer in writers.values()]
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    marker = {"targets": [t.name for t in targets if t], "sources": [p.name for p in parts]}
    atomic_write(run_dir / MARKER, orjson.dumps(marker))
    for writer in writers.values():
        writer.land()
    finish(run_dir)
    rows = writers["current"].rows
    log.info("store.compacted", parts=len(parts), rows=rows, history=keep_history)


def finish(run_dir: Path) -> None:
    """Complete the compaction ``compact.json`` names: drop its sources once all its parts are
    in place, else remove the parts that landed (the sources stay, whole)."""
    path = run_dir / MARKER
    if not path.exists():
        return
    marker = orjson.loads(path.read_bytes())
    results = run_dir / "results"
    targets = [results / name for name in marker["targets"]]
    if all(target.exists() for target in targets):
        for name in marker["sources"]:
            if name not in marker["targets"]:
                (results / name).unlink(missing_ok=True)
    else:
        for target in targets:
            target.unlink(missing_ok=True)
            target.with_suffix(".parquet.tmp").unlink(missing_ok=True)
    path.unlink()


class _Writer:
    """One compacted part, written aside until ``land``; None from ``close`` when empty. Small
    tables (one night's part) are gathered into whole row groups: a row group of a thousand
    rows takes about twice the bytes a row of a large one does."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path, self.tmp = path, path.with_suffix(".parquet.tmp")
        self._writer = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._pending.append(table)
            self._pending_rows += table.num_rows
            self.rows += table.num_rows
            if self._pending_rows >= GROUP_ROWS:
                self._flush(whole_groups=True)

    def _flush(self, *, whole_groups: bool = False) -> None:
        """Write what is gathered (only whole row groups of it, keeping the rest)."""
        if not self._pending:
            return
        gathered = pa.concat_tables(self._pending)  # chunked: the writer takes it as it is
        size = gathered.num_rows - gathered.num_rows % GROUP_ROWS if whole_groups else None
        self._writer.write_table(gathered.slice(0, size), row_group_size=GROUP_ROWS)
        rest = gathered.slice(size) if size is not None else gathered.slice(0, 0)
        self._pending, self._pending_rows = [rest] if rest.num_rows else [], rest.num_rows

    def close(self) -> Path | None:
        self._flush()
        self._writer.close()
        if not self.rows:
            self.tmp.unlink()
            return None
        with open(self.tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        return self.path

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def land(self) -> None:
        if self.rows:
            os.replace(self.tmp, self.path)


def _tables(parts: list[Path], schema: pa.Schema, numbers: dict[str, int]) -> Any:
    """Each row group of ``parts`` in order, in ``schema``, with ``seq`` filled in."""
    counters: dict[str, int] = {}
    for part in parts:
        parquet = pq.ParquetFile(part)
        for group in range(parquet.num_row_groups):
            table = _with_seq(part, parquet.read_row_group(group), numbers, counters)
            columns = [
                table.column(f.name).cast(f.type)
                if f.name in table.column_names
                else pa.nulls(table.num_rows, f.type)
                for f in schema
            ]
            yield pa.Table.from_arrays(columns, schema=schema)


def _with_seq(
    part: Path, table: pa.Table, numbers: dict[str, int], counters: dict[str, int]
) -> pa.Table:
    """A part written before ``seq`` existed gets one: its run's number, then its position."""
    if "seq" in table.column_names and table.column("seq").null_count == 0:
        return table
    run = part.stem.split("-")[1]
    start = counters.get(run, 0)
    counters[run] = start + table.num_rows
    made = (numbers.get(run, 0) << SEQ_BITS) + np.arange(start, start + table.num_rows)
    seq = pa.array(made, pa.int64())
    if "seq" in table.column_names:
        seq = pc.coalesce(table.column("seq"), seq)
        table = table.drop_columns(["seq"])
    return table.append_column("seq", seq)


def _superseded_seqs(parts: list[Path], numbers: dict[str, int]) -> np.ndarray:
    """The ``seq`` of every outcome a later outcome of its row supersedes, sorted.

    Each outcome's row key hash and ``seq`` are held in two arrays made once at their full size
    (16 bytes an outcome); they are sorted one range of hashes at a time (``SORT_RANGES``), so
    the sort's scratch is a range's, not the whole directory's."""
    total = sum(pq.ParquetFile(part).metadata.num_rows for part in parts)
    keys, seqs = np.empty(total, np.uint64), np.empty(total, np.int64)
    at = 0
    counters: dict[str, int] = {}
    for part in parts:
        parquet = pq.ParquetFile(part)
        names = [n for n in ("row_key", "seq") if n in parquet.schema_arrow.names]
        for group in range(parquet.num_row_groups):
            table = _with_seq(part, parquet.read_row_group(group, columns=names), numbers, counters)
            end = at + table.num_rows
            keys[at:end] = hash_strings(table.column("row_key"))
            seqs[at:end] = np.asarray(table.column("seq"))
            at = end
    ranges = np.empty(total, np.uint8)
    for start in range(0, total, _RANGE_CHUNK):  # in chunks: no whole-size temporary
        ranges[start : start + _RANGE_CHUNK] = keys[start : start + _RANGE_CHUNK] >> _RANGE_SHIFT
    found = []
    for number in range(SORT_RANGES):
        where = np.flatnonzero(ranges == number)
        range_keys, range_seqs = keys[where], seqs[where]
        del where
        order = np.lexsort((range_seqs, range_keys))
        range_keys, range_seqs = range_keys[order], range_seqs[order]
        superseded = range_keys[1:] == range_keys[:-1]  # a later outcome of the same row follows
        found.append(range_seqs[:-1][superseded])
    return np.sort(np.concatenate(found)) if found else np.zeros(0, np.int64)


def _run_numbers(run_dir: Path) -> dict[str, int]:
    manifest = run_dir / "manifest.json"
    runs = orjson.loads(manifest.read_bytes()).get("runs", []) if manifest.exists() else []
    return {run["run_id"]: run.get("run_number", n) for n, run in enumerate(runs, 1)}


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` at once (written aside, then renamed)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
