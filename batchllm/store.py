"""The run directory: durable outcomes, the done-set for resume, Parquet parts, manifest, lock.

Layout of ``output.dir``::

    manifest.json            job name, fingerprint, one entry per run (counts, cost, times)
    .lock                    held (flock) by the run using the directory
    journal/RUN-SEQ.jsonl    outcomes not yet in a part, one JSON line each
    results/part-RUN-SEQ.parquet
    results/part-RUN-SEQ-SEQ.parquet   small parts of one run, merged at its end
    merge.json               a merge in progress (its target and sources)
    compact.json             a compaction in progress (``batchllm.compact``)

Every outcome is appended to the journal with one ``write`` before its row counts as done, so a
killed process loses no reply it had received (the journal is fsynced when a part is cut and at
the end, for power loss). Every ``PART_ROWS`` outcomes or ``PART_SECONDS`` the journal becomes a
Parquet part (written aside, then renamed), and the journal goes; until then its outcomes are
also held in memory column-wise (``batchllm.pending``), the part's table to be. A journal left by
a crash is turned into its part when the directory is next opened; a torn last line is dropped
(that reply was not recorded, so it is asked again).

A slow, rate-limited run cuts a small part every ``PART_SECONDS``: thousands in a day, which every
query and resume would then open. So at the end of a run that left ``MERGE_FROM`` or more small
parts, they are merged into parts of up to ``PART_ROWS`` rows: the merged part is written aside,
``merge.json`` names it and its sources, it is renamed into place, and only then are the sources
deleted. A merge cut short by a crash is finished (or undone, if its part never landed) when the
directory is next opened.

Which outcome of a row is the latest never depends on the wall clock (NTP steps, a restored VM or
another host writing the directory can move it back): every run gets the next number of the
directory (``run_number`` in the manifest, which only this lock holder appends to) and every
outcome a ``seq`` column, ``run_number << SEQ_BITS | n`` for the run's n-th outcome. Parts are read
in run-number order, and the ``results`` view orders by ``seq``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from batchllm.compact import atomic_write, compact, finish_merge, merge_small_parts, should_compact
from batchllm.compact import finish as finish_compaction
from batchllm.errors import RunDirError, StorageError, UserError
from batchllm.index import DoneIndex
from batchllm.index_file import save_done
from batchllm.outcome import Outcome
from batchllm.parts import check_parts, done_parts, parts_in_order, read_done, saved_counts
from batchllm.pending import Pending

log = structlog.get_logger("batchllm")

PART_ROWS = 10_000
PART_SECONDS = 30.0
MANIFEST_FORMAT = 1
#: a run's outcomes are numbered below this many bits of ``seq``; the run's number above them
SEQ_BITS = 36
SEQ_FIELD = pa.field("seq", pa.int64())


class Store:
    """One run directory, locked for the lifetime of this object."""

    def __init__(
        self,
        path: Path,
        job_name: str,
        schema: pa.Schema,
        *,
        part_rows: int = PART_ROWS,
        part_seconds: float = PART_SECONDS,
        keep_history: bool = True,
        publish: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        #: called once a part is written and at the end of a run (object storage uploads)
        self.publish = publish
        self.job_name = job_name
        self.schema = schema if SEQ_FIELD.name in schema.names else schema.append(SEQ_FIELD)
        self.part_rows = part_rows
        self.part_seconds = part_seconds
        self.keep_history = keep_history
        self.results_dir = path / "results"
        self.journal_dir = path / "journal"
        self.index: DoneIndex | None = None
        self._lock_fd = _prepare(path)
        self.manifest = self._load_manifest()
        check_parts(path)
        self._recover()
        self.run_id = ""
        self._seq = 0
        self._next_outcome = 0
        self._run_number = 0
        self._fd: int | None = None
        self._journal: Path | None = None
        self._pending = Pending(self.schema)
        self._cut_at = time.monotonic()
        self._writing: asyncio.Task[None] | None = None

    # --- reading ---------------------------------------------------------------------------

    def load_done(self, fingerprint: str | None = None, *, fresh: bool = False) -> DoneIndex:
        """The done index (empty with ``fresh``), then kept up to date as parts are written."""
        self.index = DoneIndex() if fresh else read_done(self.path, fingerprint)
        return self.index

    # --- writing ---------------------------------------------------------------------------

    def begin_run(self, run_id: str, entry: dict[str, Any], fingerprint: str) -> None:
        runs = self.manifest["runs"]
        number = 1 + max((run.get("run_number", 0) for run in runs), default=len(runs))
        number = max(number, len(runs) + 1)
        self.run_id = run_id
        self._run_number = number
        self._next_outcome = number << SEQ_BITS
        self.manifest["fingerprint"] = fingerprint
        runs.append({**entry, "run_id": run_id, "run_number": number, "fingerprint": fingerprint})
        self.save_manifest()
        self._open_journal()

    def write(self, outcome: Outcome) -> None:
        """Record one outcome durably (against a killed process) before it counts as done."""
        row = outcome.to_row()
        row["seq"] = self._next_outcome
        self._next_outcome += 1
        assert self._fd is not None, "begin_run() first"
        line = orjson.dumps(row) + b"\n"
        try:
            written = os.write(self._fd, line)
        except OSError as exc:
            raise self._unwritable(self.journal_dir, exc) from None
        if written < len(line):  # a full disk takes part of a line: it is dropped when read
            raise self._unwritable(self.journal_dir, OSError(28, "No space left on device"))
        self._pending.add(row)
        if (
            len(self._pending) >= self.part_rows
            or time.monotonic() - self._cut_at >= self.part_seconds
        ):
            self._cut()

    async def finish_run(self, entry: dict[str, Any]) -> None:
        """Turn what is left of the journal into a part and record the run's totals."""
        if self._pending:
            self._cut(reopen=False)
        elif self._journal is not None and self._fd is not None:
            os.close(self._fd)
            self._journal.unlink(missing_ok=True)
        self._fd = None
        try:
            await self.flush()
        except StorageError:
            with contextlib.suppress(StorageError):
                self._end_run({**entry, "status": "storage_error"})
            raise
        try:
            await asyncio.to_thread(
                merge_small_parts, self.path, self.run_id, self.schema, self.part_rows
            )
        except (OSError, pa.ArrowException) as exc:  # merging only tidies: the parts are whole
            log.warning("store.merge_failed", error=str(exc))
        try:
            await asyncio.to_thread(self._compact)
        except (OSError, pa.ArrowException) as exc:  # the same: the parts stay as they are
            log.warning("store.compact_failed", error=str(exc))
        done = done_parts(self.path, self.manifest.get("fingerprint"))
        await asyncio.to_thread(save_done, self.path, *done)
        self._end_run(entry)

    def _end_run(self, entry: dict[str, Any]) -> None:
        self.manifest["runs"][-1].update({**entry, "run_number": self._run_number})
        self.save_manifest()
        if self.publish is not None:
            self.publish()

    async def flush(self) -> None:
        """Wait until every part handed to a background write is on disk."""
        if self._writing is not None:
            try:
                await self._writing
            except OSError as exc:  # the journal stays: the next open makes it a part
                raise self._unwritable(self.results_dir, exc) from None

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):  # a full disk: the journal keeps what it has
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        os.close(self._lock_fd)

    def save_manifest(self) -> None:
        data = orjson.dumps(self.manifest, option=orjson.OPT_INDENT_2)
        try:
            atomic_write(self.path / "manifest.json", data)
        except OSError as exc:
            raise self._unwritable(self.path, exc) from None

    def _open_journal(self) -> None:
        self._seq += 1
        self._journal = self.journal_dir / f"{self.run_id}-{self._seq:05d}.jsonl"
        try:
            self._fd = os.open(self._journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise self._unwritable(self.journal_dir, exc) from None
        self._cut_at = time.monotonic()

    @staticmethod
    def _unwritable(directory: Path, exc: OSError) -> StorageError:
        return StorageError(
            f"{directory}: cannot write results: {exc.strerror or exc}; what was saved is kept: "
            "make room and run the same command again to resume"
        )

    def _cut(self, *, reopen: bool = True) -> None:
        """Hand the journal's rows to a background part write and start a new journal."""
        assert self._fd is not None and self._journal is not None
        pending, journal, fd = self._pending, self._journal, self._fd
        self._pending = Pending(self.schema)
        if reopen:
            self._open_journal()
        previous = self._writing
        self._writing = asyncio.get_running_loop().create_task(
            self._write_part(previous, pending, journal, fd)
        )

    async def _write_part(
        self,
        previous: asyncio.Task[None] | None,
        pending: Pending,
        journal: Path,
        fd: int,
    ) -> None:
        if previous is not None:
            await previous
        await asyncio.to_thread(self._part_from_rows, pending, journal, fd)

    def _part_from_rows(self, pending: Pending, journal: Path, fd: int | None) -> None:
        if fd is not None:
            os.fsync(fd)
            os.close(fd)
        table = pending.table()
        part = self.results_dir / f"part-{journal.stem}.parquet"
        _write_parquet(table, part)
        journal.unlink(missing_ok=True)
        if self.index is not None:
            self.index.add_part(part, table)
        if self.publish is not None:
            self.publish()

    def _compact(self) -> None:
        parts = parts_in_order(self.path, self.manifest["runs"])
        if should_compact(parts):
            compact(self.path, parts, self.run_id, keep_history=self.keep_history)

    # --- opening ---------------------------------------------------------------------------

    def _load_manifest(self) -> dict[str, Any]:
        return load_manifest(self.path, self.job_name)

    def _recover(self) -> None:
        """Finish what a killed run left: its merge, its journals, its temp files, its record."""
        finish_merge(self.path)
        finish_compaction(self.path)
        for journal in sorted(self.journal_dir.glob("*.jsonl")):
            part = self.results_dir / f"part-{journal.stem}.parquet"
            if not part.exists():
                pending = Pending(self.schema)
                for row in _read_journal(journal):
                    pending.add(row)
                if pending:
                    self._part_from_rows(pending, journal, None)
            journal.unlink(missing_ok=True)
        # the lock is ours: any temp file is a write cut short by a kill
        spooled = self.path.glob("batches/*.part")  # a batch being gathered, never booked
        for tmp in [*self.results_dir.glob("*.tmp"), *self.path.glob("*.tmp"), *spooled]:
            tmp.unlink(missing_ok=True)
        self._reconcile_killed_runs()

    def _reconcile_killed_runs(self) -> None:
        """A run still ``running`` was killed (the lock is ours): mark it ``interrupted``."""
        killed = [run for run in self.manifest["runs"] if run.get("status") == "running"]
        if not killed:
            return
        for run in killed:
            run.update(status="interrupted", **saved_counts(self.results_dir, run["run_id"]))
            log.warning("store.run_reconciled", run_id=run["run_id"], ok=run["ok"])
        self.save_manifest()


def part_settings() -> dict[str, Any]:
    """How often a run's journal becomes a part, when the environment says
    (``BATCHLLM_PART_ROWS``, ``BATCHLLM_PART_SECONDS``; the store's defaults otherwise)."""
    settings: dict[str, Any] = {}
    for name, key, kind in (("ROWS", "part_rows", int), ("SECONDS", "part_seconds", float)):
        text = os.environ.get(f"BATCHLLM_PART_{name}")
        if text is None:
            continue
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not 0 < value < float("inf"):
            raise UserError(f"BATCHLLM_PART_{name}={text!r}: expected a positive number")
        settings[key] = value
    return settings


def _prepare(path: Path) -> int:
    try:
        (path / "results").mkdir(parents=True, exist_ok=True)
        (path / "journal").mkdir(exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"{path}: cannot use as run directory: {exc.strerror}") from None
    return lock_run_dir(path)


def load_manifest(path: Path, job_name: str) -> dict[str, Any]:
    """The run directory's ``manifest.json`` (an empty one when there is none), checked to be
    this job's."""
    file = path / "manifest.json"
    if not file.exists():
        return {"format": MANIFEST_FORMAT, "job": job_name, "fingerprint": None, "runs": []}
    try:
        manifest: dict[str, Any] = orjson.loads(file.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise RunDirError(f"{file}: unreadable manifest: {exc}") from None
    if manifest.get("job") != job_name:
        raise RunDirError(
            f"{path}: this run directory holds results of job '{manifest.get('job')}', "
            f"not '{job_name}'; point [output] dir somewhere else"
        )
    return manifest


def lock_run_dir(path: Path) -> int:
    """Take the run directory's lock (``.lock``, holding our pid), or say who holds it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RunDirError(f"{path}: cannot use as run directory: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RunDirError(
            f"{path}: another batchllm run (pid {holder}) is using this run directory; "
            "wait for it to finish or stop it"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _read_journal(path: Path) -> Iterable[dict[str, Any]]:
    for line in path.read_bytes().split(b"\n"):
        if not line:
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a line torn by a crash: that reply is asked again


#: columns of few distinct values, dictionary-encoded; others are plain (zstd finds repeats)
DICTIONARY_COLUMNS = ("run_id", "status", "finish_reason", "error_type", "model", "service_tier")
#: the writer's page size: it buffers a page of each column before compressing it
PAGE_BYTES = 64 * 1024


def _write_parquet(table: pa.Table, path: Path) -> None:
    """Write ``table`` aside, then rename it into place. Plain pages of ``PAGE_BYTES`` keep the
    writer's buffers small: writing a 10,000-row part took ~21 MB over its table with the
    defaults (1 MB pages, a dictionary for every column), ~5 MB so; the part is ~20 % smaller."""
    tmp = path.with_suffix(".parquet.tmp")
    dictionary = [name for name in DICTIONARY_COLUMNS if name in table.schema.names]
    pq.write_table(
        table,
        tmp,
        compression="zstd",
        use_dictionary=dictionary,
        data_page_size=PAGE_BYTES,
    )
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
