"""Assembling a run's ``RunContext``: the provider's address, adapter and HTTP session, and the
limiter and clock (the caller's ``Seams`` when given, else the in-process ones).

The only place a run opens its provider (the registry's opener: the simulated provider starts
its server there) or makes its adapter. It does not send.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp

from batchllm.budget import Budget
from batchllm.job import JobSpec
from batchllm.limits import LocalLimiter, LoopClock
from batchllm.pricing import Price
from batchllm.providers.registry import make_adapter, open_provider
from batchllm.run.context import OutcomeSink, RunContext, Seams, Settings
from batchllm.scale.pool import EndpointPool, PoolLimiter
from batchllm.validate import OutputSchema


@contextlib.asynccontextmanager
async def connect(
    job: JobSpec,
    *,
    run_id: str,
    api_key: str | None,
    price: Price,
    budget: Budget,
    sink: OutcomeSink,
    schema: OutputSchema | None,
    seams: Seams,
) -> AsyncIterator[RunContext]:
    """The run's context, its provider reachable for as long as the block lasts."""
    async with contextlib.AsyncExitStack() as stack:
        base_url = await stack.enter_async_context(open_provider(job))
        adapter = make_adapter(job.model.provider, base_url, api_key)
        connector = aiohttp.TCPConnector(limit=job.limits.concurrency)
        pool = _pool(job)
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=connector, middlewares=pool)
        )
        clock = seams.clock or LoopClock()
        limiter = seams.limiter or LocalLimiter(job.limits.rpm, job.limits.tpm, clock)
        yield RunContext(
            run_id=run_id,
            adapter=adapter,
            session=session,
            limiter=PoolLimiter(limiter, pool[0]) if pool and pool[0].limited else limiter,
            budget=budget,
            sink=sink,
            clock=clock,
            price=price,
            settings=settings_of(job),
            schema=schema,
            base_url=base_url,
            api_key=api_key,
        )


def _pool(job: JobSpec) -> tuple[EndpointPool, ...]:
    """The endpoint pool's middleware, when ``base_url`` lists several servers."""
    return (EndpointPool(job.model.endpoints),) if job.model.endpoints else ()


def settings_of(job: JobSpec) -> Settings:
    retry = job.retry
    return Settings(
        retry.max_attempts,
        retry.timeout_s,
        job.output.max_repairs,
        retry.resend_stragglers,
        retry.max_wait_s,
    )
