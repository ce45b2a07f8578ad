"""The worker pool of an online run: a fixed number of workers take requests from the queue.

Identical requests are sent once, within a run and across runs: a worker whose request is in
flight, was answered recently (``RecentRequests``, a cache) or has a stored ok reply (the run
directory's ``DoneIndex``, any run of this job) shares that outcome (``shared_outcome``) instead of
sending it. Every outcome
goes through the ``Ledger``: written to the sink, counted, and watched for an outage (many rows in
a row failed by the provider after every retry), which stops the run like a fatal error. ``Stop``
is the run's stop signal, shared with admission and the signal handlers. Only outcomes of requests
that reached (or failed to reach) the provider count towards an outage or a refused endpoint:
shared replies and rows never sent neither reset nor advance them. This module does not read
input or decide what is admitted.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from batchllm.budget import Budget, OverBudget
from batchllm.dispatch import Dispatcher
from batchllm.errors import BatchllmError, FatalProviderError, StorageError
from batchllm.index import DoneIndex
from batchllm.outcome import FAILED, OK, Outcome, RecentRequests, shared_outcome, stored_outcome
from batchllm.render import Request
from batchllm.run.context import OutcomeSink
from batchllm.tally import Tally

log = structlog.get_logger("batchllm")

#: consecutive rows failed by outage-like errors (after all retries) that stop a run
OUTAGE_ROWS = 50
_OUTAGE_KINDS = frozenset(
    {"server_error", "timeout", "connection_error", "rate_limited", "bad_reply"}
)

#: identical refusals (same HTTP status and kind) with no success that mean a wrong model or URL:
#: a 404 says the address or model does not exist; other refusals (a 400) may be a row's own
#: (a prompt too long), so more of them are needed
REFUSED_ROWS = {"404": 5}
REFUSED_ROWS_OTHER = 20
_HTTP_STATUS = re.compile(r"^HTTP (\d{3})\b")

#: waits until every part handed to a background write is on disk
Flush = Callable[[], Awaitable[None]]

#: what the queue carries: a request and the input columns copied into its row
Item = tuple[Request, dict[str, Any]]


class Stop:
    """Whether the run is stopping, the fatal error or the problem that stopped it, and the
    tasks to cancel."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.fatal: FatalProviderError | None = None
        #: an unreadable input or an unwritable run directory: admission stopped, in flight goes on
        self.problem: BatchllmError | None = None
        self.tasks: list[asyncio.Task[None]] = []

    @property
    def stopping(self) -> bool:
        return self.event.is_set()

    def stop(self) -> None:
        """Admit nothing more; requests in flight go on."""
        self.event.set()

    def halt(self, exc: BatchllmError) -> None:
        """Admit nothing more because of ``exc``; requests in flight finish and are saved."""
        if self.problem is None:
            self.problem = exc
            log.error("run.halted", error=str(exc))
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
    """Records each outcome: durably in the sink, then in the tally; stops the run on an outage
    or when the provider refuses every request the same way (a wrong model or endpoint)."""

    def __init__(
        self, sink: OutcomeSink, tally: Tally, stop: Stop, *, outage_rows: int | None
    ) -> None:
        self._sink, self._tally, self._stop = sink, tally, stop
        #: failed rows in a row that stop the run (None: never, as in batch mode)
        self._outage_rows = outage_rows
        self._outage = 0
        #: the provider's address, named when every request is refused
        self.endpoint = ""
        self._succeeded = False
        self._refusals: tuple[tuple[str | None, str | None], int] = ((None, None), 0)

    def record(self, outcome: Outcome) -> None:
        self._sink.write(outcome)
        self._tally.add(outcome)
        if outcome.attempts > 0:  # a shared reply or a row never sent says nothing of the server
            self._watch_outage(outcome)
            self._watch_refusals(outcome)

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

    def _watch_refusals(self, outcome: Outcome) -> None:
        """Stop when the first requests of a run are all refused alike (same status and kind,
        not retryable) before any succeeds: an unknown model, or a base URL that misses (or
        doubles) ``/v1``, would otherwise fail every row, one request each."""
        if outcome.status != FAILED:
            self._succeeded = True
            return
        if self._succeeded or self._outage_rows is None or outcome.error_type != "rejected":
            return
        found = _HTTP_STATUS.match(outcome.error or "")
        signature = (outcome.error_type, found.group(1) if found else None)
        previous, count = self._refusals
        count = count + 1 if signature == previous else 1
        self._refusals = (signature, count)
        if count == REFUSED_ROWS.get(signature[1] or "", REFUSED_ROWS_OTHER):
            self._stop.stop_for(
                FatalProviderError(
                    f"{self.endpoint or 'the provider'} refused the first {count} requests "
                    f"alike ({outcome.error}); check base_url (does it end in /v1?) and the "
                    "model name, or run batchllm validate --probe"
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
            except StorageError as exc:
                self._stop.halt(exc)
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
