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

import importlib
from typing import TYPE_CHECKING, Any

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
from batchllm.tally import RunOptions, RunSummary

if TYPE_CHECKING:
    from batchllm.estimate import Estimate, aestimate
    from batchllm.run.pipeline import arun_job, run_job

#: loaded when first asked for: a process that imports one part of the package (a Ray worker
#: running a shard, or holding the limits) does not pay for the estimate or the run engine
_LAZY = {
    "Estimate": "batchllm.estimate",
    "aestimate": "batchllm.estimate",
    "arun_job": "batchllm.run.pipeline",
    "run_job": "batchllm.run.pipeline",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'batchllm' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


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
