"""The run's seams: parts passed in instead of the in-process ones, and the values shared by
online and batch runs (one bucket, one outcome builder, one run record)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import batchllm
from batchllm.bucket import Bucket
from batchllm.budget import Hold, OverBudget
from batchllm.limits import Grant
from batchllm.outcome import Outcomes
from batchllm.pricing import Price
from batchllm.providers.base import Completion, RateLimitInfo, Usage
from batchllm.render import Request
from batchllm.run.context import Seams
from batchllm.run.pipeline import JobRun, RunOptions
from batchllm.run.record import RunRecord
from batchllm.simulate import Fault, SimServer
from conftest import job_data, ticket_rows, write_csv, write_job


class CountingLimiter:
    """A limiter of another kind: admits at once, counts what crosses the seam."""

    def __init__(self) -> None:
        self.reserved = 0
        self.settled = 0
        self.observed = 0
        self.limited = 0
        self.used_tokens = 0

    async def reserve(self, requests: int, tokens: int) -> Grant:
        self.reserved += requests
        return Grant(requests, tokens)

    def settle(self, grant: Grant, used_tokens: int) -> None:
        self.settled += 1
        self.used_tokens += used_tokens

    def observe(self, info: RateLimitInfo) -> None:
        self.observed += 1

    def rate_limited(self, retry_after_s: float | None) -> None:
        self.limited += 1

    @property
    def paused_s(self) -> float:
        return 1.5 * self.limited

    @property
    def rate_limited_count(self) -> int:
        return self.limited


class CappedBudget:
    """A budget of another kind: admits a fixed number of requests, then refuses."""

    def __init__(self, requests: int) -> None:
        self.left = requests
        self.spent = 0.0

    async def reserve(self, est_input_tokens: int, max_tokens: int) -> Hold:
        if self.left == 0:
            raise OverBudget
        self.left -= 1
        return Hold(0.0)

    def settle(self, hold: Hold, cost_usd: float) -> None:
        self.spent += cost_usd

    @property
    def cap_usd(self) -> float | None:
        return 1.0

    @property
    def spent_usd(self) -> float:
        return self.spent

    @property
    def exhausted(self) -> bool:
        return self.left == 0


def _job(tmp_path: Path, sim: SimServer, rows: int, **sections: dict) -> batchllm.JobSpec:
    write_csv(tmp_path / "input.csv", ticket_rows(rows))
    return batchllm.load_job(write_job(tmp_path, job_data(sim.url, **sections)))


async def test_a_run_uses_the_limiter_it_is_given(tmp_path: Path, sim: SimServer) -> None:
    """Every request goes through a limiter passed in, whose 429 count the run record keeps."""
    sim.script([Fault("429", count=2, retry_after_s=0.01)])
    job = _job(tmp_path, sim, rows=20, limits={"concurrency": 4})
    limiter = CountingLimiter()
    summary = await JobRun(job, RunOptions(), seams=Seams(limiter=limiter)).execute()
    assert (summary.ok, summary.failed) == (20, 0)
    assert limiter.reserved == limiter.settled == 22  # 20 rows, two of them sent twice
    assert limiter.limited == 2 and limiter.observed == 22  # every reply's headers, 429s too
    used = batchllm.query(job, "select sum(input_tokens + output_tokens) as t from results")
    assert limiter.used_tokens >= used.to_pylist()[0]["t"] > 0
    runs = batchllm.query(job, "select rate_limited, rate_limit_wait_s from runs").to_pylist()
    assert runs == [{"rate_limited": 2, "rate_limit_wait_s": 3.0}]


async def test_a_run_stops_at_the_budget_it_is_given(tmp_path: Path, sim: SimServer) -> None:
    """A budget passed in decides admission: when it refuses, the run stops as over budget."""
    job = _job(tmp_path, sim, rows=30, limits={"concurrency": 1})
    budget = CappedBudget(requests=5)
    with pytest.raises(batchllm.BudgetReached):
        await JobRun(job, RunOptions(), seams=Seams(budget=budget)).execute()
    done = batchllm.query(job, "select count(*) as n, sum(cost_usd) as usd from results")
    assert done.to_pylist()[0]["n"] == 5
    assert done.to_pylist()[0]["usd"] == pytest.approx(budget.spent)


async def test_the_runs_view_is_the_run_record(tmp_path: Path, sim: SimServer) -> None:
    """The manifest's run entries and the runs view hold exactly RunRecord's fields."""
    job = _job(tmp_path, sim, rows=5)
    summary = await batchllm.arun_job(job, RunOptions(limit=3))
    runs = batchllm.query(job, "select * from runs")
    assert runs.schema == RunRecord.arrow_schema()
    row = runs.to_pylist()[0]
    assert (row["run_id"], row["status"], row["rows"], row["ok"], row["limit"]) == (
        summary.run_id,
        "finished",
        3,
        3,
        3,
    )
    entry = json.loads((job.output_dir / "manifest.json").read_text())["runs"][0]
    assert set(entry) == set(RunRecord.__dataclass_fields__) | {"fingerprint"}
    assert entry["cost_usd"] == pytest.approx(summary.cost_usd)


def test_bucket_debt_and_resize() -> None:
    """The bucket's level goes below zero on a large debit; a resize keeps what it holds."""
    now = [0.0]
    bucket = Bucket(10, 1, lambda: now[0])
    bucket.add(-25)
    assert bucket.level() == -15
    assert bucket.wait_s(5) == pytest.approx(20)
    now[0] = 20.0
    bucket.resize(4, 2)
    assert (bucket.level(), bucket.capacity, bucket.rate) == (4, 4, 2)


def test_a_repaired_batch_reply_keeps_its_batch_price() -> None:
    """One builder prices a batch reply repaired online: first reply at its own cost, re-asks
    at the builder's price, usage and attempts summed over both."""
    price = Price(1.0, 2.0, 0.5, 1.25, "test")
    request = Request("r1", "k1", "m", (("user", "hi"),), {}, 1, None)
    first = Completion("{", "stop", Usage(100, 10), "m", "id-1")
    repair = Completion('{"a": 1}', "stop", Usage(200, 20), "m", "id-2")
    outcome = Outcomes("run", price).answered(
        request, {}, [first, repair], None, attempts=3, first_cost=0.5
    )
    assert (outcome.input_tokens, outcome.output_tokens, outcome.attempts) == (300, 30, 3)
    assert outcome.cost_usd == pytest.approx(0.5 + price.cost(Usage(200, 20)))
    assert outcome.repair_cost_usd == pytest.approx(price.cost(Usage(200, 20)))
    assert (outcome.repairs, outcome.output, outcome.provider_request_id) == (1, '{"a": 1}', "id-2")
