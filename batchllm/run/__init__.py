"""The run's lifecycle: admission, the worker pool, signals, the run record, batch mode.

``arun_job`` and ``run_job`` are loaded on first use, so that the parts of a run (its context,
its record) can be imported by lower modules without importing the whole run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchllm.run.pipeline import arun_job, run_job

__all__ = ["arun_job", "run_job"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from batchllm.run import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'batchllm.run' has no attribute {name!r}")
