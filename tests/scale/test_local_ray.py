"""A driver given no Ray address starts a lean local Ray of its own, runs the job on it, and
takes it down when it ends (a real ``batchllm run`` against a simulated provider)."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from batchllm.job import JobSpec, load_job
from batchllm.query import query
from batchllm.simulate import SimConfig
from conftest import SimThread, job_data, ticket_rows, write_csv, write_job

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

#: what ray.init starts and a run does not use: the log monitor, the autoscaler's monitor, the
#: dashboard's API server
_LEFT_OUT = ("log_monitor.py", "autoscaler/_private/monitor.py", "dashboard/dashboard.py")


def _job(directory: Path, url: str, rows: int) -> JobSpec:
    write_csv(directory / "input.csv", ticket_rows(rows))
    data = job_data(
        url,
        limits={"rpm": 1200, "concurrency": 8},
        run={"backend": "ray", "shards": 2, "shard_cpus": 0.5},
    )
    return load_job(write_job(directory, data))


def _tree(pid: int) -> dict[int, str]:
    """Every descendant of ``pid`` with its command line."""
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for path in glob.glob(f"/proc/{todo.pop()}/task/*/children"):
            try:
                children = [int(c) for c in Path(path).read_text().split()]
            except OSError:
                continue
            for child in children:
                try:
                    found[child] = Path(f"/proc/{child}/cmdline").read_bytes().decode()
                except OSError:
                    continue
                todo.append(child)
    return found


def _saved(job: JobSpec) -> int:
    return sum(p.read_bytes().count(b"\n") for p in job.output_dir.glob("shards/*/journal/*"))


def _wait_for(check: object, seconds: float = 90.0, what: object = str) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out: {what()}"  # type: ignore[operator]
        time.sleep(0.1)


def _gone(pid: int) -> bool:
    """Whether the process has ended (a zombie its parent has not reaped yet has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def _left(tree: dict[int, str]) -> list[str]:
    return [cmd[:80] for pid, cmd in tree.items() if not _gone(pid)]


@pytest.mark.parametrize("kill", [False, True])
def test_own_ray_is_lean_and_ends_with_its_driver(
    tmp_path: Path, sims: SimThread, kill: bool
) -> None:
    """No log monitor, autoscaler monitor or dashboard server; the job runs on the GCS, raylet
    and workers; that Ray ends with the driver, also a SIGKILLed one (whose run the same
    command then finishes, every row once)."""
    sim = sims.start(SimConfig(latency_ms=5, jitter_ms=2))
    job = _job(tmp_path, sim.url, 240)
    command = [sys.executable, "-m", "batchllm", "-q", "run", str(job.path)]
    driver = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _saved(job) >= 30)
    tree = _tree(driver.pid)
    assert any("gcs_server" in cmd for cmd in tree.values())
    assert not [cmd for cmd in tree.values() for name in _LEFT_OUT if name in cmd]
    if kill:
        driver.send_signal(signal.SIGKILL)
    _, stderr = driver.communicate(timeout=180)
    assert driver.returncode == (-signal.SIGKILL if kill else 0), stderr
    # Ray's two agents outlive a SIGKILLed driver (as with ray.init), the rest ends with it
    ends = {pid: cmd for pid, cmd in tree.items() if not (kill and "Agent" in cmd)}
    try:
        _wait_for(lambda: all(_gone(pid) for pid in ends), 60.0, lambda: _left(ends))
    finally:
        for pid in set(tree) - set(ends):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if kill:
        pids = [orjson.loads(p.read_bytes())["pid"] for p in job.output_dir.glob("shards/*/a*")]
        assert all(pid in tree for pid in pids)  # the shards' workers were that Ray's, now gone
        finished = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
        assert finished.returncode == 0, finished.stderr
    counts = query(job, "select count(*) n, count(distinct row_key) k from results").to_pylist()
    assert counts == [{"n": 240, "k": 240}]


def test_ray_address_in_the_environment_is_joined(tmp_path: Path, sims: SimThread) -> None:
    """With RAY_ADDRESS set and no address in the job, the driver joins that Ray (as ray.init
    would) and starts none of its own."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        sim = sims.start(SimConfig(latency_ms=5, jitter_ms=2))
        job = _job(tmp_path, sim.url, 120)
        env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
        command = [sys.executable, "-m", "batchllm", "-q", "run", str(job.path)]
        driver = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: _saved(job) >= 20)
        assert not any("gcs_server" in cmd for cmd in _tree(driver.pid).values())
        _, stderr = driver.communicate(timeout=180)
        assert driver.returncode == 0, stderr
    finally:
        if started:
            ray.shutdown()
    counts = query(job, "select count(*) n, count(distinct row_key) k from results").to_pylist()
    assert counts == [{"n": 120, "k": 120}]
