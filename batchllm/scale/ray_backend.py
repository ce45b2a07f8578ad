"""``[run] backend = "ray"``: a job's shards as Ray tasks, its limits in one Ray actor.

The driver checks the job, takes the run directory (``driver.DriverRecord``: its lock and the
run's record), records the shard plan, joins Ray (``local_ray``: a lean local Ray when no
address is given), creates the run's actor (``actors.RunActor``: a ``LeaseBook`` and the word
to stop) and one task per shard, waits, and records the run from what the shards recorded. A
shard task is a normal run of the job on its rows (``shards.ShardSource``) into its own run
directory, under the driver's run id, with a ``LeaseLimiter`` and ``LeaseBudget`` in its
seams. A task whose worker or node dies is run again by Ray and resumes from what its
directory holds; a driver that dies is resumed by running the same command again. A first
SIGINT/SIGTERM to the driver tells every shard, through the run's actor, to stop admitting
and finish what is in flight, as a local run does; a second one ends the shards at once.
Batch mode is refused: its requests wait on the provider, not on this process, so one machine
submits them as well as many.

With ``actors`` and ``local_ray``, the only modules that import Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, cast

import ray
import structlog

from batchllm import errors
from batchllm.errors import BatchllmError, Interrupted, UserError
from batchllm.job import JobSpec
from batchllm.preflight import check_budget
from batchllm.pricing import resolve_price
from batchllm.run.pipeline import JobRun, Seams
from batchllm.run.record import Counters, record_of
from batchllm.scale.actors import RunActor
from batchllm.scale.book import BudgetLease, Lease
from batchllm.scale.driver import (
    DriverRecord,
    added,
    attempts_of,
    shard_entries,
    shard_total,
    shard_totals,
    worst_status,
)
from batchllm.scale.lease import LeaseBudget, LeaseLimiter
from batchllm.scale.local_ray import join
from batchllm.scale.shards import ShardSource, settle_plan, shard_dir, shard_job
from batchllm.source import Source
from batchllm.tally import RunOptions, RunSummary, Tally

log = structlog.get_logger("batchllm")

#: how often Ray runs a shard again whose worker or node died
SHARD_RETRIES = 4
#: the more serious error wins when shards fail differently
_SEVERITY = ("FatalProviderError", "BudgetReached", "UserError", "Interrupted")
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True, slots=True)
class RayPlan:
    """Where and how wide a Ray run goes."""

    shards: int
    address: str | None = None
    shard_cpus: float = 1.0


@dataclass(frozen=True, slots=True)
class ShardResult:
    shard: int
    summary: RunSummary | None = None
    error: str | None = None
    message: str = ""
    rate_limited: int = 0
    leases: int = 0
    #: the shard's manifest entry for this run (counts, cost, status)
    record: dict[str, Any] | None = None


class ActorService:
    """The run's actor behind the ``LeaseService`` calls."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    async def lease(self, requests: tuple[float, float], tokens: tuple[float, float]) -> Lease:
        lease: Lease = await self._actor.lease.remote(requests, tokens)
        return lease

    def pause(self, seconds: float, rate_limited: bool) -> None:
        self._actor.pause.remote(seconds, rate_limited)

    def follow(self, rpm: int | None, tpm: int | None) -> None:
        self._actor.follow.remote(rpm, tpm)

    async def budget(self, shard: int, need: float, want: float, spent: float) -> BudgetLease:
        lease: BudgetLease = await self._actor.budget.remote(shard, need, want, spent)
        return lease

    def give_back(self, shard: int, usd: float, spent: float) -> None:
        self._actor.give_back.remote(shard, usd, spent)


# without Ray installed its decorator is untyped to mypy; with Ray it is typed and the ignore unused
@ray.remote(max_retries=SHARD_RETRIES)  # type: ignore[untyped-decorator, unused-ignore]
def run_shard(job: JobSpec, options: RunOptions, shard: int, shards: int, run: Any) -> ShardResult:
    """One shard of the job, run to its end in this worker (a Ray task); ``run``: the run's
    ``_Actors``."""
    return asyncio.run(_run_shard(job, options, shard, shards, run))


