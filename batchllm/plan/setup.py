"""The plan of a job with a deadline, from what is known before sending.

Owns turning a job (its rows, prices, limits, the batch times its run directory remembers, its
budget) into a ``Situation`` and a ``Plan``, and refusing to start a run whose deadline cannot be
kept (exit 3, unless the deadline is soft). The plan itself is ``planner``'s.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import structlog

from batchllm.errors import BatchllmError, PriceError
from batchllm.job import JobSpec
from batchllm.job.spec import TIER_PROVIDERS
from batchllm.plan.capacity import lower, remembered
from batchllm.plan.clock import deadline_at
from batchllm.plan.history import History
from batchllm.plan.planner import Limits, Plan, Situation, make_plan
from batchllm.pricing import Price, resolve_price, tier_price
from batchllm.providers.base import Usage
from batchllm.providers.registry import batch_names
from batchllm.tally import RunOptions

log = structlog.get_logger("batchllm")

#: seconds a reply is taken to need online before a pilot measures it
GUESS_LATENCY_S = 2.0
#: output tokens a reply is taken to use when nothing bounds or measures it
GUESS_OUTPUT_TOKENS = 500


class DeadlineUnreachable(BatchllmError):
    """The plan cannot keep the deadline (within the budget): nothing was sent."""

    exit_code = 3


def with_deadline(job: JobSpec, deadline: str | None, soft: bool) -> JobSpec:
    """The job with ``[plan] deadline`` (``--deadline``) and ``soft`` (``--deadline-soft``)."""
    plan = job.plan
    if deadline is not None:
        deadline_at(deadline, 0.0)  # a bad value is a usage error before anything else
        plan = dataclasses.replace(plan, deadline=deadline)
    if soft:
        plan = dataclasses.replace(plan, soft=True)
    return dataclasses.replace(job, plan=plan)


def plan_for(
    job: JobSpec,
    rows: int,
    input_tokens: int,
    output_tokens: int | None = None,
    *,
    latency_s: float | None = None,
    budget_usd: float | None = None,
    now: float | None = None,
    learned: bool = True,
) -> Plan:
    """The plan for ``rows`` requests of ``job`` (token totals over all of them), at the online
    capacity its runs learned (``learned``; else at the job's limits)."""
    assert job.plan.deadline is not None
    now = time.time() if now is None else now
    if output_tokens is None:
        output_tokens = (job.model.max_tokens or GUESS_OUTPUT_TOKENS) * rows
    online = _cost(resolve_price(job), rows, input_tokens, output_tokens)
    batch = flex = None
    if job.model.provider in batch_names():
        batch = _priced(lambda: resolve_price(job, batch=True), rows, input_tokens, output_tokens)
    if job.model.provider in TIER_PROVIDERS:
        flex = _priced(lambda: tier_price(job, "flex"), rows, input_tokens, output_tokens)
    per_row = (input_tokens + output_tokens) / rows if rows else 0.0
    given, (rpm, tpm) = job.limits, (None, None)
    if learned:
        rpm, tpm = remembered(job.output_dir, job.model.provider, job.model.name)
    limits = Limits(lower(given.rpm, rpm), lower(given.tpm, tpm), given.concurrency, per_row,
                    latency_s or GUESS_LATENCY_S)  # fmt: skip
    history = History(job.output_dir).typical_s(job.model.provider, rows)
    return make_plan(Situation(
        rows, online, batch, limits.rows_per_s(), now, deadline_at(job.plan.deadline, now),
        budget_usd=budget_usd, batch_s=history, safety=job.plan.safety,
        reserve_s=job.plan.reserve_s, cheapest=job.plan.cheapest, flex_usd=flex,
        flex=job.model.service_tier == "flex", limits=limits,
    ))  # fmt: skip


def run_plan(job: JobSpec, budget_usd: float | None, limit: int | None) -> Plan:
    """The plan a run follows; ``DeadlineUnreachable`` when it cannot keep the deadline."""
    from batchllm.estimate.scan import scan  # the scan renders rows: only a deadline needs it

    scanned = scan(job, 0, limit)
    plan = plan_for(job, scanned.to_send, scanned.est_tokens, budget_usd=budget_usd)
    log.info("plan.made", rows=plan.rows, batch_rows=plan.batch_rows,
             online_rows=plan.online_rows, switch_in_s=_in(plan.switch_at),
             deadline_in_s=_in(plan.deadline), expected_usd=round(plan.expected_usd, 6),
             problem=plan.problem)  # fmt: skip
    if plan.problem is not None:
        if not job.plan.soft:
            raise DeadlineUnreachable(
                f"{plan.problem}; nothing was sent (--deadline-soft: run anyway)"
            )
        log.warning("plan.soft_deadline", problem=plan.problem)
    return plan


def _cost(price: Price, rows: int, input_tokens: int, output_tokens: int) -> float:
    """Every row at this price, each priced on its own (long-context tiers price one reply)."""
    if rows == 0:
        return 0.0
    return price.cost(Usage(input_tokens // rows, output_tokens // rows)) * rows


def _priced(
    price: Callable[[], Price], rows: int, input_tokens: int, output_tokens: int
) -> float | None:
    """Every row at a tier the price table may not know (None: it does not)."""
    try:
        return _cost(price(), rows, input_tokens, output_tokens)
    except PriceError:
        return None


def _in(at: float | None) -> float | None:
    return None if at is None else round(at - time.time(), 3)


def deadline_plan(job: JobSpec, options: RunOptions, budget_usd: float | None) -> Plan | None:
    """The plan of a run with a deadline (None without one, and for a pilot's or a shard's
    given rows)."""
    if job.plan.deadline is None or options.rows is not None or options.kind != "run":
        return None
    return run_plan(job, budget_usd, options.limit)
