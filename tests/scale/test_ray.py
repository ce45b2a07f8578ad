"""The Ray backend: shards on a local Ray against a simulated provider over loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from batchllm.estimate import aestimate
from batchllm.job import JobSpec, load_job
from batchllm.query import query
from batchllm.report import build_report
from batchllm.simulate import SimConfig, SimServer
from batchllm.tally import RunOptions
from conftest import SimThread, job_data, ticket_rows, write_csv, write_job

ray = pytest.importorskip("ray")

from batchllm.scale.ray_backend import RayPlan, arun_on_ray  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """One local Ray of two CPUs for every test here."""
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield str(context.address_info["gcs_address"])
    ray.shutdown()


def _job(directory: Path, sim: SimServer, rows: int, rpm: int, tpm: int, shards: int) -> JobSpec:
    write_csv(directory / "input.csv", ticket_rows(rows))
    data = job_data(
        sim.url,
        limits={"rpm": rpm, "tpm": tpm, "concurrency": 8},
        run={"backend": "ray", "shards": shards, "shard_cpus": 0.5},
    )
    return load_job(write_job(directory, data))


def _every_row_once(job: JobSpec, rows: int) -> None:
    counts = query(job, "select count(*) n, count(distinct row_key) k from results").to_pylist()
    assert counts == [{"n": rows, "k": rows}]
    statuses = query(job, "select distinct status from results").column("status").to_pylist()
    assert statuses == ["ok"]


def _wait_for(check: object, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _saved(job: JobSpec) -> int:
    """Outcomes the shards have written so far (journal lines and parts' rows)."""
    total = 0
    for journal in job.output_dir.glob("shards/*/journal/*.jsonl"):
        total += journal.read_bytes().count(b"\n")
    return total + len(list(job.output_dir.glob("shards/*/results/part-*.parquet")))


def test_shards_share_one_limit(ray_address: str, tmp_path: Path, sims: SimThread) -> None:
    """Three shards against one provider's RPM and TPM: every row once, the limit held."""
    sim = sims.start(SimConfig(latency_ms=5, jitter_ms=2, rpm=1800, tpm=300_000))
    job = _job(tmp_path, sim, 240, rpm=1800, tpm=300_000, shards=3)
    summary = asyncio.run(arun_on_ray(job, RunOptions(), RayPlan(3, ray_address, 0.5)))
    assert (summary.rows, summary.ok) == (240, 240)
    assert sim.stats()["rate_limited"] <= 2
    assert len(list(tmp_path.glob("run/shards/*/manifest.json"))) == 3
    _every_row_once(job, 240)
    report = build_report(job)  # the report reads every shard, as query does
    assert (report.rows, report.by_status["ok"]) == (240, 240)
    assert sum(run.ok for run in report.runs) == 240
    found = asyncio.run(aestimate(job, sample=0))  # the estimate sees the shards' rows as done
    assert (found.rows, found.rows_to_do) == (240, 0)


def test_rerun_maps_rows_to_the_same_shards(
    ray_address: str, tmp_path: Path, sims: SimThread
) -> None:
    """A second run of a finished sharded job reuses every row and sends nothing."""
    sim = sims.start(SimConfig(latency_ms=1, jitter_ms=0))
    job = _job(tmp_path, sim, 60, rpm=60_000, tpm=10_000_000, shards=2)
    asyncio.run(arun_on_ray(job, RunOptions(), RayPlan(2, ray_address, 0.5)))
    again = asyncio.run(arun_on_ray(job, RunOptions(), RayPlan(2, ray_address, 0.5)))
    assert (again.reused, again.sent) == (60, 0)
    assert sim.stats()["requests"] == 60


def test_killed_shard_worker_is_retried(ray_address: str, tmp_path: Path, sims: SimThread) -> None:
    """SIGKILL of a shard's worker mid-run: Ray runs the shard again, every row lands once."""
    sim = sims.start(SimConfig(latency_ms=5, jitter_ms=2, rpm=1200))
    job = _job(tmp_path, sim, 240, rpm=1200, tpm=10_000_000, shards=2)
    attempt = job.output_dir / "shards" / "000" / "attempt.json"

    async def run_and_kill() -> None:
        running = asyncio.ensure_future(arun_on_ray(job, RunOptions(), RayPlan(2, None, 0.5)))
        await asyncio.to_thread(_wait_for, lambda: attempt.exists() and _saved(job) >= 20)
        os.kill(orjson.loads(attempt.read_bytes())["pid"], signal.SIGKILL)
        await running

    asyncio.run(run_and_kill())
    _every_row_once(job, 240)


def test_killed_driver_resumes(ray_address: str, tmp_path: Path, sims: SimThread) -> None:
    """SIGKILL of the driver mid-run, then the same command again: every row once."""
    sim = sims.start(SimConfig(latency_ms=5, jitter_ms=2, rpm=1200))
    job = _job(tmp_path, sim, 240, rpm=1200, tpm=10_000_000, shards=2)
    command = [sys.executable, "-m", "batchllm", "-q", "run", str(job.path), "--address",
               ray_address]  # fmt: skip
    driver = subprocess.Popen(command, cwd=tmp_path)
    _wait_for(lambda: _saved(job) >= 30)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    pids = [orjson.loads(p.read_bytes())["pid"] for p in tmp_path.glob("run/shards/*/attempt.json")]
    _wait_for(lambda: not any(_alive(pid) for pid in pids))
    finished = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert finished.returncode == 0, finished.stderr
    _every_row_once(job, 240)
    runs = query(job, "select status, ok from runs order by run_number").to_pylist()
    assert [run["status"] for run in runs] == ["interrupted", "finished"]


def test_sigint_stops_the_driver_gracefully(
    ray_address: str, tmp_path: Path, sims: SimThread
) -> None:
    """SIGINT to a real driver mid-run: the shards stop admitting and keep what is in flight,
    exit 130 with one interrupted run recorded; the same command again finishes every row once
    and no request is sent twice."""
    sim = sims.start(SimConfig(latency_ms=5, jitter_ms=2, rpm=1200))
    job = _job(tmp_path, sim, 240, rpm=1200, tpm=10_000_000, shards=2)
    command = [sys.executable, "-m", "batchllm", "-q", "run", str(job.path), "--address",
               ray_address]  # fmt: skip
    driver = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _saved(job) >= 30)
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stderr
    assert "run the same command again" in stderr

    manifest = orjson.loads((job.output_dir / "manifest.json").read_bytes())
    [first] = manifest["runs"]
    saved = query(job, "select count(*) n from results").to_pylist()[0]["n"]
    assert first["status"] == "interrupted" and manifest["shards"] == 2
    assert 30 <= first["ok"] == saved < 240
    assert first["sent"] == sim.stats()["requests"]  # every reply in flight was kept

    finished = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert finished.returncode == 0, finished.stderr
    _every_row_once(job, 240)
    assert sim.stats()["requests"] == 240
    runs = query(job, "select run_number, status, ok, reused from runs order by 1").to_pylist()
    assert [(r["run_number"], r["status"]) for r in runs] == [(1, "interrupted"), (2, "finished")]
    assert runs[0]["ok"] + runs[1]["ok"] == 240 and runs[1]["reused"] == runs[0]["ok"]
    report = build_report(job)
    assert [run.status for run in report.runs] == ["finished", "interrupted"]
    assert report.throughput.rows == runs[1]["ok"]  # the driver's run names its shards' outcomes


def test_shards_share_each_pool_endpoint_s_limits(
    ray_address: str, tmp_path: Path, sims: SimThread
) -> None:
    """Two shards sending to a pool server that enforces 240 RPM: each shard is given half of
    the endpoint's rpm and concurrency, so together they keep to the server's figure (two
    shards each at the whole figure draw 429s) and every row lands once."""
    capped = sims.start(SimConfig(latency_ms=20, jitter_ms=0, rpm=240))
    write_csv(tmp_path / "input.csv", ticket_rows(40))
    data = job_data(None, limits={"concurrency": 8}, run={"backend": "ray", "shards": 2,
                                                          "shard_cpus": 0.5})  # fmt: skip
    path = write_job(tmp_path, data)
    pool = f'[{{ url = "{capped.url}", concurrency = 4, rpm = 240 }}]'
    path.write_text(path.read_text().replace('"http://127.0.0.1:9/v1"', pool))
    job = load_job(path)

    summary = asyncio.run(arun_on_ray(job, RunOptions(), RayPlan(2, ray_address, 0.5)))

    assert summary.ok == 40
    assert capped.stats()["rate_limited"] <= 1  # two buckets started at once: one at the edge
    _every_row_once(job, 40)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
