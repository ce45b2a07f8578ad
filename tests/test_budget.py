"""The cost cap: reserved before sending, never passed, a clean stop with exit 3."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

import batchllm
from batchllm.budget import LocalBudget, OverBudget
from batchllm.cli import main
from batchllm.pricing import Price
from batchllm.run.pipeline import RunOptions, arun_job
from batchllm.simulate import SimConfig, SimServer
from conftest import job_data, ticket_rows, write_csv, write_job

PRICE = Price(0.15, 0.60, 0.075, 0.1875, "test")
SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["bug", "billing", "other"]}},
    "required": ["label"],
}


def _sim_spend(server: SimServer) -> float:
    stats = server.stats()
    return (stats["prompt_tokens"] * 0.15 + stats["completion_tokens"] * 0.60) / 1e6


async def test_reservations_wait_for_settlement_then_stop_for_good() -> None:
    """Reservations fill the cap, a waiter gets in when one settles cheap, and stops when spent."""
    budget = LocalBudget(0.001, PRICE)
    worst = budget.worst_case(100, 200)
    holds = [await budget.reserve(100, 200) for _ in range(int(0.001 // worst))]
    waiter = asyncio.ensure_future(budget.reserve(100, 200))
    await asyncio.sleep(0)
    assert not waiter.done()
    budget.settle(holds.pop(), worst / 4)
    holds.append(await waiter)
    assert budget.spent_usd == pytest.approx(worst / 4)
    for hold in holds:
        budget.settle(hold, worst)
    with pytest.raises(OverBudget):
        await budget.reserve(100, 200)
    assert budget.exhausted
    assert budget.spent_usd + budget.reserved_usd <= 0.001


async def test_spend_never_passes_the_cap_with_concurrency_faults_and_repairs(
    tmp_path: Path, sims
) -> None:
    """64 requests in flight, 5xx and broken replies re-asked: the spend stays under the cap."""
    server = sims.start(
        SimConfig(latency_ms=5, jitter_ms=5, error_rate=0.1, malformed_rate=0.3, seed=7)
    )
    write_csv(tmp_path / "input.csv", ticket_rows(400))
    data = job_data(
        server.url,
        limits={"concurrency": 64, "max_cost_usd": 0.002},
        output={"schema": SCHEMA, "max_repairs": 2},
    )
    job = batchllm.load_job(write_job(tmp_path, data))
    with pytest.raises(batchllm.BudgetReached, match="rows are still to do") as caught:
        await arun_job(job)
    assert "of 400 rows" in str(caught.value)
    spent = batchllm.query(job, "select sum(cost_usd) as s, count(*) as n from all_results")
    row = spent.to_pylist()[0]
    assert 0.0015 < row["s"] <= 0.002
    assert _sim_spend(server) <= 0.002
    assert row["s"] == pytest.approx(_sim_spend(server))
    assert 0 < row["n"] < 400


def test_budget_stop_exits_3_and_the_next_run_continues(tmp_path: Path, sim: SimServer) -> None:
    """Exit 3 with one line saying what was spent; re-run with a larger cap finishes the rest."""
    write_csv(tmp_path / "input.csv", ticket_rows(120))
    job = write_job(tmp_path, job_data(sim.url))
    result = CliRunner().invoke(main, ["run", "--max-cost", "0.0008", str(job)])
    assert result.exit_code == 3
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: budget reached: spent $0.0")
    assert "--max-cost" in last
    done = batchllm.query(job, "select count(*) as n from results").to_pylist()[0]["n"]
    assert 0 < done < 120
    again = CliRunner().invoke(main, ["run", "--max-cost", "1", str(job)])
    assert again.exit_code == 0, again.stderr
    assert f"{done:,} already done" in again.stdout
    assert sim.stats()["duplicates"] == 0
    runs = CliRunner().invoke(
        main, ["query", "--format", "json", str(job), "select status from runs order by run_id"]
    )
    assert [r["status"] for r in json.loads(runs.stdout)] == ["budget", "finished"]


async def test_a_cap_without_max_tokens_is_refused(tmp_path: Path, sim: SimServer) -> None:
    """With no max_tokens the worst case is unbounded, so a cap is a job error."""
    write_csv(tmp_path / "input.csv", ticket_rows(3))
    data = job_data(sim.url, model={"params": {"temperature": 0}})
    data["model"]["params"] = {"temperature": 0}
    job = batchllm.load_job(write_job(tmp_path, data))
    with pytest.raises(batchllm.UserError, match="a cost cap needs"):
        await arun_job(job, RunOptions(max_cost_usd=1.0))
    assert sim.stats()["requests"] == 0


def _dense_rows(count: int) -> list[dict[str, str]]:
    """Digit lists: about one token a byte, four times what the byte estimate assumes."""
    draw = random.Random(5)
    return [
        {"id": f"D{i:04d}", "text": ",".join(str(draw.randrange(10)) for _ in range(1500))}
        for i in range(count)
    ]


async def test_the_cap_holds_on_dense_text(tmp_path: Path, start) -> None:
    """Digit lists tokenize at a token a byte: the spend still stays within a small cap."""
    server = await start(latency_ms=5.0, jitter_ms=5.0)
    write_csv(tmp_path / "input.csv", _dense_rows(60))
    data = job_data(server.url, limits={"concurrency": 8, "max_cost_usd": 0.004})
    job = batchllm.load_job(write_job(tmp_path, data))
    with pytest.raises(batchllm.BudgetReached):
        await arun_job(job)
    spent = batchllm.query(job, "select sum(cost_usd) as s, max(input_tokens) as t from results")
    row = spent.to_pylist()[0]
    assert row["t"] > 2500  # ~3,000 tokens from ~3,000 bytes: the dense case
    assert 0.002 < row["s"] <= 0.004
    assert _sim_spend(server) <= 0.004


async def test_a_reported_count_above_the_byte_bound_raises_the_next_holds() -> None:
    """A provider that reports more input than one token a byte raises later worst cases."""
    budget = LocalBudget(1.0, PRICE)
    before = budget.worst_case(100, 0)
    assert budget.worst_input(100) == 400  # one token a byte: 4 per estimated token
    hold = await budget.reserve(100, 0)
    hold.input_tokens = 600  # a native schema counted as input, say
    budget.settle(hold, 0.0)
    assert budget.worst_input(100) == 660
    assert budget.worst_case(100, 0) > before
