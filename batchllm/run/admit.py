"""Admission: which rows of the input become requests on the queue, and which do not.

A row is not sent when it is a repeated id or cannot be read (an error row, unless an earlier run
reported it already), is done in the run directory (reused; counted apart when its result there
failed, so the run's summary says what the results hold), belongs to a batch an earlier run
submitted (its result is on the way), cannot be rendered, or is larger than the model's context
window (error rows). Everything else is rendered and queued with the input columns its result
keeps. Identical requests are the workers' business (they share one reply), not admission's.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import orjson
import pyarrow as pa

from batchllm.errors import RowError
from batchllm.index import DoneIndex, hash_strings
from batchllm.job import JobSpec
from batchllm.keys import (
    DuplicateIds,
    batch_digests,
    batch_keys,
    digest_strings,
    digestible,
    row_key,
)
from batchllm.outcome import Outcome, row_failure
from batchllm.prefix import Recorder, Skip, plan, unchanged
from batchllm.render import Renderer
from batchllm.run.workers import Item, Stop
from batchllm.source import BATCH_ROWS, InputRow, RowBatch, Source
from batchllm.tally import RunOptions, Tally

_T = TypeVar("_T")
#: input rows sorted at a time (a read gives ~1,500 of ~300 bytes; the index is asked per step)
GATHER_ROWS = 8192


class Admission:
    """Streams the input (or the given rows) into the queue, row by row."""

    def __init__(
        self,
        job: JobSpec,
        options: RunOptions,
        source: Source,
        renderer: Renderer,
        queue: asyncio.Queue[Item | None],
        *,
        copy_columns: list[str],
        run_id: str,
        context_window: int | None,
        tally: Tally,
        record: Callable[[Outcome], None],
        stop: Stop,
    ) -> None:
        self._job, self._options, self._source, self._renderer = job, options, source, renderer
        self._run_id, self._window = run_id, context_window
        self._tally, self._record, self._stop = tally, record, stop
        self._queue, self._copy_columns = queue, copy_columns
        self._duplicate_ids = DuplicateIds(job.input.id_column)
        #: reads, hashes and makes rows: blocking work, always in this one thread (Arrow's
        #: allocator keeps pages per thread: one thread keeps the peak down)
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="batchllm-admit")
        #: request keys of batches submitted by an earlier run and not collected yet
        self.in_batch: dict[tuple[str, str], str] = {}
        #: what this read of the input is recorded as, for the next run (``batchllm.prefix``)
        self._recorder: Recorder | None = None
        #: the input's unchanged prefix, hashed while the done index is built (a whole read only)
        self._unchanged = (
            self._reader.submit(unchanged, job.output_dir, source)
            if options.rows is None and options.limit is None
            else None
        )

    async def produce(self, done: DoneIndex, ends: int) -> None:
        """Admit every row, then put ``ends`` end markers (one per consumer)."""
        try:
            if self._options.rows is not None:
                await self._admit_all(self._options.rows, done)
            else:
                await self._produce_from_source(done)
        finally:
            if self._recorder is not None:  # a read cut short is not kept (after its last step)
                self._reader.submit(self._recorder.spoil)
            self._reader.shutdown(wait=False)
        for _ in range(ends):
            await self._queue.put(None)

    async def _admit_all(self, rows: Iterable[InputRow | dict[str, Any]], done: DoneIndex) -> None:
        """Admit rows given as dicts (or unusable lines): the done ones found all at once."""
        items = [row if isinstance(row, InputRow) else InputRow(row) for row in rows]
        await self._take(self._sort_rows(items, None, done), done)

    async def _produce_from_source(self, done: DoneIndex) -> None:
        skip = await self._in_reader(self._unread_prefix, done)
        self._tally.rows += skip.rows
        self._tally.reused += skip.rows
        self._tally.reused_failed += skip.failed
        self._tally.prefix_rows = skip.rows
        batches = _gathered(self._source.row_batches(span=skip.span), GATHER_ROWS)
        remaining = self._options.limit
        while not self._stop.stopping and (remaining is None or remaining > 0):
            # reading, hashing and looking up a batch is blocking work: a thread does it
            rows = await self._in_reader(self._next_sorted, batches, remaining, done)
            if rows is None:
                if self._recorder is not None:
                    await self._in_reader(self._recorder.finish)
                break
            if remaining is not None:
                remaining -= rows.count
            await self._take(rows, done)

    def _unread_prefix(self, done: DoneIndex) -> Skip:
        """The input's unchanged prefix of done rows, not read (a whole read only: no limit)."""
        if self._unchanged is None:
            return Skip()
        run_dir = self._job.output_dir
        found = self._unchanged.result()
        skip = plan(run_dir, done, found, retry_failed=self._options.retry_failed)
        self._recorder = Recorder(run_dir, self._source, skip)
        self._duplicate_ids.know(skip.ids)
        skip.ids = []
        return skip

    def _next_sorted(
        self, batches: Iterator[RowBatch], limit: int | None, done: DoneIndex
    ) -> _Sorted | None:
        """The next batch of input rows (up to ``limit``), sorted into done and to admit."""
        rows = next(batches, None)
        if rows is None:
            return None
        if (rows.bad or rows.lossy) and self._recorder is not None:
            self._recorder.spoil()
        bad = rows.bad if limit is None else rows.bad[:limit]
        sorted_rows = self._sort_rows(bad, None, done) if bad else _Sorted()
        batch = rows.batch
        if batch is not None and limit is not None:
            batch = batch.slice(0, max(limit - len(bad), 0))
        if batch is not None and batch.num_rows:
            sorted_rows.extend(self._sort_batch(RowBatch(batch, [], rows.lossy), done))
        return sorted_rows

    def _sort_batch(self, rows: RowBatch, done: DoneIndex) -> _Sorted:
        """Sort a batch with its keys and input hashes computed column-wise: only the rows not
        done become dicts (rows without an id, and batches of other ids, go row by row)."""
        batch = rows.batch
        assert batch is not None
        id_column = self._job.input.id_column
        columnar = not self._renderer.has_media and digestible(batch.schema)
        digests = digest_strings(batch_digests(batch)) if columnar else None
        keyed = batch_keys(batch, id_column) if digests is not None and not rows.lossy else None
        if digests is None or keyed is None:
            if self._recorder is not None:
                self._recorder.spoil()
            listed = None if digests is None else digests.to_pylist()
            return self._sort_rows(self._source.to_rows(rows), listed, done)
        ids, missing = keyed
        key_hashes = hash_strings(ids)
        content_keys: dict[int, str] = {}
        if missing.any():  # no id: the key is the row's content (rare, so row by row)
            at = np.flatnonzero(missing)
            for row, item in zip(at.tolist(), self._source.to_rows(rows, at), strict=True):
                content_keys[row] = row_key(item.data, id_column)
            key_hashes[at] = hash_strings(list(content_keys.values()))
        digest_hashes = hash_strings(digests)
        done_rows, ok_rows = self._lookup(done, key_hashes, digest_hashes)
        repeated = np.zeros(batch.num_rows, np.bool_)
        repeated[~missing] = self._duplicate_ids.seen(key_hashes[~missing])
        self._record_read(key_hashes, digest_hashes, bool(missing.any() or repeated.any()))
        skipped = done_rows & ~repeated
        found = _Sorted(count=batch.num_rows, reused=int(skipped.sum()))
        found.reused_failed = int((skipped & ~ok_rows).sum())
        found.source = rows
        for index in np.flatnonzero(~skipped).tolist():
            key = content_keys.get(index) or ids[index].as_py()
            refusal = self._duplicate_ids.refusal(key) if repeated[index] else None
            found.later.append((index, key, digests[index].as_py(), refusal))
        return found

    def _record_read(self, keys: np.ndarray, digests: np.ndarray, unusual: bool) -> None:
        """Record rows read for the next run; a row without an id or with a repeated one is
        not recorded (nor anything of this read then)."""
        if self._recorder is None:
            return
        if unusual:
            self._recorder.spoil()
        else:
            self._recorder.add(keys, digests)

    def _sort_rows(
        self, items: list[InputRow], digests: list[str] | None, done: DoneIndex
    ) -> _Sorted:
        """Sort rows one by one (keys and duplicate ids), their done ones found all at once."""
        id_column = self._job.input.id_column
        keys = [item.key or row_key(item.data, id_column) for item in items]
        if digests is None:
            digests = [self._renderer.input_hash(item.data) for item in items]
        done_rows, ok_rows = self._lookup(done, hash_strings(keys), hash_strings(digests))
        found = _Sorted(count=len(items))
        for at, (item, key, digest) in enumerate(zip(items, keys, digests, strict=True)):
            problem = item.problem or self._duplicate_ids.problem(key)
            if done_rows[at] and problem is None:
                found.reused += 1
                found.reused_failed += not ok_rows[at]
            else:
                found.rows.append((item, key, digest, problem))
        return found

    def _lookup(
        self, done: DoneIndex, keys: np.ndarray, digests: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(done, done and ok) of each (row key, input hash), both hashed."""
        if done.empty:
            none = np.zeros(len(keys), np.bool_)
            return none, none
        found, failed = done.input_states(keys, digests)
        # done and not failed: what a retry would skip too (the rest still count as failed)
        ok_rows = found & ~failed
        return (ok_rows if self._options.retry_failed else found), ok_rows

    async def _in_reader(self, work: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._reader, work, *args)

    async def _take(self, found: _Sorted, done: DoneIndex) -> None:
        """Count the done rows as reused and admit the others, in order."""
        self._tally.rows += found.reused
        self._tally.reused += found.reused
        self._tally.reused_failed += found.reused_failed
        for item, key, digest, problem in found.rows:
            if self._stop.stopping:
                return
            await self._admit(item, key, digest, problem, done)
        for at in range(0, len(found.later), BATCH_ROWS):  # rows made a few at a time
            chunk = found.later[at : at + BATCH_ROWS]
            assert found.source is not None
            indices = [index for index, *_ in chunk]
            items = await self._in_reader(self._source.to_rows, found.source, indices)
            for item, (_, key, digest, refusal) in zip(items, chunk, strict=True):
                if self._stop.stopping:
                    return
                await self._admit(item, key, digest, item.problem or refusal, done)

    async def _admit(
        self, row: InputRow, key: str, digest: str, problem: str | None, done: DoneIndex
    ) -> None:
        """Queue the row's request, unless it is done, in a batch, or cannot be sent."""
        self._tally.rows += 1
        data = row.data
        if problem is not None:
            self._reject_input(key, data, digest, problem, done)
            return
        retry_failed = self._options.retry_failed
        try:
            request = self._renderer.render(key, data, digest)
        except RowError as exc:
            self._fail_row(key, data, digest, str(exc), "render")
            # a row that failed to render may have spent seconds of its budget without the loop
            # running: let signals and workers in before the next one
            await asyncio.sleep(0)
            return
        if done.is_done(key, request.request_key, retry_failed=retry_failed):
            self._reuse(not done.is_done(key, request.request_key, retry_failed=True))
        elif (key, request.request_key) in self.in_batch:
            self._tally.in_batch += 1  # its batch is already submitted: its result is on the way
        elif self._window and request.est_input_tokens > self._window:
            problem = (
                f"the prompt is about {request.est_input_tokens:,} tokens, more than the "
                f"{self._window:,}-token context window of {self._job.model.name}"
            )
            self._fail_row(key, data, digest, problem, "too_large")
        else:
            await self._queue.put((request, self._copied(data)))

    def _reject_input(
        self, key: str, data: dict[str, Any], digest: str, problem: str, done: DoneIndex
    ) -> None:
        if problem.startswith("duplicate id"):
            key = _duplicate_key(key, data)
        if done.is_done_input(key, digest, retry_failed=False):
            self._reuse(failed=True)  # reported by an earlier run already
        else:
            self._fail_row(key, data, digest, problem, "input")

    def _reuse(self, failed: bool) -> None:
        """A row done in an earlier run; ``failed``: its result there is failed or invalid."""
        self._tally.reused += 1
        self._tally.reused_failed += failed

    def _fail_row(self, key: str, data: dict[str, Any], digest: str, error: str, kind: str) -> None:
        self._record(row_failure(self._run_id, key, self._copied(data), error, kind, digest))

    def _copied(self, data: dict[str, Any]) -> dict[str, Any]:
        return {column: _copyable(data.get(column)) for column in self._copy_columns}


def _gathered(batches: Iterator[RowBatch], rows: int) -> Iterator[RowBatch]:
    """Consecutive batches joined up to ``rows`` rows: fewer, larger steps of column work."""
    held: list[pa.RecordBatch] = []
    count, lossy = 0, False
    while True:
        try:
            read = next(batches, None)
        except Exception:  # the input fails further on: what was read before still counts
            if held:
                yield RowBatch(_joined(held), [], lossy)
            raise
        if read is None:
            break
        if held and (read.bad or read.batch is None or read.lossy != lossy or count >= rows):
            yield RowBatch(_joined(held), [], lossy)
            held, count = [], 0
        if read.bad or read.batch is None:
            yield read
            continue
        held.append(read.batch)
        count, lossy = count + read.batch.num_rows, read.lossy
    if held:
        yield RowBatch(_joined(held), [], lossy)


def _joined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


@dataclass(slots=True)
class _Sorted:
    """A batch of input rows sorted: ``count`` read, ``reused`` of them done (``reused_failed``
    of those with a failed result), and the ``rows`` to admit (row, key, input hash, problem),
    then the rows of ``source`` to admit, made rows only when their turn comes (``later``: index,
    key, input hash, refusal)."""

    count: int = 0
    reused: int = 0
    reused_failed: int = 0
    rows: list[tuple[InputRow, str, str, str | None]] = field(default_factory=list)
    source: RowBatch | None = None
    later: list[tuple[int, str, str, str | None]] = field(default_factory=list)

    def extend(self, other: _Sorted) -> None:
        """Add ``other``, read after this one (at most one of the two has ``later`` rows)."""
        self.count += other.count
        self.reused += other.reused
        self.reused_failed += other.reused_failed
        self.rows += other.rows
        self.source, self.later = other.source or self.source, self.later + other.later


def _duplicate_key(key: str, data: dict[str, Any]) -> str:
    content = orjson.dumps(data, option=orjson.OPT_SORT_KEYS, default=str)
    return f"{key}#dup-{hashlib.blake2b(content, digest_size=6).hexdigest()}"


def _copyable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
