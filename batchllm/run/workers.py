"""The worker pool of an online run: a fixed number of workers take requests from the queue.

Identical requests are sent once, within a run and across runs: a worker whose request is in
flight, was answered recently (``RecentRequests``, a cache) or has a stored ok reply (the run
directory's ``DoneIndex``, any run of this job) shares that outcome (``shared_outcome``) instead of
sending it. Every outcome
goes through the ``Ledger``: written to the sink, counted, and watched for an outage (many rows in
a row failed by the provider after every retry), which stops the run like a fatal error. ``Stop``
is the run's stop signal, shared with admission and the signal handlers. This module does not read
input or decide what is admitted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from batchllm.budget import Budget, OverBudget
from batchllm.dispatch import Dispatcher
from batchllm.errors import FatalProviderError
from batchllm.index import DoneIndex
from batchllm.outcome import OK, Outcome, RecentRequests, shared_outcome, stored_outcome
from batchllm.render import Request
from batchllm.run.context import OutcomeSink
from batchllm.tally import Tally

log = structlog.get_logger("batchllm")

#: consecutive rows failed by outage-like errors (after all retries) that stop a run
OUTAGE_ROWS = 50
_OUTAGE_KINDS = frozenset(
    {"server_error", "timeout", "connection_error", "rate_limited", "bad_reply"}
)

#: waits until every part handed to a background write is on disk
Flush = Callable[[], Awaitable[None]]

#: what the queue carries: a request and the input columns copied into its row
Item = tuple[Request, dict[str, Any]]


class Stop:
    """Whether the run is stopping, the fatal error that stopped it, and the tasks to cancel."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.fatal: FatalProviderError | None = None
        self.tasks: list[asyncio.Task[None]] = []

    @property
    def stopping(self) -> bool:
        return self.event.is_set()

    def stop(self) -> None:
        """Admit nothing more; requests in flight go on."""
        self.event.set()

    def stop_for(self, exc: FatalProviderError) -> None:
        """A bad key, an exhausted quota, an outage: stop at once, whatever else is in flight."""
        if self.fatal is None:
            self.fatal = exc
            log.error("run.fatal", error=str(exc))
        self.event.set()
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()


class Ledger:
    """Records each outcome: durably in the sink, then in the tally; stops the run on an outage."""

    def __init__(
        self, sink: OutcomeSink, tally: Tally, stop: Stop, *, outage_rows: int | None
    ) -> None:
        self._sink, self._tally, self._stop = sink, tally, stop
        #: failed rows in a row that stop the run (None: never, as in batch mode)
        self._outage_rows = outage_rows
        self._outage = 0

    def record(self, outcome: Outcome) -> None:
        self._sink.write(outcome)
        self._tally.add(outcome)
        self._watch_outage(outcome)

    def _watch_outage(self, outcome: Outcome) -> None:
        """Stop when the provider has failed many rows in a row even after every retry.

        A provider that is down would otherwise turn a million rows into a million failed rows,
        hours later. What failed is kept; the rows go again with --retry-failed.
        """
        if outcome.status == OK:
            self._outage = 0
            return
        if outcome.error_type not in _OUTAGE_KINDS or self._outage_rows is None:
            return
        self._outage += 1
        if self._outage == self._outage_rows:
            self._stop.stop_for(
                FatalProviderError(
                    f"provider unavailable: {self._outage} rows in a row failed after every "
                    f"retry (last: {outcome.error}); run again with --retry-failed when it is back"
                )
            )


def outage_rows(concurrency: int) -> int:
    """Failed rows in a row that mean the provider is down, for a pool of this size."""
    return max(OUTAGE_ROWS, 2 * concurrency)


class Answers:
    """The stored ok replies of a run directory, by request: the done index says whether there
    is one; its row is read from its part (after the parts being written have landed)."""

    def __init__(self, index: DoneIndex, flush: Flush, fields: list[str]) -> None:
        self._index, self._flush, self._fields = index, flush, fields

    async def find(self, request_key: str) -> Outcome | None:
        if not self._index.has_answer(request_key):
            return None
        await self._flush()
        row = await asyncio.to_thread(self._index.answer, request_key)
        return None if row is None else stored_outcome(row, self._fields)


class Workers:
    """``count`` workers sending the queue's requests through ``dispatcher``."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        ledger: Ledger,
        stop: Stop,
        budget: Budget,
        tally: Tally,
        answers: Answers | None = None,
    ) -> None:
        self._dispatcher, self._ledger, self._stop = dispatcher, ledger, stop
        self._budget, self._tally = budget, tally
        self._answers = answers
        self._inflight: dict[str, asyncio.Future[Outcome]] = {}
        self._recent: RecentRequests[Outcome] = RecentRequests()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def work(self, queue: asyncio.Queue[Item | None]) -> None:
        """One worker: send what the queue holds until its end marker."""
        while (item := await queue.get()) is not None:
            if self._stop.stopping:
                continue
            request, copied = item
            try:
                self._ledger.record(await self._outcome(request, copied))
            except FatalProviderError as exc:
                self._stop.stop_for(exc)
            except OverBudget:
                if not self._stop.stopping:
                    log.warning("run.budget_reached", spent_usd=round(self._budget.spent_usd, 6))
                self._stop.stop()
        if not self._stop.stopping:
            self._dispatcher.begin_tail()  # every row is handed out: the run's tail

    async def _outcome(self, request: Request, copied: dict[str, Any]) -> Outcome:
        key = request.request_key
        earlier = self._recent.get(key)
        if earlier is None and key in self._inflight:
            earlier = await asyncio.shield(self._inflight[key])
        if earlier is None and self._answers is not None:
            earlier = await self._answers.find(key)
        if earlier is not None:
            return shared_outcome(earlier, request, copied)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            self._tally.sent += 1
            outcome = await self._dispatcher.process(request, copied)
            future.set_result(outcome)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here; sharers see it through shield
            raise
        finally:
            del self._inflight[key]
        if outcome.status == OK:
            self._recent.put(key, outcome)
        return outcome
