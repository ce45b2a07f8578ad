"""``run_job``: source → render → (reuse | dispatch) → store, and nothing else.

A producer streams the input and renders rows into a bounded queue; a fixed pool of workers (the
job's ``concurrency``) sends them; each outcome is journaled before it counts. Rows already done
in the run directory are reused without a call, and identical requests within a run are sent once.
A first SIGINT/SIGTERM stops admission and lets requests in flight finish (up to a grace period);
a second one stops at once. Everything the run needs is built here and passed down.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import structlog

from batchllm import __version__
from batchllm.budget import Budget, OverBudget
from batchllm.dispatch import Dispatcher, Settings
from batchllm.errors import (
    BudgetReached,
    FatalProviderError,
    InputError,
    Interrupted,
    RowError,
)
from batchllm.job import JobSpec
from batchllm.limits import Limiter, LoopClock
from batchllm.outcome import (
    OK,
    RECENT_REQUESTS,
    Outcome,
    RecentRequests,
    results_schema,
    row_failure,
    shared_outcome,
)
from batchllm.preflight import api_key, check_budget, check_copies, check_fields
from batchllm.pricing import Price, context_window, resolve_price
from batchllm.providers.registry import make_adapter, open_provider
from batchllm.render import Renderer, Request, input_hash
from batchllm.run.batch import BatchMode, BatchSettings, Book, batch_api
from batchllm.source import DuplicateIds, InputRow, Source, row_key
from batchllm.store import DoneIndex, Store
from batchllm.tally import ProgressHook, RunOptions, RunSummary, Tally
from batchllm.validate import OutputSchema

__all__ = ["RECENT_REQUESTS", "RunOptions", "RunSummary", "Tally", "arun_job", "run_job"]

log = structlog.get_logger("batchllm")

GRACE_S = 30.0
#: consecutive rows failed by outage-like errors (after all retries) that stop a run
OUTAGE_ROWS = 50
_OUTAGE_KINDS = frozenset(
    {"server_error", "timeout", "connection_error", "rate_limited", "bad_reply"}
)


def run_job(job: JobSpec, options: RunOptions | None = None) -> RunSummary:
    """Run a job to the end (blocking). See ``arun_job`` for use inside an event loop."""
    return asyncio.run(arun_job(job, options))


async def arun_job(
    job: JobSpec, options: RunOptions | None = None, progress: ProgressHook | None = None
) -> RunSummary:
    """Run a job; raises a ``BatchllmError`` for run-level failures, after saving all outcomes."""
    run = _Run(job, options or RunOptions(), progress)
    return await run.execute()


class _Run:
    def __init__(self, job: JobSpec, options: RunOptions, progress: ProgressHook | None) -> None:
        # Everything that can be checked is checked here, before any request.
        self.job = job
        self.options = options
        self.progress = progress
        self.source = Source(job.input)
        self.schema = OutputSchema(job.output.schema) if job.output.schema else None
        self.renderer = Renderer(job, self.source.columns, self.schema)
        self.copy_columns = check_copies(job)
        fields = self.schema.columns() if self.schema else []
        check_fields(job, [name for name, _ in fields])
        self.price: Price = resolve_price(job)
        self.budget = Budget(check_budget(job, options.max_cost_usd), self.price)
        self.api_key = api_key(job)
        copied = [(c, self.source.copy_type(c)) for c in self.copy_columns]
        schema = results_schema(copied, fields)
        self.store = Store(job.output_dir, job.name, schema)
        # Sortable by start time, so later parts win when outcomes are read back in name order.
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        self.tally = Tally()
        self.stopping = asyncio.Event()
        self.interrupts = 0
        self.queue: asyncio.Queue[tuple[Request, dict[str, Any]] | None] = asyncio.Queue(
            maxsize=job.limits.concurrency * 4
        )
        self.inflight: dict[str, asyncio.Future[Outcome]] = {}
        self.recent: RecentRequests[Outcome] = RecentRequests()
        self.workers: list[asyncio.Task[None]] = []
        self.fatal: FatalProviderError | None = None
        self.outage = 0
        self.duplicate_ids = DuplicateIds(job.input.id_column)
        self.context_window = context_window(job)
        self.dispatcher: Dispatcher | None = None
        self.base_url: str | None = None
        #: request keys of batches submitted by an earlier run and not collected yet
        self.in_batch: dict[tuple[str, str], str] = {}

    async def execute(self) -> RunSummary:
        try:
            fresh = self.options.fresh
            done = DoneIndex() if fresh else self.store.load_done(self.job.fingerprint)
            self.store.begin_run(self.run_id, self._entry("running"), self.job.fingerprint)
            log.info("run.start", job=self.job.name, run_id=self.run_id, dir=str(self.store.path))
            status = await self._run(done)
            await self.store.finish_run(self._entry(status))
        finally:
            self.store.close()
        summary = self._summary(status)
        log.info(
            "run.finish",
            **{
                k: getattr(summary, k)
                for k in ("rows", "sent", "ok", "failed", "invalid", "reused")
            },
            cost_usd=round(summary.cost_usd, 6),
            wall_s=round(summary.wall_s, 3),
        )
        if status == "budget":
            raise BudgetReached(await self._budget_message(summary))
        if status == "interrupted":
            raise Interrupted(
                f"interrupted: {summary.ok + summary.failed + summary.invalid} rows saved in "
                f"{summary.run_dir}; "
                "run the same command again to resume"
            )
        return summary

    async def _run(self, done: DoneIndex) -> str:
        with self._signals():
            async with self._provider() as dispatcher:
                self.dispatcher = dispatcher
                if self.job.model.mode == "batch":
                    await self._work_batch(dispatcher, done)
                else:
                    await self._work(dispatcher, done)
        if self.fatal is not None:
            return "fatal"
        if self.budget.exhausted:
            return "budget"
        return "interrupted" if self.stopping.is_set() else "finished"

    async def _work(self, dispatcher: Dispatcher, done: DoneIndex) -> None:
        async with asyncio.TaskGroup() as group:
            ticker = group.create_task(self._tick())
            if self.progress is not None:
                group.create_task(self._count_total())
            self.workers = [
                group.create_task(self._worker(dispatcher))
                for _ in range(self.job.limits.concurrency)
            ]
            await self._produce(done)
            await asyncio.gather(*self.workers, return_exceptions=True)
            ticker.cancel()
        if self.progress is not None:
            self.progress(self.tally)  # the line ends on the final count, not the last tick's

    async def _work_batch(self, dispatcher: Dispatcher, done: DoneIndex) -> None:
        """Batch mode: one consumer groups the requests into provider batches."""
        book = Book(self.store.path)
        job = self.job
        mode = BatchMode(
            batch_api(job.model.provider, self.base_url, self.api_key),
            dispatcher.adapter,
            dispatcher.session,
            book,
            self._record,
            dispatcher,
            resolve_price(job, batch=True),
            BatchSettings(
                job.batch.poll_s,
                job.batch.max_poll_s,
                job.retry.max_attempts,
                job.batch.max_requests,
            ),
            self.run_id,
            self.schema,
        )
        self.in_batch = mode.in_flight
        try:
            async with asyncio.TaskGroup() as group:
                self.workers = [group.create_task(mode.run(self.queue))]
                await self._produce(done)
        except* FatalProviderError as caught:
            first = caught.exceptions[0]
            self._stop_for(
                first if isinstance(first, FatalProviderError) else FatalProviderError(str(first))
            )
        finally:
            self.tally.sent += mode.sent

    async def _produce(self, done: DoneIndex) -> None:
        if self.options.rows is not None:
            for row in self.options.rows:
                if self.stopping.is_set():
                    break
                await self._admit_row(row, done)
        else:
            await self._produce_from_source(done)
        for _ in self.workers:
            await self.queue.put(None)

    async def _produce_from_source(self, done: DoneIndex) -> None:
        batches = self.source.rows()
        remaining = self.options.limit
        while not self.stopping.is_set() and (remaining is None or remaining > 0):
            rows = await asyncio.to_thread(_next_rows, batches, remaining)
            if not rows:
                break
            if remaining is not None:
                remaining -= len(rows)
            for row in rows:
                if self.stopping.is_set():
                    break
                await self._admit_row(row, done)

    async def _admit_row(self, row: InputRow | dict[str, Any], done: DoneIndex) -> None:
        """Queue the row's request, unless it is done, shared, in a batch, or cannot be sent."""
        self.tally.rows += 1
        row = row if isinstance(row, InputRow) else InputRow(row)
        data = row.data
        key = row.key or row_key(data, self.job.input.id_column)
        digest = input_hash(data)
        problem = row.problem or self.duplicate_ids.problem(key)
        if problem is not None:
            self._reject_input(key, data, digest, problem, done)
            return
        retry_failed = self.options.retry_failed
        if done.is_done_input(key, digest, retry_failed=retry_failed):
            self.tally.reused += 1
            return
        try:
            request = self.renderer.render(key, data, digest)
        except RowError as exc:
            self._fail_row(key, data, digest, str(exc), "render")
            # a row that failed to render may have spent seconds of its budget without the loop
            # running: let signals and workers in before the next one
            await asyncio.sleep(0)
            return
        if done.is_done(key, request.request_key, retry_failed=retry_failed):
            self.tally.reused += 1
        elif (key, request.request_key) in self.in_batch:
            self.tally.in_batch += 1  # its batch is already submitted: its result is on the way
        elif self.context_window and request.est_input_tokens > self.context_window:
            problem = (
                f"the prompt is about {request.est_input_tokens:,} tokens, more than the "
                f"{self.context_window:,}-token context window of {self.job.model.name}"
            )
            self._fail_row(key, data, digest, problem, "too_large")
        else:
            await self.queue.put((request, self._copied(data)))

    def _reject_input(
        self, key: str, data: dict[str, Any], digest: str, problem: str, done: DoneIndex
    ) -> None:
        if problem.startswith("duplicate id"):
            key = _duplicate_key(key, data)
        if done.is_done_input(key, digest, retry_failed=False):
            self.tally.reused += 1  # reported by an earlier run already
        else:
            self._fail_row(key, data, digest, problem, "input")

    def _fail_row(self, key: str, data: dict[str, Any], digest: str, error: str, kind: str) -> None:
        self._record(row_failure(self.run_id, key, self._copied(data), error, kind, digest))

    def _copied(self, data: dict[str, Any]) -> dict[str, Any]:
        return {column: _copyable(data.get(column)) for column in self.copy_columns}

    async def _worker(self, dispatcher: Dispatcher) -> None:
        while (item := await self.queue.get()) is not None:
            if self.stopping.is_set():
                continue
            request, copied = item
            try:
                self._record(await self._outcome(dispatcher, request, copied))
            except FatalProviderError as exc:
                self._stop_for(exc)
            except OverBudget:
                if not self.stopping.is_set():
                    log.warning("run.budget_reached", spent_usd=round(self.budget.spent_usd, 6))
                self.stopping.set()
        if not self.stopping.is_set():
            dispatcher.stragglers.begin_tail()  # every row is handed out: the run's tail

    def _stop_for(self, exc: FatalProviderError) -> None:
        """A bad key, an exhausted quota, an outage: stop at once, whatever else is in flight."""
        if self.fatal is None:
            self.fatal = exc
            log.error("run.fatal", error=str(exc))
        self.stopping.set()
        current = asyncio.current_task()
        for task in self.workers:
            if task is not current:
                task.cancel()

    async def _outcome(
        self, dispatcher: Dispatcher, request: Request, copied: dict[str, Any]
    ) -> Outcome:
        key = request.request_key
        earlier = self.recent.get(key)
        if earlier is None and key in self.inflight:
            earlier = await asyncio.shield(self.inflight[key])
        if earlier is not None:
            return shared_outcome(earlier, request, copied)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.inflight[key] = future
        try:
            self.tally.sent += 1
            outcome = await dispatcher.process(request, copied)
            future.set_result(outcome)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here; sharers see it through shield
            raise
        finally:
            del self.inflight[key]
        self._remember(outcome)
        return outcome

    def _remember(self, outcome: Outcome) -> None:
        if outcome.status != OK:
            return
        self.recent.put(outcome.request_key, outcome)

    def _record(self, outcome: Outcome) -> None:
        self.store.write(outcome)
        self.tally.add(outcome)
        self._watch_outage(outcome)

    def _watch_outage(self, outcome: Outcome) -> None:
        """Stop when the provider has failed many rows in a row even after every retry.

        A provider that is down would otherwise turn a million rows into a million failed rows,
        hours later. What failed is kept; the rows go again with --retry-failed.
        """
        if outcome.status == OK:
            self.outage = 0
            return
        if outcome.error_type not in _OUTAGE_KINDS or self.job.model.mode == "batch":
            return
        self.outage += 1
        if self.outage == max(OUTAGE_ROWS, 2 * self.job.limits.concurrency):
            self._stop_for(
                FatalProviderError(
                    f"provider unavailable: {self.outage} rows in a row failed after every retry "
                    f"(last: {outcome.error}); run again with --retry-failed when it is back"
                )
            )

    @contextlib.asynccontextmanager
    async def _provider(self) -> AsyncIterator[Dispatcher]:
        async with contextlib.AsyncExitStack() as stack:
            base_url = await stack.enter_async_context(open_provider(self.job))
            self.base_url = base_url
            adapter = make_adapter(self.job.model.provider, base_url, self.api_key)
            connector = aiohttp.TCPConnector(limit=self.job.limits.concurrency)
            session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
            limiter = Limiter(self.job.limits.rpm, self.job.limits.tpm, LoopClock())
            retry = self.job.retry
            settings = Settings(
                retry.max_attempts,
                retry.timeout_s,
                self.job.output.max_repairs,
                retry.resend_stragglers,
            )
            yield Dispatcher(
                adapter,
                session,
                limiter,
                self.price,
                settings,
                self.run_id,
                self.schema,
                self.budget,
            )

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        caught = (signal.SIGINT, signal.SIGTERM)
        for sig in caught:
            loop.add_signal_handler(sig, self._interrupt)
        try:
            yield
        finally:
            for sig in caught:
                loop.remove_signal_handler(sig)

    def _interrupt(self) -> None:
        self.interrupts += 1
        self.stopping.set()
        log.warning("run.stopping", in_flight=len(self.inflight), grace_s=GRACE_S)
        if self.interrupts == 1:
            asyncio.get_running_loop().call_later(GRACE_S, self._cancel_workers)
        else:
            self._cancel_workers()

    def _cancel_workers(self) -> None:
        for task in self.workers:
            task.cancel()

    async def _tick(self) -> None:
        while self.progress is not None:
            self.progress(self.tally)
            await asyncio.sleep(0.25)

    async def _count_total(self) -> None:
        with contextlib.suppress(InputError):
            total = await asyncio.to_thread(self.source.count_rows)
            limit = self.options.limit
            self.tally.total = min(total, limit) if limit is not None else total

    async def _budget_message(self, summary: RunSummary) -> str:
        total = await asyncio.to_thread(self.source.count_rows)
        if self.options.limit is not None:
            total = min(total, self.options.limit)
        finished = summary.reused + summary.ok + summary.failed + summary.invalid
        cap = self.budget.cap_usd or 0.0
        return (
            f"budget reached: spent ${self.budget.spent_usd:.4f} of the ${cap:.4f} cap "
            "in this run; "
            f"{max(total - finished, 0):,} of {total:,} rows are still to do. Finished rows are "
            "kept: run again (with a higher --max-cost or [limits] max_cost_usd) to continue"
        )

    def _entry(self, status: str) -> dict[str, Any]:
        tally = self.tally
        return {
            "kind": self.options.kind,
            "status": status,
            "started_at": _iso(tally.started),
            "ended_at": None if status == "running" else datetime.now(UTC).isoformat(),
            "rows": tally.rows,
            "reused": tally.reused,
            "sent": tally.sent,
            "ok": tally.ok,
            "failed": tally.failed,
            "invalid": tally.invalid,
            "cost_usd": round(tally.cost_usd, 8),
            "rate_limited": self.dispatcher.rate_limited if self.dispatcher else 0,
            "rate_limit_wait_s": round(self.dispatcher.limiter.paused_s, 3)
            if self.dispatcher
            else 0.0,
            "stragglers_resent": self.dispatcher.stragglers.resent if self.dispatcher else 0,
            "price_source": self.price.source,
            "batchllm_version": __version__,
            "limit": self.options.limit,
        }

    def _summary(self, status: str) -> RunSummary:
        if self.fatal is not None:
            raise self.fatal
        t = self.tally
        return RunSummary(
            job=self.job.name,
            run_id=self.run_id,
            run_dir=str(self.store.path),
            status=status,
            rows=t.rows,
            reused=t.reused,
            sent=t.sent,
            ok=t.ok,
            failed=t.failed,
            invalid=t.invalid,
            input_tokens=t.input_tokens,
            output_tokens=t.output_tokens,
            cached_tokens=t.cached_tokens,
            cost_usd=t.cost_usd,
            wall_s=time.monotonic() - t.started,
            price_source=self.price.source,
        )


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


def _iso(monotonic_start: float) -> str:
    started = time.time() - (time.monotonic() - monotonic_start)
    return datetime.fromtimestamp(started, UTC).isoformat()
