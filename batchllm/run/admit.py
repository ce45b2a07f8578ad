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
from typing import Any

import orjson

from batchllm.errors import RowError
from batchllm.index import DoneIndex
from batchllm.job import JobSpec
from batchllm.outcome import Outcome, row_failure
from batchllm.render import Renderer
from batchllm.run.workers import Item, Stop
from batchllm.source import DuplicateIds, InputRow, Source, row_key
from batchllm.tally import RunOptions, Tally


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
        #: request keys of batches submitted by an earlier run and not collected yet
        self.in_batch: dict[tuple[str, str], str] = {}

    async def produce(self, done: DoneIndex, ends: int) -> None:
        """Admit every row, then put ``ends`` end markers (one per consumer)."""
        if self._options.rows is not None:
            await self._admit_all(self._options.rows, done)
        else:
            await self._produce_from_source(done)
        for _ in range(ends):
            await self._queue.put(None)

    async def _admit_all(self, rows: Iterable[InputRow | dict[str, Any]], done: DoneIndex) -> None:
        """Admit a batch of rows: the done ones are found for the whole batch at once."""
        items = [row if isinstance(row, InputRow) else InputRow(row) for row in rows]
        id_column = self._job.input.id_column
        keys = [item.key or row_key(item.data, id_column) for item in items]
        digests = [self._renderer.input_hash(item.data) for item in items]
        done_rows: list[bool] = [False] * len(items)
        ok_rows = done_rows
        if not done.empty:
            retry_failed = self._options.retry_failed
            done_rows = done.done_inputs(keys, digests, retry_failed=retry_failed).tolist()
            # done and not failed: what a retry would skip too (the rest still count as failed)
            ok_rows = done.done_inputs(keys, digests, retry_failed=True).tolist()
        found = zip(items, keys, digests, done_rows, ok_rows, strict=True)
        for item, key, digest, is_done, is_ok in found:
            if self._stop.stopping:
                break
            problem = item.problem or self._duplicate_ids.problem(key)
            if is_done and problem is None:
                self._tally.rows += 1
                self._reuse(failed=not is_ok)
            else:
                await self._admit(item, key, digest, problem, done)

    async def _produce_from_source(self, done: DoneIndex) -> None:
        batches = self._source.rows()
        remaining = self._options.limit
        while not self._stop.stopping and (remaining is None or remaining > 0):
            rows = await asyncio.to_thread(_next_rows, batches, remaining)
            if not rows:
                break
            if remaining is not None:
                remaining -= len(rows)
            await self._admit_all(rows, done)

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


def _next_rows(batches: Iterator[list[InputRow]], limit: int | None) -> list[InputRow]:
    """The next batch of rows (runs in a thread: parsing input is blocking work)."""
    rows = next(batches, [])
    return rows if limit is None else rows[:limit]


def _duplicate_key(key: str, data: dict[str, Any]) -> str:
    content = orjson.dumps(data, option=orjson.OPT_SORT_KEYS, default=str)
    return f"{key}#dup-{hashlib.blake2b(content, digest_size=6).hexdigest()}"


def _copyable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
