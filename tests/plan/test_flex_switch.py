"""Rows a stalled batch hands back at the switch point, for a job asking for OpenAI's flex tier,
against the simulator over loopback: at flex first when the time left allows it (the batch
answered about half), at the standard tier at once when it does not; the deadline holds and no
row is billed twice either way."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import batchllm
from batchllm.job import ModelSpec
from batchllm.plan.capacity import Learner
from batchllm.plan.planner import Limits, Situation, flex_until, make_plan
from batchllm.pricing import tier_price
from batchllm.providers import DEFAULT_KEY_ENV
from batchllm.providers.base import Usage
from batchllm.simulate import SimConfig, SimServer
from conftest import SimThread, job_data, run_by, ticket_rows, write_csv, write_job

KEY = "sim-flex-switch-key-001"
FAST = {"latency_ms": 1, "jitter_ms": 0, "api_key": KEY}
ROWS = 20
#: a switch point 15 - 5 x 1.5 - 1 = 6.5 s in (20 rows at 4 rows/s: 5 s online)
DEADLINE_S = 15.0
NOW = 1_800_000_000.0


def _job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim: SimServer) -> batchllm.JobSpec:
    monkeypatch.setenv(DEFAULT_KEY_ENV["openai"], KEY)
    write_csv(tmp_path / "input.csv", ticket_rows(ROWS))
    deadline = datetime.fromtimestamp(time.time() + DEADLINE_S).astimezone().isoformat()
    data = job_data(
        None,
        model={
            "provider": "openai",
            "name": "gpt-4o-mini",
            "base_url": sim.root + "/v1",
            "service_tier": "flex",
        },
        batch={"poll_s": 0.05, "max_poll_s": 0.2},
        plan={"deadline": deadline, "reserve_s": 1.0},
    )
    return batchllm.load_job(write_job(tmp_path, data))


def _tiers(job: batchllm.JobSpec) -> dict[Any, int]:
    """Rows by the tier they were served at (a batch's at "default")."""
    found = batchllm.query(job, "select service_tier, count(*) as n from results group by 1")
    return {row["service_tier"]: row["n"] for row in found.to_pylist()}


def _situation() -> Situation:
    limits = Limits(None, None, 8, 100.0, 2.0)
    return Situation(rows=20, online_usd=1.0, batch_usd=0.5, rows_per_s=limits.rows_per_s(),
                     now=NOW, deadline=NOW + 15, reserve_s=1.0, flex=True, flex_usd=0.5,
                     limits=limits)  # fmt: skip


def test_handed_back_rows_go_at_flex_until_the_point_that_leaves_them_standard_time() -> None:
    """10 rows at 4 rows/s need 3.75 s at the standard tier (x 1.5), plus 1 s: flex until
    10.25 s; 19 rows leave 0.3 s, too short for flex; the learner moves the tier point so."""

    class Tiers:
        standard_from: float | None = None

    s = _situation()
    assert flex_until(s, 10, NOW + 6.5) == pytest.approx(NOW + 10.25)
    assert flex_until(s, 19, NOW + 6.6) is None
    plan = make_plan(s)
    learner = Learner(plan, Path("/nonexistent"), ModelSpec("openai", "gpt-4o-mini"))
    learner.tiers = Tiers()
    learner.handed_back(10)
    assert learner.tiers.standard_from is not None and plan.standard_from is not None
    assert learner.tiers.standard_from > plan.standard_from


async def test_rows_handed_back_with_time_left_go_at_flex(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 12 s batch cancelled 6.5 s in has answered about half: the rest go at flex (served
    tier recorded, flex price), done before the deadline, none billed twice."""
    sim = sims.start(SimConfig(**FAST, batch_delay_s=12.0))
    deadline = time.time() + DEADLINE_S
    job = _job(tmp_path, monkeypatch, sim)
    await run_by(job, deadline, ROWS)
    stats = sim.stats()
    handed = stats["batch_cancelled"]
    assert 0 < handed < ROWS
    assert _tiers(job) == {"flex": handed, "default": ROWS - handed}
    flex = tier_price(job, "flex")
    for row in batchllm.query(job, "select * from results where service_tier = 'flex'").to_pylist():
        usage = Usage(row["input_tokens"], row["output_tokens"])
        assert row["cost_usd"] == pytest.approx(flex.cost(usage))
    assert (stats["batches"], stats["ok"], stats["flex_ok"], stats["duplicates"]) == (
        1, ROWS, handed, 0)  # fmt: skip


async def test_rows_handed_back_with_no_time_for_flex_go_at_the_standard_tier(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 100 s batch cancelled 6.5 s in has answered almost nothing: every row it hands back
    goes at the standard tier at once, done before the deadline, none billed twice."""
    sim = sims.start(SimConfig(**FAST, batch_delay_s=100.0))
    deadline = time.time() + DEADLINE_S
    job = _job(tmp_path, monkeypatch, sim)
    await run_by(job, deadline, ROWS)
    stats = sim.stats()
    assert stats["batch_cancelled"] > ROWS / 2
    assert _tiers(job) == {"default": ROWS}
    assert (stats["ok"], stats.get("flex_ok", 0), stats["duplicates"]) == (ROWS, 0, 0)
