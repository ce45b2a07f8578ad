"""batchllm: run an LLM over every row of a table, within rate limits and budget, resumably.

The Python API is what the CLI calls::

    import batchllm
    job = batchllm.load_job("jobs/ticket_triage.toml")
    summary = batchllm.run_job(job, batchllm.RunOptions(limit=100))
    table = batchllm.query(job, "select status, count(*) from results group by 1")
"""

from batchllm._version import __version__
from batchllm.errors import (
    BatchllmError,
    BudgetReached,
    FatalProviderError,
    Interrupted,
    UserError,
)
from batchllm.job import JobSpec, load_job
from batchllm.query import query
from batchllm.run.pipeline import arun_job, run_job
from batchllm.tally import RunOptions, RunSummary

__all__ = [
    "BatchllmError",
    "BudgetReached",
    "FatalProviderError",
    "Interrupted",
    "JobSpec",
    "RunOptions",
    "RunSummary",
    "UserError",
    "__version__",
    "arun_job",
    "load_job",
    "query",
    "run_job",
]
