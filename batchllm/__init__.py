"""batchllm: run an LLM over every row of a table, within rate limits and budget, resumably.

The Python API is what the CLI calls::

    import batchllm
    job = batchllm.load_job("jobs/ticket_triage.toml")
    summary = batchllm.run_job(job, batchllm.RunOptions(limit=100))
    table = batchllm.query(job, "select status, count(*) from results group by 1")
    found = await batchllm.aestimate(job)           # cost and time before spending

Subpackages show the data flow's other parts, each with a small face of its own: ``run`` (the
run's lifecycle), ``providers`` (the registry of providers), ``estimate``, ``simulate`` (the
simulated provider, not part of a run's import graph) and ``bench``.
"""

from batchllm._version import __version__
from batchllm.errors import (
    BatchllmError,
    BudgetReached,
    FatalProviderError,
    Interrupted,
    UserError,
)
from batchllm.estimate import Estimate, aestimate
from batchllm.job import JobSpec, load_job
from batchllm.query import query
from batchllm.run.pipeline import arun_job, run_job
from batchllm.tally import RunOptions, RunSummary

__all__ = [
    "BatchllmError",
    "BudgetReached",
    "Estimate",
    "FatalProviderError",
    "Interrupted",
    "JobSpec",
    "RunOptions",
    "RunSummary",
    "UserError",
    "__version__",
    "aestimate",
    "arun_job",
    "load_job",
    "query",
    "run_job",
]
