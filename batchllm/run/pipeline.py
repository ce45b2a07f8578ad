"""``run_job``: a run from start to end, assembled from its parts.

``JobRun`` checks everything that costs nothing, opens the run directory, begins the run's record,
assembles the ``RunContext`` (``assemble``), then lets admission (``admit``) feed either the
worker pool (``workers``) or batch mode (``batch``), and finishes the record with the run's status.
A first SIGINT/SIGTERM stops admission and lets requests in flight finish (up to a grace period);
a second one stops at once. What a run does with one request is the dispatcher's; what it keeps of
each outcome is the sink's.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from datetime import UTC, datetime

import structlog

from batchllm.budget import LocalBudget
from batchllm.dispatch import Dispatcher
from batchllm.errors import (
    BatchllmError,
    BudgetReached,
    FatalProviderError,
    InputError,
    Interrupted,
    StorageError,
)
from batchllm.index import DoneIndex
from batchllm.job import JobSpec
from batchllm.outcome import RECENT_REQUESTS, results_schema
from batchllm.plan.capacity import Learner, samples
from batchllm.plan.history import History
from batchllm.plan.setup import deadline_plan
from batchllm.preflight import api_key, check_budget, check_copies, check_fields
from batchllm.pricing import context_window, resolve_price
from batchllm.render import Renderer
from batchllm.run.admit import Admission
from batchllm.run.assemble import connect
from batchllm.run.batch import BatchMode, BatchSettings, Book, batch_api
from batchllm.run.batch_switch import Switch
from batchllm.run.context import RunContext, Seams
from batchllm.run.record import Counters, RunRecord, record_of
from batchllm.run.workers import Answers, Item, Ledger, Stop, Workers, outage_rows
from batchllm.scale.objects import publisher
from batchllm.source import Source
from batchllm.store import Store, part_settings
from batchllm.tally import ProgressHook, RunOptions, RunSummary, Tally
from batchllm.validate import OutputSchema

__all__ = [
    "RECENT_REQUESTS",
    "JobRun",
    "RunOptions",
    "RunSummary",
    "Seams",
    "Tally",
    "arun_job",
    "run_job",
]

log = structlog.get_logger("batchllm")

GRACE_S = 30.0


def run_job(job: JobSpec, options: RunOptions | None = None) -> RunSummary:
    """Run a job to the end (blocking). See ``arun_job`` for use inside an event loop."""
    return asyncio.run(arun_job(job, options))


async def arun_job(
    job: JobSpec, options: RunOptions | None = None, progress: ProgressHook | None = None
) -> RunSummary:
    """Run a job; raises a ``BatchllmError`` for run-level failures, after saving all outcomes."""
    return await JobRun(job, options or RunOptions(), progress).execute()


class JobRun:
    """One run of a job; ``seams``: parts to use instead of the in-process ones."""

    def __init__(
        self,
        job: JobSpec,
        options: RunOptions,
        progress: ProgressHook | None = None,
        seams: Seams | None = None,
    ) -> None:
        self.job, self.options, self.progress = job, options, progress
        self.seams = seams or Seams()
        self._preflight()
        try:
            self.plan = deadline_plan(job, options, self.budget.cap_usd)
        except BaseException:
            self.store.close()  # refused before anything was sent: the run directory is free
            raise
        # Sortable by start time, so later parts win when outcomes are read back in name order.
        self.run_id = options.run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        self.tally = Tally()
        self.stop = Stop()
        self.queue: asyncio.Queue[Item | None] = asyncio.Queue(maxsize=job.limits.concurrency * 4)
        online = job.model.mode != "batch"
        self.ledger = Ledger(
            self.store,
            self.tally,
            self.stop,
            outage_rows=outage_rows(job.limits.concurrency) if online else None,
        )
        self.admission = Admission(
            job, options, self.source, self.renderer, self.queue,
            copy_columns=self.copy_columns, run_id=self.run_id,
            context_window=context_window(job), tally=self.tally,
            record=self.ledger.record, stop=self.stop,
        )  # fmt: skip
        self.context: RunContext | None = None
        self.dispatcher: Dispatcher | None = None
        self.workers: Workers | None = None
        #: SIGINT/SIGTERM received so far
        self.interrupts = 0

    def _preflight(self) -> None:
        """Everything that can be checked, checked before any request; the run directory opened."""
        job = self.job
        self.source = self.seams.source or Source(job.input)
        self.schema = OutputSchema(job.output.schema) if job.output.schema else None
        self.renderer = Renderer(job, self.source.columns, self.schema)
        self.copy_columns = check_copies(job)
        fields = self.schema.columns() if self.schema else []
        self.field_names = [name for name, _ in fields]
        check_fields(job, [name for name, _ in fields])
        self.price = resolve_price(job)
        cap = check_budget(job, self.options.max_cost_usd)
        self.budget = self.seams.budget or LocalBudget(cap, self.price)
        self.api_key = api_key(job)
        copied = [(c, self.source.copy_type(c)) for c in self.copy_columns]
        self.store = Store(
            job.output_dir,
            job.name,
            results_schema(copied, fields),
            keep_history=job.output.keep_history,
            publish=publisher(job),
            **part_settings(),
        )

    async def execute(self) -> RunSummary:
        # Signals are handled until the run directory is closed: one during the end-of-run merge
        # lets it finish (or leave nothing half-written) and exits 130 rather than dying.
        with self._signals():
            try:
                done = self.store.load_done(self.job.fingerprint, fresh=self.options.fresh)
                self.store.begin_run(
                    self.run_id, self._record("running").as_entry(), self.job.fingerprint
                )
                log.info(
                    "run.start", job=self.job.name, run_id=self.run_id, dir=str(self.store.path)
                )
                record = await self._finish(await self._run(done))
            finally:
                self.store.close()
        return await self._conclude(record)

    async def _finish(self, status: str) -> RunRecord:
        """Save what is left of the run and its record; a full disk here is the run's problem."""
        record = self._record(status)
        try:
            await self.store.finish_run(record.as_entry())
        except StorageError as exc:
            self.stop.halt(exc)
            record = self._record("storage_error")
        return record

    async def _conclude(self, record: RunRecord) -> RunSummary:
        """The summary of a finished run, or the error that says why it stopped."""
        summary = record.summary(self.job.name, str(self.store.path), self.tally)
        log.info(
            "run.finish",
            **{
                k: getattr(summary, k)
                for k in ("rows", "sent", "ok", "failed", "invalid", "reused")
            },
            cost_usd=round(summary.cost_usd, 6),
            wall_s=round(summary.wall_s, 3),
        )
        if self.stop.fatal is not None:
            raise self.stop.fatal
        if self.stop.problem is not None:
            raise _with_saved(self.stop.problem, summary)
        if record.status == "budget":
            raise BudgetReached(await self._budget_message(summary))
        if record.status == "interrupted" or self.interrupts:
            raise Interrupted(
                f"interrupted: {summary.ok + summary.failed + summary.invalid} rows saved in "
                f"{summary.run_dir}; run the same command again to resume"
            )
        return summary

    async def _run(self, done: DoneIndex) -> str:
        async with connect(
            self.job, run_id=self.run_id, api_key=self.api_key, price=self.price,
            budget=self.budget, sink=self.store, schema=self.schema, seams=self.seams,
        ) as context:  # fmt: skip
            self.learner = Learner(self.plan, self.store.path, self.job.model)
            self.context = context = self.learner.watch(context)
            self.ledger.endpoint = str(getattr(context.adapter, "url", context.base_url) or "")
            self.dispatcher = Dispatcher(context)
            self.dispatcher.tiers.standard_from = self.plan.standard_from if self.plan else None
            self.learner.tiers = self.dispatcher.tiers
            if self.job.model.mode == "batch" or self._planned_batches():
                await self._work_batch(context, self.dispatcher, done)
            else:
                await self._work(self.dispatcher, done)
        if self.stop.fatal is not None:
            return "fatal"
        if self.stop.problem is not None:
            return "storage_error" if isinstance(self.stop.problem, StorageError) else "input_error"
        if self.budget.exhausted:
            return "budget"
        return "interrupted" if self.stop.stopping else "finished"

    async def _produce(self, done: DoneIndex, ends: int) -> None:
        """Admit the input; an input that cannot be read on (or a run directory that cannot be
        written) stops admission, and what is in flight finishes and is saved."""
        try:
            await self.admission.produce(done, ends)
        except (InputError, StorageError) as exc:
            self.stop.halt(exc)
            for _ in range(ends):
                await self.queue.put(None)

    async def _work(self, dispatcher: Dispatcher, done: DoneIndex) -> None:
        answers = Answers(done, self.store.flush, self.field_names)
        self.workers = Workers(dispatcher, self.ledger, self.stop, self.budget, self.tally, answers)
        async with asyncio.TaskGroup() as group:
            ticker = group.create_task(self._tick())
            if self.progress is not None:
                group.create_task(self._count_total())
            self.stop.tasks = [
                group.create_task(self.workers.work(self.queue))
                for _ in range(self.job.limits.concurrency)
            ]
            await self._produce(done, len(self.stop.tasks))
            await asyncio.gather(*self.stop.tasks, return_exceptions=True)
            ticker.cancel()
        if self.progress is not None:
            self.progress(self.tally)  # the line ends on the final count, not the last tick's

    async def _work_batch(self, context: RunContext, repairer: Dispatcher, done: DoneIndex) -> None:
        """Batch mode: one consumer groups the requests into provider batches."""
        job = self.job
        mode = BatchMode(
            context,
            api=batch_api(job.model.provider, context.base_url, context.api_key),
            book=Book(self.store.path),
            record=self.ledger.record,
            repairer=repairer,
            price=resolve_price(job, batch=True),
            settings=BatchSettings(
                job.batch.poll_s,
                job.batch.max_poll_s,
                job.retry.max_attempts,
                job.batch.max_requests,
            ),
        )
        self.admission.in_batch = mode.in_flight
        mode.history = (History(self.store.path), job.model.provider)
        mode.answers = Answers(done, self.store.flush, self.field_names)
        try:
            async with asyncio.TaskGroup() as group:
                self.stop.tasks = [group.create_task(self._batches(mode, repairer, group, done))]
                await self._produce(done, len(self.stop.tasks))
        except* FatalProviderError as caught:
            first = caught.exceptions[0]
            self.stop.stop_for(
                first if isinstance(first, FatalProviderError) else FatalProviderError(str(first))
            )
        finally:
            self.tally.sent += mode.sent

    def _planned_batches(self) -> bool:
        """A deadline run goes through batch mode when its plan batches rows, or when batches
        of an earlier run are open: their rows go online only once they have ended."""
        if self.plan is None:
            return False
        return self.plan.batch or bool(Book(self.store.path, create=False).open_tags())

    async def _batches(
        self, mode: BatchMode, dispatcher: Dispatcher, group: asyncio.TaskGroup, done: DoneIndex
    ) -> None:
        """Batch mode, and with a deadline the online workers that take the rows moved at the
        switch point (``batchllm.plan``)."""
        if self.plan is None:
            await mode.run(self.queue)
            return
        mode.switch = self.learner.switch = Switch(self.plan.switch_at or 0.0,  # none: at once
                                                   samples=samples(self.plan),
                                                   handed=self.learner.handed_back)  # fmt: skip
        answers = Answers(done, self.store.flush, self.field_names)
        self.workers = Workers(dispatcher, self.ledger, self.stop, self.budget, self.tally, answers)
        online = [group.create_task(self.workers.work(mode.switch.online))
                  for _ in range(self.job.limits.concurrency)]  # fmt: skip
        try:
            await mode.run(self.queue)
        finally:
            mode.switch.end(len(online))
        await asyncio.gather(*online)

    def interrupt(self) -> None:
        """Stop admitting; requests in flight finish (up to ``GRACE_S``, or at once the second
        time). A SIGINT/SIGTERM, or the driver of a sharded run telling its shards."""
        self.interrupts += 1
        self.stop.stop()
        in_flight = self.workers.in_flight if self.workers else 0
        log.warning("run.stopping", in_flight=in_flight, grace_s=GRACE_S)
        if self.interrupts == 1:
            asyncio.get_running_loop().call_later(GRACE_S, self.stop.cancel)
        else:
            self.stop.cancel()

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        caught = (signal.SIGINT, signal.SIGTERM)
        for sig in caught:
            loop.add_signal_handler(sig, self.interrupt)
        try:
            yield
        finally:
            for sig in caught:
                loop.remove_signal_handler(sig)

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

    def _record(self, status: str) -> RunRecord:
        return record_of(
            self.run_id,
            self.options.kind,
            status,
            self.tally,
            self._counters(),
            limit=self.options.limit,
            price_source=self.price.source,
        )

    def _counters(self) -> Counters:
        if self.context is None or self.dispatcher is None:
            return Counters()
        limiter = self.context.limiter
        return Counters(
            rate_limited=limiter.rate_limited_count,
            rate_limit_wait_s=limiter.paused_s,
            stragglers_resent=self.dispatcher.stragglers_resent,
        )


def _with_saved(problem: BatchllmError, summary: RunSummary) -> BatchllmError:
    """An input problem met mid-run, saying that the replies received before it are saved."""
    if not isinstance(problem, InputError):
        return problem
    saved = summary.ok + summary.failed + summary.invalid
    return InputError(
        f"{problem}; the {saved:,} results of this run are saved in {summary.run_dir}: "
        "fix the input and run the same command again to resume"
    )
