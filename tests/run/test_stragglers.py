"""Stragglers: at the end of a run, a request far slower than the rest is resent, not waited on."""

from __future__ import annotations

from pathlib import Path

import batchllm
from batchllm.report import build_report, report_text
from batchllm.run.pipeline import arun_job
from batchllm.simulate import Fault, SimServer
from batchllm.stragglers import MIN_REPLIES, Stragglers
from conftest import job_data, ticket_rows, write_csv, write_job


def _job(
    tmp_path: Path, sim: SimServer, rows: int, concurrency: int = 4, **retry: object
) -> batchllm.JobSpec:
    write_csv(tmp_path / "input.csv", ticket_rows(rows))
    sections = {"limits": {"concurrency": concurrency}, "retry": {"timeout_s": 2, **retry}}
    return batchllm.load_job(write_job(tmp_path, job_data(sim.url, **sections)))


def _retried(job: batchllm.JobSpec) -> list[dict]:
    """The rows that took more than one request, with how many and how long."""
    sql = "select status, attempts, latency_ms from results where attempts > 1"
    return batchllm.query(job, sql).to_pylist()


def _resent(job: batchllm.JobSpec) -> int:
    return batchllm.query(job, "select stragglers_resent as n from runs").to_pylist()[0]["n"]


async def test_a_request_hung_at_the_end_is_resent_before_its_timeout(
    tmp_path: Path, sim: SimServer
) -> None:
    """A hung request among the last rows is resent as a straggler (after its 1 s floor), not
    left to its 2 s timeout."""
    sim.script([Fault("hang", after=97)])
    job = _job(tmp_path, sim, rows=100)
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (100, 0)
    [row] = _retried(job)
    assert row["attempts"] == 2
    assert row["latency_ms"] >= 1000  # given up no sooner than the 1 s floor
    assert _resent(job) == 1  # as a straggler, not after its 2 s timeout (that is no resend)
    assert "stragglers resent: 1" in report_text(build_report(job))
    stats = sim.stats()
    assert (stats["requests"], stats["hangs"], stats["duplicates"]) == (101, 1, 0)


async def test_with_resend_off_a_hung_request_waits_its_timeout(
    tmp_path: Path, sim: SimServer
) -> None:
    """resend_stragglers = false: the same hung request waits the whole timeout_s."""
    sim.script([Fault("hang", after=97)])
    job = _job(tmp_path, sim, rows=100, resend_stragglers=False)
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (100, 0)
    [row] = _retried(job)
    assert row["attempts"] == 2 and row["latency_ms"] >= 2000
    assert _resent(job) == 0


async def test_a_straggler_is_resent_once_a_row(tmp_path: Path, sim: SimServer) -> None:
    """When the resent copy hangs too, it waits its full timeout: a row is never cut twice."""
    sim.script([Fault("hang", after=97), Fault("hang", after=2)])  # #98, then its resend #101
    job = _job(tmp_path, sim, rows=100)
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (100, 0)
    [row] = _retried(job)
    assert row["attempts"] == 3
    assert row["latency_ms"] >= 1000 + 2000
    assert _resent(job) == 1


async def test_a_request_hung_while_rows_wait_is_not_cut_early(
    tmp_path: Path, sim: SimServer
) -> None:
    """Before every row is handed out, a hung request waits its timeout like any other."""
    sim.script([Fault("hang", after=MIN_REPLIES + 10)])
    job = _job(tmp_path, sim, rows=MIN_REPLIES + 40, concurrency=1)
    summary = await arun_job(job)
    assert summary.ok == MIN_REPLIES + 40
    [row] = _retried(job)
    assert row["attempts"] == 2 and row["latency_ms"] >= 2000
    assert _resent(job) == 0


async def test_the_last_attempt_is_never_cut(tmp_path: Path, sim: SimServer) -> None:
    """With one attempt a row has no second chance: its request waits the timeout and fails."""
    sim.script([Fault("hang", after=97)])
    job = _job(tmp_path, sim, rows=100, max_attempts=1)
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (99, 1)
    failed = batchllm.query(job, "select error_type, error from results where status = 'failed'")
    assert failed.to_pylist() == [{"error_type": "timeout", "error": "no reply within 2 s"}]
    assert _resent(job) == 0


def test_the_cut_is_three_p99s_with_a_floor_and_needs_enough_replies() -> None:
    """No cut before MIN_REPLIES replies; then 3x the p99 (1 s at least), none past timeout_s."""
    stragglers = Stragglers(timeout_s=5.0)
    for _ in range(MIN_REPLIES - 1):
        stragglers.replied(0.5)
    assert stragglers.cut_after_s() is None
    stragglers.replied(0.5)
    assert stragglers.cut_after_s() == 1.5
    fast = Stragglers(timeout_s=5.0)
    for seconds in [0.1] * 99 + [30.0]:  # one outlier above the p99 does not move it
        fast.replied(seconds)
    assert fast.cut_after_s() == 1.0
    slow = Stragglers(timeout_s=5.0)
    for _ in range(MIN_REPLIES):
        slow.replied(2.0)
    assert slow.cut_after_s() is None  # 6 s would be later than the timeout itself
