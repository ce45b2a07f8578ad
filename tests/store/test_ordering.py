"""Which outcome of a row is the latest: decided by a sequence, never by the wall clock."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import batchllm
from batchllm.report import build_report
from batchllm.simulate import Fault, SimServer
from conftest import job_data, ticket_rows, write_csv, write_job

FAKETIME = shutil.which("faketime")


def _run(job: Path, *args: str, clock: str | None = None) -> subprocess.CompletedProcess[str]:
    """A real ``batchllm run`` process, its wall clock shifted by ``clock`` (libfaketime)."""
    command = [sys.executable, "-m", "batchllm", "-q", "run", str(job), *args]
    if clock is not None:
        assert FAKETIME is not None
        command = [FAKETIME, "-f", clock, *command]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=env, check=False
    )


@pytest.mark.skipif(FAKETIME is None, reason="needs libfaketime (.ci/run installs it)")
def test_a_retry_run_with_the_clock_stepped_back_still_wins(tmp_path: Path, sim: SimServer) -> None:
    """A first run fails rows with the clock an hour ahead; a --retry-failed run at the real time
    (an hour "earlier") succeeds: results show it ok, and a third run sends nothing."""
    write_csv(tmp_path / "input.csv", ticket_rows(12))
    data = job_data(sim.url, retry={"max_attempts": 1}, limits={"concurrency": 1})
    job = write_job(tmp_path, data)
    sim.script([Fault("400", count=5)])
    first = _run(job, clock="+1h")
    assert first.returncode == 1, first.stderr
    spec = batchllm.load_job(job)
    failed = "select count(*) as n from results where status = 'failed'"
    assert batchllm.query(spec, failed).to_pylist() == [{"n": 5}]

    second = _run(job, "--retry-failed")
    assert second.returncode == 0, second.stderr
    assert batchllm.query(spec, failed).to_pylist() == [{"n": 0}]
    before = sim.stats()["requests"]
    third = _run(job, "--retry-failed")
    assert third.returncode == 0, third.stderr
    assert sim.stats()["requests"] == before
    runs = batchllm.query(
        spec,
        "select min(seq) as s, min(finished_at) as t from all_results group by run_id order by s",
    ).to_pylist()
    assert len(runs) == 2 and runs[0]["t"] > runs[1]["t"], "the second run's clock read earlier"


async def test_runs_are_numbered_in_the_order_they_ran(tmp_path: Path, sim: SimServer) -> None:
    """Each run gets the next run number of its directory, and each outcome a larger seq than
    every outcome of the runs before it."""
    write_csv(tmp_path / "input.csv", ticket_rows(6))
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    await batchllm.arun_job(job)
    await batchllm.arun_job(job, batchllm.RunOptions(fresh=True))
    runs = batchllm.query(
        job,
        "select run_id, min(seq) as lo, max(seq) as hi, count(*) as n "
        "from all_results group by 1 order by lo",
    ).to_pylist()
    assert [run["n"] for run in runs] == [6, 6]
    assert runs[0]["hi"] < runs[1]["lo"]
    assert runs[1]["hi"] - runs[1]["lo"] == 5


@pytest.mark.parametrize("name", ["runs[1]", "a*b", "what?", "x{1,2}", "it's"])
async def test_a_run_directory_named_with_glob_characters_is_queried(
    tmp_path: Path, sim: SimServer, name: str
) -> None:
    """A run directory whose name has [, ], *, ?, braces or a quote answers query and report."""
    write_csv(tmp_path / "input.csv", ticket_rows(4))
    data = job_data(sim.url, output={"dir": name})
    job = batchllm.load_job(write_job(tmp_path, data))
    await batchllm.arun_job(job)
    got = batchllm.query(job, "select count(*) as n from results").to_pylist()
    assert got == [{"n": 4}]
    assert build_report(job).rows == 4
