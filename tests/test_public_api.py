"""The public faces: what ``batchllm`` and each subpackage export, and that it is all usable."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import batchllm
from conftest import REPO, job_data, ticket_rows, write_csv, write_job

#: the package's face, as the README's Python API section documents it
PACKAGE = {
    "BatchllmError", "BudgetReached", "Estimate", "FatalProviderError", "Interrupted", "JobSpec",
    "RunOptions", "RunSummary", "UserError", "__version__", "aestimate", "arun_job", "load_job",
    "query", "run_job",
}  # fmt: skip
#: each subpackage's face
FACES = {
    "batchllm.job": {
        "INPUT_FORMATS", "BatchSpec", "InputSpec", "JobSpec", "LimitsSpec", "ModelSpec",
        "OutputSpec", "PricingSpec", "PromptSpec", "RetrySpec", "SimulateSpec", "load_job",
        "with_mode",
    },
    "batchllm.run": {"arun_job", "run_job"},
    "batchllm.providers": {"DEFAULT_KEY_ENV", "make_adapter"},
    "batchllm.estimate": {"Estimate", "aestimate", "estimate_text"},
    "batchllm.simulate": {
        "FAULT_KINDS", "Fault", "SimConfig", "SimServer", "count_tokens", "serve_forever",
        "start_server",
    },
}  # fmt: skip


def test_the_package_exports_exactly_its_documented_face() -> None:
    """``batchllm.__all__`` is the documented set, without repeats, and every name resolves."""
    assert set(batchllm.__all__) == PACKAGE
    assert len(batchllm.__all__) == len(set(batchllm.__all__))
    for name in batchllm.__all__:
        assert getattr(batchllm, name) is not None


@pytest.mark.parametrize("module", sorted(FACES))
def test_each_subpackage_exports_exactly_its_face(module: str) -> None:
    """A subpackage's ``__all__`` is its face: the names listed, each resolving to an object."""
    loaded = importlib.import_module(module)
    assert set(loaded.__all__) == FACES[module]
    assert len(loaded.__all__) == len(set(loaded.__all__))
    for name in loaded.__all__:
        assert getattr(loaded, name) is not None


@pytest.mark.parametrize("module", ["batchllm", *sorted(FACES)])
def test_every_exported_callable_says_what_it_does(module: str) -> None:
    """Every exported class and function has a docstring (the API reference is the code)."""
    loaded = importlib.import_module(module)
    for name in loaded.__all__:
        value = getattr(loaded, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{module}.{name} has no docstring"


def test_the_exported_errors_carry_their_exit_codes() -> None:
    """The errors of the face map to the documented exit codes."""
    codes = {
        batchllm.BatchllmError: 1,
        batchllm.UserError: 2,
        batchllm.BudgetReached: 3,
        batchllm.FatalProviderError: 4,
        batchllm.Interrupted: 130,
    }
    for error, code in codes.items():
        assert error.exit_code == code
        assert issubclass(error, batchllm.BatchllmError)


def test_importing_the_package_loads_neither_duckdb_nor_the_simulator() -> None:
    """``import batchllm`` (what a run needs) does not load DuckDB, the simulator or the bench."""
    probe = (
        "import sys, batchllm; "
        "print(sorted(m for m in ('duckdb', 'batchllm.simulate', 'batchllm.bench') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert done.stdout.strip() == "[]"


async def test_the_readme_python_api_works_as_written(tmp_path: Path) -> None:
    """The README's calls, in order: load, run with a limit, query, estimate (simulated)."""
    write_csv(tmp_path / "input.csv", ticket_rows(30))
    data = job_data(None, model={"provider": "simulated", "base_url": None})
    data["simulate"] = {"latency_ms": 0, "jitter_ms": 0}
    job = batchllm.load_job(write_job(tmp_path, data))
    summary = await batchllm.arun_job(job, batchllm.RunOptions(limit=10))
    assert (summary.ok, summary.failed, summary.cost_usd > 0) == (10, 0, True)
    table = batchllm.query(job, "select status, count(*) as n from results group by 1")
    assert table.to_pylist() == [{"status": "ok", "n": 10}]
    found = await batchllm.aestimate(job, sample=5)
    assert isinstance(found, batchllm.Estimate)
    assert (found.rows, found.rows_to_do, found.pilot_rows) == (30, 20, 5)