async def _run_shard(
    job: JobSpec, options: RunOptions, shard: int, shards: int, actors: _Actors
) -> ShardResult:
    _note_attempt(job, shard)
    attempt: int = await actors.actor.start_shard.remote(shard)
    service = ActorService(actors.actor)
    limiter = LeaseLimiter(service, job.limits.rpm, job.limits.tpm, shards)
    cap = check_budget(job, options.max_cost_usd)
    budget = LeaseBudget(service, shard, cap, resolve_price(job))
    mine = RunOptions(
        limit=options.limit, fresh=options.fresh, retry_failed=options.retry_failed,
        max_cost_usd=options.max_cost_usd, run_id=_attempt_id(job, shard, actors.run_id, attempt),
    )  # fmt: skip
    source = ShardSource(job.input, shard, shards, options.limit)
    seams = Seams(limiter=limiter, budget=budget, source=source)
    run: JobRun | None = None
    watch: asyncio.Future[None] | None = None
    try:
        run = JobRun(shard_job(job, shard, shards), mine, seams=seams)
        watch = asyncio.ensure_future(_stop_when_told(actors.actor, run))
        summary = await run.execute()
    except BatchllmError as exc:
        return ShardResult(
            shard,
            error=type(exc).__name__,
            message=str(exc),
            record=_shard_record(run, actors.run_id),
        )
    finally:
        if watch is not None:
            watch.cancel()
        budget.give_back()
    return ShardResult(
        shard, summary, rate_limited=limiter.rate_limited_count, leases=limiter.leases,
        record=_shard_record(run, actors.run_id),
    )  # fmt: skip


def _attempt_id(job: JobSpec, shard: int, run_id: str, attempt: int) -> str:
    """The shard's run id: the driver's, and ``.N`` for a shard run again (its parts are named
    after it, and must not take the names of the parts of the attempt before)."""
    taken = {entry["run_id"] for entry in shard_entries(job.output_dir, run_id, only=shard)}
    if attempt == 1 and run_id not in taken:
        return run_id
    number = max(attempt, 2)
    while f"{run_id}.{number}" in taken:
        number += 1
    return f"{run_id}.{number}"


async def _stop_when_told(actor: Any, run: JobRun) -> None:
    await actor.stopped.remote()
    run.interrupt()


def _shard_record(run: JobRun | None, run_id: str) -> dict[str, Any] | None:
    """The shard's record of the driver's run (its attempts as one, ``shard_total``)."""
    if run is None:
        return None
    return shard_total(attempts_of(run.store.manifest["runs"], run_id)) or None


def _note_attempt(job: JobSpec, shard: int) -> None:
    """Which process runs the shard now (``attempt.json`` in its directory), for operators."""
    where = shard_dir(job.output_dir, shard)
    where.mkdir(parents=True, exist_ok=True)
    context = ray.get_runtime_context()
    body = (
        f'{{"pid": {os.getpid()}, "node": "{context.get_node_id()}", '
        f'"started": "{datetime.now(UTC).isoformat()}"}}'
    )
    (where / "attempt.json").write_text(body, encoding="utf-8")


@dataclass(frozen=True, slots=True)
class _Actors:
    """What every shard of one run shares: its run id and its actor (``RunActor``)."""

    run_id: str
    actor: Any


async def arun_on_ray(job: JobSpec, options: RunOptions, plan: RayPlan) -> RunSummary:
    """Run the job in ``plan.shards`` shards on Ray; raises like a local run would."""
    if job.model.mode == "batch":
        raise UserError(
            "backend 'ray' runs online requests; batch mode submits its batches from one "
            "process: run it with backend 'local'"
        )
    Source(job.input)  # a missing or unreadable input fails here, before any shard starts
    cap = check_budget(job, options.max_cost_usd)
    price = resolve_price(job)
    record = DriverRecord(job)
    try:
        settle_plan(job.output_dir, job.name, plan.shards)
        join(plan.address)
        tally = Tally()
        run_id = options.run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        begun = record_of(run_id, options.kind, "running", tally, Counters(),
                          limit=options.limit, price_source=price.source).as_entry()  # fmt: skip
        record.begin(run_id, job.fingerprint, begun, plan.shards)
        results, interrupted = await _run_shards(job, options, plan, run_id, cap)
        record.finish(_ended(job, plan, begun, results, interrupted))
    finally:
        record.close()
    return _summary(job, run_id, results, time.monotonic() - tally.started, interrupted)


