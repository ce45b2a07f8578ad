"""Turning an ended batch's items into outcomes, with the same builder as an online run.

Each row of a batch gets the outcome of its request's item: a reply (priced at the batch price),
a failure, or nothing when the request goes out again in a later batch (expired, cancelled or
retryable items before the last attempt). Replies that fail the schema are repaired online by
the run's dispatcher, a few at a time. Rows sharing a request share its reply (``shared_outcome``),
paid once. Submitting, polling and the book are ``batch``'s and ``batch_book``'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batchllm.dispatch import Dispatcher
from batchllm.errors import FatalProviderError, ProviderError
from batchllm.outcome import Outcome, Outcomes, shared_outcome
from batchllm.providers.base import Adapter, Completion
from batchllm.providers.batches import UNFINISHED, ItemResult
from batchllm.render import Request
from batchllm.run.batch_book import Pending, entry_key, request_from

#: schema repairs of one batch's replies sent at once (online, under the job's limits)
REPAIR_WORKERS = 16

#: a row's outcome, or None when its request goes out again
Settled = dict[str, Outcome | None]


@dataclass(frozen=True, slots=True)
class _Repair:
    """A batch reply that failed the schema, to be re-asked online."""

    request: Request
    copied: dict[str, Any]
    completion: Completion
    attempt: int


class Collector:
    """Outcomes of ended batches, recorded with ``record``."""

    def __init__(
        self,
        adapter: Adapter,
        outcomes: Outcomes,
        repairer: Dispatcher,
        max_attempts: int,
        record: Callable[[Outcome], None],
    ) -> None:
        self._adapter, self._outcomes, self._repairer = adapter, outcomes, repairer
        self._max_attempts, self._record = max_attempts, record

    async def settle(
        self,
        rows: list[dict[str, Any]],
        items: dict[str, ItemResult],
        attempt: int,
        refused: str | None,
    ) -> Settled:
        """Each distinct request's outcome (repairs done); ``refused``: why the provider failed
        the whole batch, if it did."""
        settled: Settled = {}
        repairs: list[_Repair] = []
        for row in rows:
            key = row["custom_id"]
            if key not in settled:
                found = self._outcome(row, items.get(key), attempt, refused)
                repairs += [found] if isinstance(found, _Repair) else []
                settled[key] = None if isinstance(found, _Repair) else found
        settled.update(await self._repair(repairs))
        return settled

    def record_rows(
        self, entries: list[bytes], lines: list[bytes], rows: list[dict[str, Any]], settled: Settled
    ) -> Pending:
        """Record each row's outcome (rows sharing a request share its reply, paid once); the
        requests to send again, with their rows."""
        by_key = {entry_key(line): line for line in entries}
        again = Pending([], [])
        seen: set[str] = set()
        for line, row in zip(lines, rows, strict=True):
            key = row["custom_id"]
            outcome = settled[key]
            if outcome is None:
                again.entries += [] if key in seen else [by_key[key]]
                again.rows.append(line)
            else:
                self._record(_shared(outcome, row) if key in seen else outcome)
            seen.add(key)
        return again

    def _outcome(
        self, row: dict[str, Any], item: ItemResult | None, attempt: int, refused: str | None
    ) -> Outcome | _Repair | None:
        request = request_from(row["request"])
        last = attempt >= self._max_attempts
        if item is None or item.kind in UNFINISHED:
            if not last:
                return None
            kind = "missing" if item is None else "canceled" if "cancel" in item.kind else "expired"
            kind = "failed" if item is None and refused else kind
            error = f"batch item {kind} on its last attempt ({attempt})"
            error += f": the provider failed the batch: {refused}" if refused else ""
            return self._outcomes.failed(request, row["copied"], error, f"batch_{kind}", attempt)
        try:
            completion = self._adapter.parse(item.status, {}, item.body)
        except ProviderError as exc:
            if exc.fatal:
                raise FatalProviderError(f"{exc.kind}: {exc}") from exc
            if exc.retryable and not last:
                return None
            return self._outcomes.failed(request, row["copied"], str(exc), exc.kind, attempt)
        return self._answered(request, row["copied"], completion, attempt)

    def _answered(
        self, request: Request, copied: dict[str, Any], completion: Completion, attempt: int
    ) -> Outcome | _Repair:
        checked = self._outcomes.check(completion)
        if checked is not None and checked.value is None and self._repairer.max_repairs:
            return _Repair(request, copied, completion, attempt)
        return self._outcomes.answered(request, copied, [completion], checked, attempts=attempt)

    async def _repair(self, repairs: list[_Repair]) -> dict[str, Outcome]:
        """Re-ask online for the replies that failed the schema, a few at a time."""
        repaired: dict[str, Outcome] = {}
        todo = iter(repairs)

        async def worker() -> None:
            for job in todo:  # one iterator shared by the workers: each takes the next
                repaired[job.request.request_key] = await self._repairer.repair(
                    job.request,
                    job.copied,
                    job.completion,
                    first_cost=self._outcomes.price.cost(job.completion.usage),
                    attempts=job.attempt,
                )

        async with asyncio.TaskGroup() as group:
            for _ in range(min(len(repairs), REPAIR_WORKERS)):
                group.create_task(worker())
        return repaired


def _shared(earlier: Outcome, row: dict[str, Any]) -> Outcome:
    """The outcome of the same request for another row of the batch: same answer, no cost."""
    return shared_outcome(earlier, request_from(row["request"]), row["copied"])
