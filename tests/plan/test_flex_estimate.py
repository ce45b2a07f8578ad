"""A flex job's estimate and cost cap against the simulator over loopback: the expected cost at
the flex rate, the cost if flex refuses every row beside it (screen and ``--json``), and a cap
that holds each flex row at the standard rate, so it holds whatever flex refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

import batchllm
from batchllm.budget import LocalBudget
from batchllm.cli import main
from batchllm.pricing import resolve_price, tier_price
from batchllm.providers import DEFAULT_KEY_ENV
from batchllm.retry import FLEX_REFUSALS
from batchllm.simulate import SimConfig, SimServer
from conftest import SimThread, job_data, ticket_rows, write_csv, write_job

KEY = "sim-flex-estimate-key-01"
FAST = {"latency_ms": 1, "jitter_ms": 0, "api_key": KEY}
ROWS = 40


def _job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim: SimServer, tier: str | None = "flex",
    **sections: dict[str, Any],
) -> Path:  # fmt: skip
    monkeypatch.setenv(DEFAULT_KEY_ENV["openai"], KEY)
    write_csv(tmp_path / "input.csv", ticket_rows(ROWS))
    model = {"provider": "openai", "name": "gpt-4o-mini", "base_url": sim.root + "/v1",
             "service_tier": tier, "params": {"max_tokens": 40, "temperature": 0}}  # fmt: skip
    return write_job(tmp_path, job_data(None, model=model, **sections))


def _estimate(path: Path, *options: str) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["-q", "estimate", str(path), "--json", *options])
    assert result.exit_code == 0, result.output
    found: dict[str, Any] = orjson.loads(result.output)
    return found


def test_a_flex_job_is_expected_at_the_flex_rate_with_the_standard_cost_beside_it(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a pilot at flex: the expected cost is what the rows cost at flex (the pilot's own
    cost per row, times the rows), and the cost if flex refuses all is the standard rate's,
    twice as much; the same job without a tier is expected at the standard rate."""
    sim = sims.start(SimConfig(**FAST))
    found = _estimate(_job(tmp_path, monkeypatch, sim), "--sample", "10")
    assert found["service_tier"] == "flex"
    per_row = found["pilot_cost_usd"] / found["pilot_rows"]
    assert found["expected_cost_usd"] == pytest.approx(per_row * ROWS, rel=0.1)
    assert found["standard_cost_usd"] == pytest.approx(2 * found["expected_cost_usd"])
    assert found["batch_expected_cost_usd"] == pytest.approx(found["expected_cost_usd"])
    (tmp_path / "std").mkdir()
    standard = _estimate(_job(tmp_path / "std", monkeypatch, sim, None), "--sample", "0")
    assert (standard["service_tier"], standard["standard_cost_usd"]) == (None, None)


def test_the_estimate_screen_shows_the_flex_tier_and_the_cost_if_flex_refuses(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No pilot: the expected line says it is at the flex tier; the next lines give the cost
    if flex refuses every row, the rate a cost cap holds rows at; nothing is sent."""
    sim = sims.start(SimConfig(**FAST))
    result = CliRunner().invoke(main, ["estimate", str(_job(tmp_path, monkeypatch, sim)),
                                       "--sample", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    expected = next(line for line in lines if line.strip().startswith("expected cost"))
    assert expected.endswith("at the flex tier")
    refused = next(line for line in lines if line.strip().startswith("if flex refuses"))
    assert "every row at the standard tier" in refused and "cost cap" in refused
    assert sim.stats()["requests"] == 0


async def test_the_cost_cap_holds_flex_rows_at_the_standard_rate(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's budget reserves a flex row's worst case at the standard rate (twice the flex
    one); flex refusing every row, the spend stays within the cap and the run stops on it."""
    sim = sims.start(SimConfig(**FAST, flex_refuse_rate=1.0))
    job = batchllm.load_job(_job(tmp_path, monkeypatch, sim, retry={
        "max_attempts": FLEX_REFUSALS + 1}))  # fmt: skip
    price = resolve_price(job)
    budget = LocalBudget(1.0, price)
    flex_budget = LocalBudget(1.0, tier_price(job, "flex", price))
    assert budget.worst_case(100, 40) == pytest.approx(2 * flex_budget.worst_case(100, 40))
    cap = budget.worst_case(100, 40) * 2
    with pytest.raises(batchllm.BudgetReached):
        await batchllm.arun_job(job, batchllm.RunOptions(max_cost_usd=cap))
    spent = batchllm.query(job, "select sum(cost_usd) as c from all_results").to_pylist()[0]["c"]
    assert 0 < spent <= cap
    assert sim.stats()["ok"] < ROWS
