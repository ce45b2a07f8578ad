"""The row a batch plan sends online at once to learn the online rate: booked like any online
row, so an identical request later in the input shares its reply and never goes into a batch,
in one run and after a kill -9 (the simulator bills each distinct request once)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

import batchllm
from batchllm.plan.setup import with_deadline
from batchllm.providers import DEFAULT_KEY_ENV
from batchllm.simulate import SimConfig, SimServer
from conftest import REPO, SimThread, job_data, ticket_rows, write_csv, write_job

KEY = "sim-sample-key-000001"
FAST = {"latency_ms": 1, "jitter_ms": 0, "api_key": KEY}
ROWS = 12


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().isoformat()


def _job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim: SimServer) -> batchllm.JobSpec:
    """ROWS distinct requests, then the first row's request again under another id; limits
    given, so the batch plan sends its first row online at once."""
    monkeypatch.setenv(DEFAULT_KEY_ENV["openai"], KEY)
    rows = ticket_rows(ROWS)
    write_csv(tmp_path / "input.csv", [*rows, {"id": "AGAIN", "text": rows[0]["text"]}])
    data = job_data(
        None,
        model={"provider": "openai", "name": "gpt-4o-mini", "base_url": sim.root + "/v1"},
        batch={"poll_s": 0.05, "max_poll_s": 0.2},
        limits={"concurrency": 8, "rpm": 240},
        plan={"deadline": _iso(time.time() + 3600), "reserve_s": 1.0},
    )
    return batchllm.load_job(write_job(tmp_path, data))


def _every_row_once(job: batchllm.JobSpec) -> None:
    every = batchllm.query(job, "select status, count(*) as n from all_results group by 1")
    assert every.to_pylist() == [{"status": "ok", "n": ROWS + 1}]


def _book(job: batchllm.JobSpec) -> list[dict[str, Any]]:
    path = job.output_dir / "batches" / "book.json"
    return list(orjson.loads(path.read_bytes()).values()) if path.exists() else []


async def test_a_request_identical_to_the_sampled_row_shares_its_reply_and_is_not_batched(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sampled row's request again at the end of the input: billed once, kept out of the
    batch (which holds the other requests only), both rows ok."""
    sim = sims.start(SimConfig(**FAST, batch_delay_s=0.1))
    job = _job(tmp_path, monkeypatch, sim)
    summary = await batchllm.arun_job(job)
    assert (summary.ok, summary.failed) == (ROWS + 1, 0)
    stats = sim.stats()
    assert (stats["batches"], stats["batch_requests"], stats["ok"], stats["duplicates"]) == (
        1, ROWS - 1, ROWS, 0)  # fmt: skip
    _every_row_once(job)


def _sampled_and_batched(job: batchllm.JobSpec, sim: SimServer) -> bool:
    """The sample answered and the batch submitted; then a pause, so the sample is saved."""
    if sim.stats()["ok"] < 1 or not any("batch_id" in e for e in _book(job)):
        return False
    time.sleep(0.2)
    return True


def test_killed_after_the_sample_every_row_is_saved_once_and_paid_once(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 once the sample is answered and the batch is out; run again (the deadline now
    past): the identical request takes the stored reply, every row once, none billed twice."""
    sim = sims.start(SimConfig(**FAST, batch_delay_s=20.0))
    job = _job(tmp_path, monkeypatch, sim)
    log = job.path.with_suffix(".log")
    command = [sys.executable, "-m", "batchllm", "-q", "run", str(job.path)]
    with log.open("wb") as err, subprocess.Popen(command, cwd=REPO, stderr=err) as run:
        limit = time.monotonic() + 30
        while not _sampled_and_batched(job, sim):  # a bounded poll: the run is another process
            assert run.poll() is None, f"the run ended too soon: {log.read_text()}"
            assert time.monotonic() < limit, "the run did not get there within 30 s"
            time.sleep(0.01)
        run.send_signal(signal.SIGKILL)
    again = with_deadline(job, _iso(time.time()), soft=True)
    assert batchllm.run_job(again).failed == 0
    _every_row_once(job)
    stats = sim.stats()
    assert (stats["batches"], stats["batch_requests"], stats["ok"], stats["duplicates"]) == (
        1, ROWS - 1, ROWS, 0)  # fmt: skip
