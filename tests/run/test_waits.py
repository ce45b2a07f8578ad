"""Waits a provider asks for, headers and replies it sends: none holds, ends or loses a run."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import batchllm
from batchllm.errors import JobFileError
from batchllm.limits import LocalLimiter, LoopClock
from batchllm.providers.base import RateLimitInfo
from batchllm.run.context import Seams
from batchllm.run.pipeline import JobRun, RunOptions, arun_job
from batchllm.simulate import Fault, SimServer
from conftest import Start, job_data, ticket_rows, write_csv, write_job

#: a run that would wait for what a hostile header asked fails the test instead of hanging
DEADLINE_S = 60


def _job(tmp_path: Path, sim: SimServer, rows: int, **sections: dict) -> batchllm.JobSpec:
    write_csv(tmp_path / "input.csv", ticket_rows(rows))
    return batchllm.load_job(write_job(tmp_path, job_data(sim.url, **sections)))


def _results(job: batchllm.JobSpec) -> list[dict]:
    return batchllm.query(job, "select * from results order by row_key").to_pylist()


@pytest.mark.parametrize("value", ["nan", "inf", "1e999", "-5", "garbage", "1e400"])
async def test_a_hostile_rate_limit_header_keeps_every_reply(
    tmp_path: Path, start: Start, value: str
) -> None:
    """Any value in a rate-limit header leaves the run going and every reply in the results."""
    names = [
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
        "x-ratelimit-api_key-limit-tokens",
        "ratelimit-policy",
    ]
    sim = await start(reply_headers=tuple((name, value) for name in names))
    job = _job(tmp_path, sim, rows=30)
    summary = await asyncio.wait_for(arun_job(job), DEADLINE_S)
    assert (summary.ok, summary.failed) == (30, 0)
    rows = _results(job)
    assert len(rows) == sim.stats()["ok"] == 30
    assert all(r["status"] == "ok" and r["output"] for r in rows)


@pytest.mark.parametrize("wait", [math.nan, math.inf, -3.0])
async def test_an_unreadable_retry_after_falls_back_to_backoff(
    tmp_path: Path, start: Start, wait: float
) -> None:
    """A 429 whose Retry-After is nan, inf or negative is retried after a backoff."""
    sim = await start()
    sim.script([Fault("429", count=2, retry_after_s=wait)])
    job = _job(tmp_path, sim, rows=10)
    summary = await asyncio.wait_for(arun_job(job), DEADLINE_S)
    assert (summary.ok, summary.failed) == (10, 0)
    assert sim.stats()["rate_limited"] == 2


async def test_a_day_long_retry_after_waits_only_max_wait_s_and_says_so(
    tmp_path: Path, start: Start
) -> None:
    """Retry-After: 86400 waits [retry] max_wait_s, logged as a warning with what was asked."""
    sim = await start()
    sim.script([Fault("429", count=1, retry_after_s=86400)])
    job = _job(tmp_path, sim, rows=10, retry={"max_wait_s": 0.05})
    with capture_logs() as logs:
        summary = await asyncio.wait_for(arun_job(job), DEADLINE_S)
    assert (summary.ok, summary.failed) == (10, 0)
    warned = [e for e in logs if e["event"] == "provider.long_wait"]
    assert warned and warned[0]["log_level"] == "warning"
    assert (warned[0]["asked_s"], warned[0]["waiting_s"]) == (86400, 0.05)


async def test_a_provider_that_keeps_asking_for_too_long_stops_the_run(
    tmp_path: Path, start: Start
) -> None:
    """Three answers in a row asking for more than max_wait_s: exit 4, saying when to return."""
    sim = await start()
    sim.script([Fault("429", count=20, retry_after_s=7200)])
    job = _job(tmp_path, sim, rows=10, retry={"max_wait_s": 0.05}, limits={"concurrency": 1})
    with pytest.raises(batchllm.FatalProviderError, match="come back at 20") as caught:
        await asyncio.wait_for(arun_job(job), DEADLINE_S)
    assert caught.value.exit_code == 4
    assert "7,200 s" in str(caught.value) and "max_wait_s = 0.05" in str(caught.value)
    assert sim.stats()["rate_limited"] == 3


def test_max_wait_s_must_be_positive(tmp_path: Path) -> None:
    """[retry] max_wait_s is read from the job file and must be a positive number."""
    write_csv(tmp_path / "input.csv", ticket_rows(1))
    good = batchllm.load_job(write_job(tmp_path, job_data(None, retry={"max_wait_s": 30})))
    assert good.retry.max_wait_s == 30.0
    assert batchllm.load_job(write_job(tmp_path, job_data(None))).retry.max_wait_s == 600.0
    with pytest.raises(JobFileError, match="max_wait_s"):
        batchllm.load_job(write_job(tmp_path, job_data(None, retry={"max_wait_s": -1})))


class _BrokenLimiter(LocalLimiter):
    """A limiter of another kind whose observe() fails once, after a reply has come."""

    def __init__(self) -> None:
        super().__init__(None, None, LoopClock())
        self.calls = 0

    def observe(self, info: RateLimitInfo) -> None:
        self.calls += 1
        if self.calls == 3:
            raise OverflowError("cannot convert float infinity to integer")
        super().observe(info)


async def test_an_unexpected_exception_fails_its_row_and_keeps_the_reply(
    tmp_path: Path, start: Start
) -> None:
    """An exception nothing foresaw fails one row with the error, its reply and usage kept."""
    sim = await start()
    job = _job(tmp_path, sim, rows=12, limits={"concurrency": 1})
    run = JobRun(job, RunOptions(), seams=Seams(limiter=_BrokenLimiter()))
    summary = await asyncio.wait_for(run.execute(), DEADLINE_S)
    assert (summary.ok, summary.failed) == (11, 1)
    rows = _results(job)
    assert len(rows) == sim.stats()["ok"] == 12
    broken = next(r for r in rows if r["status"] == "failed")
    assert broken["error_type"] == "internal_error"
    assert "OverflowError" in broken["error"]
    assert broken["output"] and broken["input_tokens"] > 0 and broken["cost_usd"] > 0
    spent = sum(r["cost_usd"] for r in rows)
    assert summary.cost_usd == pytest.approx(spent)


async def test_replies_without_text_are_retried_and_their_usage_is_kept(
    tmp_path: Path, start: Start
) -> None:
    """200s with null content are retried; what they cost stays on the row, ok or failed."""
    sim = await start()
    sim.script([Fault("empty", count=4), Fault("empty", count=1, after=1)])
    params = {"params": {"max_tokens": 300}}  # no reply is cut: "length" would explain no text
    job = _job(tmp_path, sim, rows=4, limits={"concurrency": 1}, model=params)
    summary = await asyncio.wait_for(arun_job(job), DEADLINE_S)
    rows = _results(job)
    assert (summary.ok, summary.failed) == (3, 1)
    failed = next(r for r in rows if r["status"] == "failed")
    assert (failed["error_type"], failed["attempts"]) == ("bad_reply", 4)
    assert "no content and no reason" in failed["error"]
    assert failed["input_tokens"] > 0 and failed["cost_usd"] > 0
    assert sorted(r["attempts"] for r in rows if r["status"] == "ok") == [1, 1, 2]
    assert all(r["output"] for r in rows if r["status"] == "ok")
    stats = sim.stats()
    assert sum(r["input_tokens"] for r in rows) == stats["prompt_tokens"]
    assert sum(r["output_tokens"] for r in rows) == stats["completion_tokens"]
    assert summary.cost_usd == pytest.approx(sum(r["cost_usd"] for r in rows))
