"""Real processes: a run killed with SIGKILL or stopped with SIGINT, then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import batchllm
from conftest import job_data, sim_stats, ticket_rows, write_csv, write_job

CONCURRENCY = 8


def _start_run(job: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchllm", "--log-format", "json", "run", str(job)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(base_url: str, ok: int) -> None:
    deadline = time.monotonic() + 60
    while sim_stats(base_url)["ok"] < ok:
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)


def _job(tmp_path: Path, base_url: str, rows: int) -> Path:
    write_csv(tmp_path / "input.csv", ticket_rows(rows))
    return write_job(tmp_path, job_data(base_url, limits={"concurrency": CONCURRENCY}))


def test_sigkill_mid_run_then_resume_loses_nothing(tmp_path: Path, sim_process: str) -> None:
    """After kill -9, the re-run finishes every row once, re-sending only what was in flight."""
    job = _job(tmp_path, sim_process, rows=600)
    proc = _start_run(job)
    _wait_for(sim_process, ok=150)
    proc.kill()
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    resumed = subprocess.run(
        [sys.executable, "-m", "batchllm", "run", str(job)], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    counts = batchllm.query(
        job, "select count(*) as n, count(distinct row_key) as k, min(status) as s from results"
    )
    assert counts.to_pylist() == [{"n": 600, "k": 600, "s": "ok"}]
    stats = sim_stats(sim_process)
    assert stats["duplicates"] <= CONCURRENCY
    assert stats["ok"] == 600 + stats["duplicates"]


def test_sigint_finishes_in_flight_requests_and_exits_130(tmp_path: Path, sim_process: str) -> None:
    """Ctrl-C saves what is in flight and exits 130; the resume pays for nothing twice."""
    job = _job(tmp_path, sim_process, rows=600)
    proc = _start_run(job)
    _wait_for(sim_process, ok=100)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "run the same command again to resume" in err.strip().splitlines()[-1]
    resumed = subprocess.run(
        [sys.executable, "-m", "batchllm", "run", str(job)], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert batchllm.query(job, "select count(*) as n from results").to_pylist() == [{"n": 600}]
    assert sim_stats(sim_process)["duplicates"] == 0


def test_leftover_journal_becomes_a_part_on_the_next_run(tmp_path: Path, sim_process: str) -> None:
    """Outcomes only in the journal at a crash are kept; a torn last line is dropped."""
    job = _job(tmp_path, sim_process, rows=30)
    assert subprocess.run([sys.executable, "-m", "batchllm", "run", str(job)]).returncode == 0
    run_dir = tmp_path / "run"
    parts = sorted((run_dir / "results").glob("*.parquet"))
    rows = batchllm.query(job, "select * exclude (finished_at) from all_results").to_pylist()
    for part in parts:
        part.unlink()
    journal = run_dir / "journal" / "20990101T000000.000000Z-00001.jsonl"
    lines = [json.dumps({**r, "finished_at": 1}) for r in rows[:20]]
    journal.write_text("\n".join(lines) + '\n{"row_key": "torn', encoding="utf-8")
    before = sim_stats(sim_process)["requests"]
    resumed = subprocess.run(
        [sys.executable, "-m", "batchllm", "run", str(job)], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert sim_stats(sim_process)["requests"] - before == 10
    assert not list((run_dir / "journal").glob("*.jsonl"))
    assert batchllm.query(job, "select count(*) as n from results").to_pylist() == [{"n": 30}]
    os.sync()


def test_a_killed_run_is_recorded_as_interrupted_with_its_real_counts(
    tmp_path: Path, sim_process: str
) -> None:
    """After kill -9 the next open marks the killed run ``interrupted`` with the counts and cost
    of the outcomes it saved, and removes temp files a kill left behind."""
    job = _job(tmp_path, sim_process, rows=600)
    proc = _start_run(job)
    _wait_for(sim_process, ok=150)
    proc.kill()
    proc.communicate(timeout=10)
    orphan = tmp_path / "run" / "results" / "part-x-00001.parquet.tmp"
    orphan.write_bytes(b"half a part")
    resumed = subprocess.run(
        [sys.executable, "-m", "batchllm", "run", str(job)], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert not orphan.exists()
    runs = batchllm.query(
        job, "select run_id, status, ok, failed, sent, cost_usd, ended_at from runs order by run_id"
    ).to_pylist()
    killed = runs[0]
    assert [run["status"] for run in runs] == ["interrupted", "finished"]
    saved = batchllm.query(
        job,
        "select count(*) as ok, sum(cost_usd) as cost from all_results "
        f"where run_id = '{killed['run_id']}' and status = 'ok'",
    ).to_pylist()[0]
    # the simulator counts a reply when it sends it: a few may still be on the wire at the kill
    assert killed["ok"] == saved["ok"] > 0
    assert killed["sent"] == killed["ok"] and killed["failed"] == 0
    assert abs(killed["cost_usd"] - saved["cost"]) < 1e-9 and killed["cost_usd"] > 0
    assert killed["ended_at"] is not None


def test_sigterm_during_the_end_of_run_merge_exits_130_and_leaves_no_temp_file(
    tmp_path: Path,
) -> None:
    """A SIGTERM while the run's small parts are merged lets the merge end cleanly: exit 130,
    no ``.tmp`` part left, every row in the results once."""
    sim = subprocess.Popen(
        [sys.executable, "-m", "batchllm", "simulate", "--port", "0", "--latency-ms", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sim.stdout is not None
    base_url = sim.stdout.readline().strip().rsplit(" ", 1)[-1]
    try:
        write_csv(tmp_path / "input.csv", ticket_rows(600))
        job = write_job(tmp_path, job_data(base_url, limits={"concurrency": 16}))
        env = {**os.environ, "BATCHLLM_PART_SECONDS": "0.000001"}  # a part per outcome
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchllm", "--log-format", "json", "run", str(job)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        results = tmp_path / "run" / "results"
        deadline = time.monotonic() + 120
        while not list(results.glob("part-*-*-*.parquet.tmp")):  # the merged part being written
            assert proc.poll() is None and time.monotonic() < deadline, "no merge seen"
            time.sleep(0.001)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        assert not list(results.glob("*.tmp")) and not (tmp_path / "run" / "merge.json").exists()
        counts = batchllm.query(
            job, "select count(*) as n, count(distinct row_key) as k from results"
        )
        assert counts.to_pylist() == [{"n": 600, "k": 600}]
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.communicate(timeout=10)
