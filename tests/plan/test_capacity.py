"""Online capacity learned from the provider's rate-limit headers: the plan made again with it
(pure), and a simulator whose real limit is below the job's: the next night's switch point comes
earlier and the deadline holds."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

import batchllm
from batchllm.job import ModelSpec
from batchllm.plan.capacity import Learner, relearn, remembered
from batchllm.plan.planner import Limits, Situation, make_plan
from batchllm.plan.setup import plan_for
from batchllm.providers import DEFAULT_KEY_ENV
from batchllm.simulate import SimConfig, SimServer
from conftest import SimThread, job_data, run_by, ticket_rows, write_csv, write_job

NOW = 1_800_000_000.0
KEY = "sim-capacity-key-0001"
ROWS = 10
#: what the job promises (20 rows/s with 40 at a time) and what the simulator allows (2 rows/s)
PROMISED = {"concurrency": 40, "rpm": 1200}
REAL_RPM = 120


def _situation(rpm: int | None = 1200, flex: bool = False) -> Situation:
    limits = Limits(rpm, None, 40, 100.0, 2.0)
    return Situation(rows=1000, online_usd=10.0, batch_usd=5.0, rows_per_s=limits.rows_per_s(),
                     now=NOW, deadline=NOW + 3600, limits=limits, flex=flex,
                     flex_usd=5.0)  # fmt: skip


def test_a_lower_learned_limit_moves_the_switch_point_earlier() -> None:
    """20 rows/s promised, 2 rows/s learned: the switch point leaves 1.5 x 500 s online time."""
    plan = make_plan(_situation())
    learned = relearn(plan, REAL_RPM, None, NOW)
    assert plan.switch_at == pytest.approx(NOW + 3600 - 1.5 * 50 - 60)
    assert learned.switch_at == pytest.approx(NOW + 3600 - 1.5 * 500 - 60)
    assert learned.online_s == pytest.approx(500)


def test_a_higher_or_missing_limit_changes_nothing() -> None:
    """Limits above the promise, or no headers at all, leave the plan as it was."""
    plan = make_plan(_situation())
    assert relearn(plan, 6000, None, NOW) is plan
    assert relearn(plan, None, None, NOW) is plan


def test_a_learned_limit_too_low_for_the_deadline_switches_at_once() -> None:
    """When the learned rate leaves no time for the batch, the switch point is now."""
    plan = make_plan(_situation())
    assert relearn(plan, 10, None, NOW + 5).switch_at == NOW + 5


def test_the_learner_moves_the_standard_from_point_and_remembers(tmp_path: Path) -> None:
    """A flex plan: the limiter's lower limit moves the point where rows go at the standard
    tier, and the limits are kept for the job's next plan."""

    class Tiers:
        standard_from: float | None = None

    plan = make_plan(_situation(flex=True))
    learner = Learner(plan, tmp_path, ModelSpec("openai", "gpt-4o-mini"))
    learner.tiers = Tiers()
    learner.observed(float(REAL_RPM), None)
    assert plan.standard_from is not None and learner.tiers.standard_from is not None
    assert learner.tiers.standard_from < plan.standard_from
    assert remembered(tmp_path, "openai", "gpt-4o-mini") == (REAL_RPM, None)


def _job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim: SimServer, deadline_in_s: float,
    night: int, **plan: Any,
) -> batchllm.JobSpec:  # fmt: skip
    """The job of night ``night``: ROWS new rows of the same job, in the same run directory."""
    monkeypatch.setenv(DEFAULT_KEY_ENV["openai"], KEY)
    write_csv(tmp_path / "input.csv", ticket_rows(night * ROWS)[-ROWS:])
    deadline = datetime.fromtimestamp(time.time() + deadline_in_s).astimezone().isoformat()
    data = job_data(
        None,
        model={"provider": "openai", "name": "gpt-4o-mini", "base_url": sim.root + "/v1"},
        batch={"poll_s": 0.05, "max_poll_s": 0.2},
        limits=PROMISED,
        plan={"deadline": deadline, "reserve_s": 1.0, **plan},
    )
    return batchllm.load_job(write_job(tmp_path, data))


def test_a_real_limit_below_the_promised_one_moves_the_next_switch_point_earlier(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Night 1 (online) learns 120 rpm where the job promised 1,200; night 2's batch stalls:
    its switch point leaves time for 2 rows/s, not 20, and every row is done by the deadline
    (with the promised rate it would have switched 7 s later, 2 s before the deadline, with 5 s
    of online work left)."""
    sim = sims.start(SimConfig(latency_ms=1, jitter_ms=0, api_key=KEY, rpm=REAL_RPM,
                               batch_delay_s=60.0))  # fmt: skip
    first = _job(tmp_path, monkeypatch, sim, 3600, 1, cheapest=False)
    assert batchllm.run_job(first).ok == ROWS
    assert remembered(first.output_dir, "openai", "gpt-4o-mini") == (REAL_RPM, None)
    second = _job(tmp_path, monkeypatch, sim, 12, 2)
    now = time.time()
    planned = plan_for(second, ROWS, 100 * ROWS, now=now)
    promised = plan_for(second, ROWS, 100 * ROWS, now=now, learned=False)
    assert planned.switch_at is not None and promised.switch_at is not None
    assert planned.switch_at < promised.switch_at - 5
    deadline = time.time() + 12
    asyncio.run(run_by(second, deadline, ROWS))
    book = orjson.loads((second.output_dir / "batches" / "book.json").read_bytes())
    assert [entry["cancel"] for entry in book.values()] == ["sent"]


def test_a_real_limit_below_the_promised_one_moves_this_runs_switch_point_earlier(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One night, a stalled batch, 120 rpm where the job promised 1,200: the row sent online at
    once teaches the run the real limit, the switch point moves from ~10 s to ~3.5 s, and every
    row is done by the deadline, none paid twice (at the promised rate the 5 s of online work
    would have started 1.75 s before the deadline)."""
    sim = sims.start(SimConfig(latency_ms=1, jitter_ms=0, api_key=KEY, rpm=REAL_RPM,
                               batch_delay_s=60.0))  # fmt: skip
    job = _job(tmp_path, monkeypatch, sim, 12, 1)
    deadline = time.time() + 12
    asyncio.run(run_by(job, deadline, ROWS))
    stats = sim.stats()
    assert (stats["batches"], stats["batch_requests"], stats["ok"], stats["duplicates"]) == (
        1, ROWS - 1, ROWS, 0)  # fmt: skip
    [entry] = orjson.loads((job.output_dir / "batches" / "book.json").read_bytes()).values()
    assert entry["cancel"] == "sent"
    assert remembered(job.output_dir, "openai", "gpt-4o-mini") == (REAL_RPM, None)
