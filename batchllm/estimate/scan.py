"""The estimate's scan: the whole input streamed once, every row rendered and counted.

Rows already done in the run directory are skipped (found a batch at a time in the done index,
as a run finds them; an unchanged prefix of done rows is not read at all, as in a run, see
``batchllm.prefix``); the rest are counted with their input tokens
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
from batchllm.keys import batch_digests, digest_strings, digestible, row_key
from batchllm.outcome import RecentRequests
from batchllm.parts import read_done
from batchllm.prefix import Skip, plan, unchanged
from batchllm.pricing import context_window
from batchllm.render import Renderer
from batchllm.source import InputRow, RowBatch, Source
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
    skip = Skip()
    if limit is None:
        skip = plan(job.output_dir, done, unchanged(job.output_dir, source), retry_failed=False)
    scan, rng = Scan(rows=skip.rows), random.Random(0)
    reservoir: list[tuple[str, dict[str, Any], int]] = []
    recent: RecentRequests[None] = RecentRequests()
    # Duplicate ids are not looked for: a table of every id would grow with the input, and
    # counting a refused duplicate as a request errs on the safe side.
    window = context_window(job)
    for batch, digests in _batches(source, None if done.empty else renderer, limit, skip):
        for key, row in _not_done(batch, digests, done, job.input.id_column):
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


def _batches(
    source: Source, renderer: Renderer | None, limit: int | None, skip: Skip
) -> Iterator[tuple[list[InputRow], list[str]]]:
    """The input's rows in batches with their input hashes (none without a ``renderer``: nothing
    is done), up to ``limit`` rows (reading stops there), after the unread prefix ``skip``."""
    left = limit
    for read in source.row_batches(span=skip.span):
        rows = read.bad + source.to_rows(read)
        digests = [""] * len(rows) if renderer is None else _digests(read, rows, renderer)
        if left is not None:
            rows, digests = rows[:left], digests[:left]
            left -= len(rows)
        if rows:
            yield rows, digests
        if left == 0:
            return


def _digests(read: RowBatch, rows: list[InputRow], renderer: Renderer) -> list[str]:
    """Each row's input hash, as a run computes it (column-wise for rows read from a file)."""
    batch = read.batch
    if batch is None or renderer.has_media or not digestible(batch.schema):
        return [renderer.input_hash(item.data) for item in rows]
    columnar: list[str] = digest_strings(batch_digests(batch)).to_pylist()
    return [renderer.input_hash(item.data) for item in read.bad] + columnar


def _not_done(
    rows: list[InputRow], digests: list[str], done: DoneIndex, id_column: str | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The rows that are neither error rows nor done (the same row data under the same job),
    found for the whole batch at once, as they would be in a run."""
    usable = [
        (item, digest) for item, digest in zip(rows, digests, strict=True) if not item.problem
    ]
    keys = [item.key or row_key(item.data, id_column) for item, _ in usable]
    if done.empty:
        yield from zip(keys, (item.data for item, _ in usable), strict=True)
        return
    hashes = [digest for _, digest in usable]
    skip = done.done_inputs(keys, hashes, retry_failed=False).tolist()
    for key, (item, _), is_done in zip(keys, usable, skip, strict=True):
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
