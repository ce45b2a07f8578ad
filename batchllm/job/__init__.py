"""The job file: TOML in, a checked, frozen ``JobSpec`` out.

Owns the two ways in: ``load_job`` (a job file) and ``with_mode`` (``--mode`` on the command
line), and re-exports the spec values. The values and their defaults are
``batchllm.job.spec``'s; reading and checking the TOML is ``batchllm.job.file``'s.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from batchllm.errors import JobFileError
from batchllm.job.file import read_job
from batchllm.job.spec import (
    INPUT_FORMATS,
    BatchSpec,
    InputSpec,
    JobSpec,
    LimitsSpec,
    ModelSpec,
    OutputSpec,
    PricingSpec,
    PromptSpec,
    RetrySpec,
    SimulateSpec,
)
from batchllm.providers.registry import batch_names

__all__ = [
    "INPUT_FORMATS",
    "BatchSpec",
    "InputSpec",
    "JobSpec",
    "LimitsSpec",
    "ModelSpec",
    "OutputSpec",
    "PricingSpec",
    "PromptSpec",
    "RetrySpec",
    "SimulateSpec",
    "load_job",
    "with_mode",
]


def with_mode(job: JobSpec, mode: str) -> JobSpec:
    """The job with ``[model] mode`` replaced (``--mode`` on the command line)."""
    batch = batch_names()
    if mode == "batch" and job.model.provider not in batch:
        raise JobFileError(
            f"{job.path}: --mode batch is for {', '.join(batch)}, not '{job.model.provider}'"
        )
    return dataclasses.replace(job, model=dataclasses.replace(job.model, mode=mode))


def load_job(path: str | Path) -> JobSpec:
    """Read and check a job file; raises ``JobFileError`` naming the file, section and key."""
    return read_job(Path(path))
