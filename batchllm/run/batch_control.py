"""Batch API calls outside a run: ``batchllm status`` and ``batchllm cancel``, and the one
retried control call every batch API request goes through.

Owns ``control_call`` (a batch API request, retried when the failure is transient),
``run_error`` (which failure stopped the batches) and the two commands, which read the book
and ask the provider; neither changes the book: the next run collects what a cancel left.
``batch_api`` is the provider registry's, re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp

from batchllm import retry
from batchllm.errors import (
    FatalProviderError,
    ProviderError,
    RequestRejected,
    ServerError,
    retryable_status,
)
from batchllm.job import JobSpec
from batchllm.providers.base import HttpCall
from batchllm.providers.batches import BatchApi
from batchllm.providers.http import send
from batchllm.providers.registry import batch_api as batch_api  # re-exported for batch mode
from batchllm.providers.registry import provider_entry
from batchllm.run.batch_book import Book

CONTROL_TIMEOUT_S = 120.0
CONTROL_ATTEMPTS = 8


def run_error(group: ExceptionGroup[Exception]) -> Exception:
    """What stopped the batches: a fatal provider error, or the batch API failing for good."""
    leaves = list(_leaves(group))
    for leaf in leaves:
        if isinstance(leaf, FatalProviderError):
            return leaf
    for leaf in leaves:
        if isinstance(leaf, ProviderError):
            return FatalProviderError(f"{leaf.kind}: {leaf}")
    return group


def _leaves(group: BaseExceptionGroup[Exception]) -> Iterator[Exception]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


async def control_call(session: aiohttp.ClientSession, call: HttpCall) -> tuple[int, bytes]:
    """One call to a batch API, retried like any request when the failure is transient."""
    async for attempt in retry.policy(CONTROL_ATTEMPTS):
        with attempt:
            status, _, body = await send(session, call, CONTROL_TIMEOUT_S)
            if retryable_status(status):
                raise ServerError(f"batch API HTTP {status}", status=status)
    return status, body


async def batch_status(job: JobSpec, api_key: str | None) -> str:
    """Each batch of the job's run directory, with the provider's live counts for open ones."""
    book = Book(job.output_dir, create=False)
    if not book.batches:
        return f"{job.name}: no batches in {job.output_dir}"
    api = _control_api(job, api_key)
    lines = [f"{job.name}: {len(book.batches)} batches in {job.output_dir}"]
    if api is None:
        lines[0] += " (the simulated provider lives inside a run: no live state)"
    with _control_errors():
        async with aiohttp.ClientSession() as session:
            for tag, entry in book.batches.items():
                live = await _live(session, api, entry) if api is not None else ""
                lines.append(
                    f"  {tag}  {entry.get('batch_id', '-'):<40} {entry['state']:<9} "
                    f"{entry['requests']:>7,} requests  attempt {entry['attempt']}{live}"
                )
    return "\n".join(lines)


async def _live(session: aiohttp.ClientSession, api: BatchApi, entry: dict[str, Any]) -> str:
    if entry["state"] != "submitted":
        return ""
    state = api.parse_batch(*await control_call(session, api.get(entry["batch_id"])))
    live = f"  provider: {state.status}, {state.succeeded:,}/{state.total:,} done"
    return live + (f", {state.failed:,} failed" if state.failed else "")


async def cancel_batches(job: JobSpec, api_key: str | None) -> str:
    """Ask the provider to cancel every submitted batch; the next run collects what finished."""
    book = Book(job.output_dir, create=False)
    api = _control_api(job, api_key)
    submitted = [e["batch_id"] for e in book.batches.values() if e["state"] == "submitted"]
    if api is None or not submitted:
        return f"{job.name}: no batch in flight"
    cancelled, ended = [], []
    with _control_errors():
        async with aiohttp.ClientSession() as session:
            for batch_id in submitted:
                try:
                    api.parse_batch(*await control_call(session, api.cancel(batch_id)))
                    cancelled.append(batch_id)
                except RequestRejected:  # it ended before the cancel came
                    ended.append(batch_id)
    also = f"; {len(ended)} had already ended" if ended else ""
    return (
        f"{job.name}: cancelling {len(cancelled)} batches ({', '.join(cancelled) or '-'}){also}; "
        "run the job again to collect what they finished and send the rest"
    )


def _control_api(job: JobSpec, api_key: str | None) -> BatchApi | None:
    """The job's batch API; None for a provider that lives only inside a run (the simulated)."""
    if provider_entry(job.model.provider).lives_in_run(job.model.base_url):
        return None
    return batch_api(job.model.provider, job.model.base_url, api_key)


@contextmanager
def _control_errors() -> Iterator[None]:
    """A batch API that refuses or stays down is a run-level error (exit 4), not a traceback."""
    try:
        yield
    except ProviderError as exc:
        raise FatalProviderError(f"{exc.kind}: {exc}") from None