def _ended(
    job: JobSpec, plan: RayPlan, begun: dict[str, Any], results: list[Any], interrupted: bool
) -> dict[str, Any]:
    """The driver's final entry: the shards' records added up, the most serious status."""
    entries = [r.record for r in results if isinstance(r, ShardResult) and r.record]
    if len(entries) < plan.shards:  # shards that could not answer: what their stores hold
        entries = shard_totals(job.output_dir, begun["run_id"])
    status = "interrupted" if interrupted else worst_status(e["status"] for e in entries)
    ended_at = datetime.now(UTC).isoformat()
    return {**begun, **added(entries), "status": status, "ended_at": ended_at}


async def _run_shards(
    job: JobSpec, options: RunOptions, plan: RayPlan, run_id: str, cap: float | None
) -> tuple[list[Any], bool]:
    """Every shard to its end; whether the driver was told to stop (SIGINT/SIGTERM)."""
    # ray.remote gives the class its .remote at run time; Ray's types do not say so
    actor = cast(Any, RunActor).remote(job.limits.rpm, job.limits.tpm, cap)
    actors = _Actors(run_id, actor)
    launch = run_shard.options(num_cpus=plan.shard_cpus)
    refs = [launch.remote(job, options, i, plan.shards, actors) for i in range(plan.shards)]
    log.info("ray.start", job=job.name, run_id=run_id, shards=plan.shards, dir=str(job.output_dir))
    with _signals(actors, refs) as told:
        results = await asyncio.gather(*refs, return_exceptions=True)
    stats = await actor.stats.remote()
    log.info("ray.finish", **stats)
    ray.kill(actor)
    return results, bool(told)


@contextlib.contextmanager
def _signals(actors: _Actors, refs: list[Any]) -> Iterator[list[int]]:
    """A first SIGINT/SIGTERM tells the shards to stop admitting; a second ends them at once.
    Yields the signals received so far."""
    loop = asyncio.get_running_loop()
    told: list[int] = []

    def interrupt(sig: int) -> None:
        told.append(sig)
        log.warning("ray.stopping", shards=len(refs), at_once=len(told) > 1)
        if len(told) == 1:
            actors.actor.stop.remote()
        else:
            for ref in refs:
                ray.cancel(ref, force=True)

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, interrupt, sig)
    try:
        yield told
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)


def _summary(
    job: JobSpec, run_id: str, results: list[Any], wall_s: float, interrupted: bool
) -> RunSummary:
    done = [r for r in results if isinstance(r, ShardResult)]
    if interrupted:
        saved = sum((r.record or {}).get(k, 0) for r in done for k in ("ok", "failed", "invalid"))
        raise Interrupted(
            f"interrupted: {saved} rows saved in {job.output_dir}; run the same command again "
            "to resume"
        )
    failed = [r for r in results if not isinstance(r, ShardResult)]
    if failed:
        raise BatchllmError(
            f"{len(failed)} shard(s) failed after {SHARD_RETRIES} retries ({failed[0]}); "
            "run the same command again to resume"
        )
    errored = sorted(
        (r for r in done if r.error is not None), key=lambda r: _severity(r.error or "")
    )
    if errored:
        first = errored[0]
        kind = getattr(errors, first.error or "", BatchllmError)
        raise kind(f"shard {first.shard}: {first.message}")
    summaries = [r.summary for r in done if r.summary is not None]
    return _added(job, run_id, summaries, wall_s)


def _severity(name: str) -> int:
    return _SEVERITY.index(name) if name in _SEVERITY else len(_SEVERITY)


def _added(job: JobSpec, run_id: str, summaries: list[RunSummary], wall_s: float) -> RunSummary:
    sums: dict[str, Any] = {}
    for item in fields(RunSummary):
        values = [getattr(s, item.name) for s in summaries]
        if values and isinstance(values[0], int | float) and item.name != "wall_s":
            sums[item.name] = sum(values)
    first = summaries[0]
    return RunSummary(
        job=job.name,
        run_id=run_id,
        run_dir=str(job.output_dir),
        status="finished",
        wall_s=wall_s,
        price_source=first.price_source,
        **sums,
    )


__all__ = ["RayPlan", "ShardResult", "arun_on_ray", "run_shard"]
