"""``[run] backend = "ray"``: a job's shards as Ray tasks, its limits in one Ray actor.

The driver checks the job, records the shard plan, starts (or joins) Ray, creates the limit
actor (a ``LeaseBook``) and one task per shard, waits, and adds up the shards' summaries. A shard
task is a normal run of the job on its rows into its own run directory (``shards``), with a
``LeaseLimiter`` and ``LeaseBudget`` in its seams. A task whose worker or node dies is run again
by Ray and resumes from what its directory holds; a driver that dies is resumed by running the
same command again. Batch mode is refused: its requests wait on the provider, not on this
process, so one machine submits them as well as many.

The only module that imports Ray.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, cast

import ray
import structlog

from batchllm import errors
from batchllm.errors import BatchllmError, UserError
from batchllm.job import JobSpec
from batchllm.preflight import check_budget
from batchllm.pricing import resolve_price
from batchllm.run.pipeline import JobRun, Seams
from batchllm.scale.book import BudgetLease, Lease, LeaseBook
from batchllm.scale.lease import LeaseBudget, LeaseLimiter
from batchllm.scale.shards import settle_plan, shard_dir, shard_job, shard_rows
from batchllm.source import Source
from batchllm.tally import RunOptions, RunSummary

log = structlog.get_logger("batchllm")

#: how often Ray runs a shard again whose worker or node died
SHARD_RETRIES = 4
#: the more serious error wins when shards fail differently
_SEVERITY = ("FatalProviderError", "BudgetReached", "UserError", "Interrupted")


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


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class LimitActor:
    """The run's one ``LeaseBook``, serving every shard's leases."""

    def __init__(self, rpm: int | None, tpm: int | None, cap_usd: float | None) -> None:
        self.book = LeaseBook(rpm, tpm, cap_usd)

    def lease(self, requests: tuple[float, float], tokens: tuple[float, float]) -> Lease:
        return self.book.lease(requests, tokens)

    def pause(self, seconds: float, rate_limited: bool) -> None:
        self.book.pause(seconds, rate_limited=rate_limited)

    def follow(self, rpm: int | None, tpm: int | None) -> None:
        self.book.follow(rpm, tpm)

    def start_shard(self, shard: int) -> None:
        self.book.start_shard(shard)

    def budget(self, shard: int, need: float, want: float, spent: float) -> BudgetLease:
        return self.book.budget(shard, need, want, spent)

    def give_back(self, shard: int, usd: float, spent: float) -> None:
        self.book.give_back(shard, usd, spent)

    def stats(self) -> dict[str, float]:
        return {
            "leases": self.book.leases,
            "rate_limited": self.book.rate_limited,
            "spent_usd": self.book.spent_usd,
        }


class ActorService:
    """The limit actor behind the ``LeaseService`` calls."""

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
def run_shard(
    job: JobSpec, options: RunOptions, shard: int, shards: int, actor: Any
) -> ShardResult:
    """One shard of the job, run to its end in this worker (a Ray task)."""
    return asyncio.run(_run_shard(job, options, shard, shards, actor))


async def _run_shard(
    job: JobSpec, options: RunOptions, shard: int, shards: int, actor: Any
) -> ShardResult:
    _note_attempt(job, shard)
    await actor.start_shard.remote(shard)
    service = ActorService(actor)
    limiter = LeaseLimiter(service, job.limits.rpm, job.limits.tpm, shards)
    cap = check_budget(job, options.max_cost_usd)
    budget = LeaseBudget(service, shard, cap, resolve_price(job))
    mine = RunOptions(
        limit=options.limit, fresh=options.fresh, retry_failed=options.retry_failed,
        max_cost_usd=options.max_cost_usd, rows=shard_rows(job, shard, shards, options.limit),
    )  # fmt: skip
    try:
        run = JobRun(shard_job(job, shard), mine, seams=Seams(limiter=limiter, budget=budget))
        summary = await run.execute()
    except BatchllmError as exc:
        return ShardResult(shard, error=type(exc).__name__, message=str(exc))
    finally:
        budget.give_back()
    return ShardResult(
        shard, summary, rate_limited=limiter.rate_limited_count, leases=limiter.leases
    )


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


async def arun_on_ray(job: JobSpec, options: RunOptions, plan: RayPlan) -> RunSummary:
    """Run the job in ``plan.shards`` shards on Ray; raises like a local run would."""
    if job.model.mode == "batch":
        raise UserError(
            "backend 'ray' runs online requests; batch mode submits its batches from one "
            "process: run it with backend 'local'"
        )
    Source(job.input)  # a missing or unreadable input fails here, before any shard starts
    cap = check_budget(job, options.max_cost_usd)
    resolve_price(job)
    settle_plan(job.output_dir, job.name, plan.shards)
    _join(plan.address)
    started = time.monotonic()
    # ray.remote gives the class its .remote at run time; Ray's types do not say so
    actor = cast(Any, LimitActor).remote(job.limits.rpm, job.limits.tpm, cap)
    launch = run_shard.options(num_cpus=plan.shard_cpus)
    refs = [launch.remote(job, options, i, plan.shards, actor) for i in range(plan.shards)]
    log.info("ray.start", job=job.name, shards=plan.shards, dir=str(job.output_dir))
    results = await asyncio.gather(*refs, return_exceptions=True)
    stats = await actor.stats.remote()
    log.info("ray.finish", wall_s=round(time.monotonic() - started, 3), **stats)
    ray.kill(actor)
    return _summary(job, results, time.monotonic() - started)


def _join(address: str | None) -> None:
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)


def _summary(job: JobSpec, results: list[Any], wall_s: float) -> RunSummary:
    failed = [r for r in results if not isinstance(r, ShardResult)]
    if failed:
        raise BatchllmError(
            f"{len(failed)} shard(s) failed after {SHARD_RETRIES} retries ({failed[0]}); "
            "run the same command again to resume"
        )
    done: list[ShardResult] = results
    errored = sorted(
        (r for r in done if r.error is not None), key=lambda r: _severity(r.error or "")
    )
    if errored:
        first = errored[0]
        kind = getattr(errors, first.error or "", BatchllmError)
        raise kind(f"shard {first.shard}: {first.message}")
    summaries = [r.summary for r in done if r.summary is not None]
    return _added(job, summaries, wall_s)


def _severity(name: str) -> int:
    return _SEVERITY.index(name) if name in _SEVERITY else len(_SEVERITY)


def _added(job: JobSpec, summaries: list[RunSummary], wall_s: float) -> RunSummary:
    sums: dict[str, Any] = {}
    for item in fields(RunSummary):
        values = [getattr(s, item.name) for s in summaries]
        if values and isinstance(values[0], int | float) and item.name != "wall_s":
            sums[item.name] = sum(values)
    first = summaries[0]
    return RunSummary(
        job=job.name,
        run_id=first.run_id,
        run_dir=str(job.output_dir),
        status="finished",
        wall_s=wall_s,
        price_source=first.price_source,
        **sums,
    )


__all__ = ["LimitActor", "RayPlan", "ShardResult", "arun_on_ray", "run_shard"]
