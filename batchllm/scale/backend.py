"""Choosing the backend of a run: ``[run] backend`` and its command-line overrides.

``with_run`` applies ``--backend``/``--shards``/``--address`` to a job; ``arun`` runs it in this
process (``local``) or hands it to ``ray_backend``, importing Ray only then, so the core install
works without it. It does not run shards itself.
"""

from __future__ import annotations

import dataclasses

from batchllm.errors import UserError
from batchllm.job import JobSpec
from batchllm.run.pipeline import arun_job
from batchllm.tally import ProgressHook, RunOptions, RunSummary

RAY_MISSING = "backend 'ray' needs Ray, which this install lacks: pip install 'batchllm-jobs[ray]'"


def with_run(job: JobSpec, backend: str | None, shards: int | None, address: str | None) -> JobSpec:
    """The job with the given ``[run]`` settings replaced (``None`` keeps the job's)."""
    run = job.run
    run = dataclasses.replace(
        run,
        backend=backend or run.backend,
        shards=shards or run.shards,
        address=address or run.address,
    )
    return dataclasses.replace(job, run=run)


async def arun(
    job: JobSpec, options: RunOptions, progress: ProgressHook | None = None
) -> RunSummary:
    """Run the job on its backend."""
    if job.run.backend != "ray":
        return await arun_job(job, options, progress)
    if job.plan.deadline is not None:  # shards do not plan: each would plan on the whole input
        raise UserError("a deadline is planned on the local backend, not on Ray")
    try:
        from batchllm.scale.ray_backend import RayPlan, arun_on_ray
    except ImportError as exc:
        raise UserError(RAY_MISSING) from exc
    run = job.run
    return await arun_on_ray(job, options, RayPlan(run.shards, run.address, run.shard_cpus))
