"""Assembling a run's ``RunContext``: the provider's address, adapter and HTTP session, and the
limiter and clock (the caller's ``Seams`` when given, else the in-process ones).

The only place a run starts the simulated provider or makes its adapter. It does not send.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp

from batchllm.budget import Budget
from batchllm.job import JobSpec
from batchllm.limits import LocalLimiter, LoopClock
from batchllm.pricing import Price
from batchllm.providers import make_adapter
from batchllm.run.context import OutcomeSink, RunContext, Seams, Settings
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
        base_url = await stack.enter_async_context(_endpoint(job))
        adapter = make_adapter(job.model.provider, base_url, api_key)
        connector = aiohttp.TCPConnector(limit=job.limits.concurrency)
        session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
        clock = seams.clock or LoopClock()
        yield RunContext(
            run_id=run_id,
            adapter=adapter,
            session=session,
            limiter=seams.limiter or LocalLimiter(job.limits.rpm, job.limits.tpm, clock),
            budget=budget,
            sink=sink,
            clock=clock,
            price=price,
            settings=settings_of(job),
            schema=schema,
            base_url=base_url,
            api_key=api_key,
        )


def settings_of(job: JobSpec) -> Settings:
    retry = job.retry
    return Settings(
        retry.max_attempts, retry.timeout_s, job.output.max_repairs, retry.resend_stragglers
    )


@contextlib.asynccontextmanager
async def _endpoint(job: JobSpec) -> AsyncIterator[str | None]:
    """The provider's base URL; for the simulated provider, a simulator started for the run."""
    if job.model.provider != "simulated":
        yield job.model.base_url
        return
    async with _simulator(job) as url:
        yield url


@contextlib.asynccontextmanager
async def _simulator(job: JobSpec) -> AsyncIterator[str]:
    from batchllm.simulate import SimConfig, start_server

    spec = job.simulate
    server = await start_server(
        SimConfig(
            rpm=spec.rpm,
            tpm=spec.tpm,
            latency_ms=spec.latency_ms,
            jitter_ms=spec.jitter_ms,
            error_rate=spec.error_rate,
            hang_rate=spec.hang_rate,
            reset_rate=spec.reset_rate,
            malformed_rate=spec.malformed_rate,
            seed=spec.seed,
            batch_delay_s=spec.batch_delay_s,
            batch_expire_rate=spec.batch_expire_rate,
            batch_error_rate=spec.batch_error_rate,
        )
    )
    try:
        yield server.url
    finally:
        await server.close()
