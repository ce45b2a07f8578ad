"""The estimate's scan: the whole input streamed once, every row rendered and counted.

Rows already done in the run directory are skipped (found a batch at a time in the done index,
as a run finds them); the rest are counted with their input tokens
(estimated at ~4 bytes a token) and the distinct requests among them, while a uniform random sample
of rows is kept for the pilot. A request with a stored reply is counted as not to send. It sends
nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from batchllm.errors import RowError
from batchllm.index import DoneIndex
from batchllm.job import JobSpec
from batchllm.outcome import RecentRequests
from batchllm.pricing import context_window
from batchllm.render import Renderer
from batchllm.source import InputRow, Source, row_key
from batchllm.store import read_done
from batchllm.validate import OutputSchema


@dataclass(slots=True)
class Scan:
    rows: int = 0
    #: rows not done yet, and of those the distinct requests (identical ones are sent once)
    to_do: int = 0
    to_send: int = 0
    est_tokens: int = 0
    sample: list[tuple[str, dict[str, Any], int]] | None = None


def scan(job: JobSpec, sample_size: int, limit: int | None) -> Scan:
    source = Source(job.input)
    schema = OutputSchema(job.output.schema) if job.output.schema else None
    renderer = Renderer(job, source.columns, schema)
    done = read_done(job.output_dir, job.fingerprint)
    scan, rng = Scan(), random.Random(0)
    reservoir: list[tuple[str, dict[str, Any], int]] = []
    recent: RecentRequests[None] = RecentRequests()
    # Duplicate ids are not looked for: a table of every id would grow with the input, and
    # counting a refused duplicate as a request errs on the safe side.
    window = context_window(job)
    for batch in _batches(source, limit):
        for key, row in _not_done(batch, done, job.input.id_column, renderer):
            try:
                request = renderer.render(key, row)
            except RowError:
                continue
            if done.is_done(key, request.request_key, retry_failed=False):
                continue
            scan.to_do += 1
            if (
                (window and request.est_input_tokens > window)
                or done.has_answer(request.request_key)
                or _seen(recent, request.request_key)
            ):
                continue  # too large (an error row), or it reuses an identical request's reply
            scan.to_send += 1
            scan.est_tokens += request.est_input_tokens
            _keep(reservoir, sample_size, scan.to_send, (key, row, request.est_input_tokens), rng)
        scan.rows += len(batch)
    rng.shuffle(reservoir)
    scan.sample = reservoir
    return scan


def _batches(source: Source, limit: int | None) -> Iterator[list[InputRow]]:
    """The input's rows in batches, up to ``limit`` rows (reading stops there)."""
    left = limit
    for rows in source.rows():
        if left is not None:
            rows = rows[:left]
            left -= len(rows)
        if rows:
            yield rows
        if left == 0:
            return


def _not_done(
    rows: list[InputRow], done: DoneIndex, id_column: str | None, renderer: Renderer
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The rows that are neither error rows nor done (the same row data under the same job),
    found for the whole batch at once, as they would be in a run."""
    usable = [item for item in rows if item.problem is None]
    keys = [item.key or row_key(item.data, id_column) for item in usable]
    if done.empty:
        yield from zip(keys, (item.data for item in usable), strict=True)
        return
    digests = [renderer.input_hash(item.data) for item in usable]
    skip = done.done_inputs(keys, digests, retry_failed=False).tolist()
    for key, item, is_done in zip(keys, usable, skip, strict=True):
        if not is_done:
            yield key, item.data


def _seen(recent: RecentRequests[None], request_key: str) -> bool:
    """Whether the run would share an earlier identical request's reply (same window as a run)."""
    if request_key in recent:
        return True
    recent.put(request_key, None)
    return False


def _keep(reservoir: list[Any], size: int, seen: int, item: Any, rng: random.Random) -> None:
    """Reservoir sampling: every to-do row has the same chance to be in the sample."""
    if len(reservoir) < size:
        reservoir.append(item)
        return
    slot = rng.randrange(seen)
    if slot < size:
        reservoir[slot] = item
