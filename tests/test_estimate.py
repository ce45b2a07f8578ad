"""`batchllm estimate`: a pilot on a sample, kept for the run, and an estimate that holds."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

import batchllm
from batchllm.cli import main
from batchllm.estimate import aestimate
from batchllm.run.pipeline import RunOptions, arun_job
from batchllm.simulate import SimServer
from conftest import job_data, ticket_rows, write_csv, write_job

_WORDS = "invoice refund payment card export report login error duplicate tax client".split()
_OTHER = ["facture", "Rechnung", "pagamento", "請求書", "退款", "émis", "überfällig", "🙂"]


def _varied_rows(count: int, seed: int = 5) -> list[dict[str, str]]:
    """Rows of very different lengths and scripts, like a real support inbox."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        length = int(rng.paretovariate(1.5) * 12)
        words = [rng.choice(_OTHER if rng.random() < 0.1 else _WORDS) for _ in range(length)]
        rows.append({"id": f"R{i:06d}", "text": " ".join(words) + rng.choice([".", "!", "?\n"])})
    return rows


async def test_estimate_is_within_5_percent_of_the_real_run_on_10000_rows(tmp_path: Path) -> None:
    """Expected cost lands within ±5% of what the run then spends, inside the low/high range."""
    write_csv(tmp_path / "input.csv", _varied_rows(10_000))
    data = job_data(
        None,
        model={"provider": "simulated", "base_url": None, "params": {"max_tokens": 120}},
        limits={"concurrency": 64},
        prompt={"template": "Summarize this message in one sentence: {{ text }}"},
    )
    data["simulate"] = {"latency_ms": 0, "jitter_ms": 0}
    job = batchllm.load_job(write_job(tmp_path, data))
    found = await aestimate(job, sample=400)
    summary = await arun_job(job)
    assert summary.reused == found.pilot_rows > 0
    actual = batchllm.query(job, "select sum(cost_usd) as s from all_results").to_pylist()[0]["s"]
    assert abs(found.expected_cost_usd - actual) / actual <= 0.05
    assert found.low_cost_usd <= actual <= found.high_cost_usd
    assert found.worst_case_cost_usd is not None and found.worst_case_cost_usd > actual
    assert found.batch_expected_cost_usd == pytest.approx(found.expected_cost_usd / 2)


async def test_the_pilot_is_kept_and_never_paid_twice(tmp_path: Path, sim: SimServer) -> None:
    """The pilot's replies are results of the job: the run reuses them instead of resending."""
    write_csv(tmp_path / "input.csv", ticket_rows(300))
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    found = await aestimate(job, sample=80)
    assert 0 < found.pilot_rows <= 80
    assert sim.stats()["requests"] == found.pilot_rows
    summary = await arun_job(job)
    assert summary.reused == found.pilot_rows
    assert sim.stats()["requests"] == 300
    kinds = batchllm.query(
        job, "select kind, count(*) as n, sum(sent) as sent from runs group by 1 order by 1"
    ).to_pylist()
    pilot, run = kinds
    assert (pilot["kind"], run["kind"]) == ("pilot", "run")
    assert pilot["n"] >= 1 and pilot["sent"] == found.pilot_rows
    assert (run["n"], run["sent"]) == (1, 300 - found.pilot_rows)


async def test_without_a_pilot_the_estimate_is_the_worst_case(
    tmp_path: Path, sim: SimServer
) -> None:
    """--sample 0 sends nothing and reports every reply at max_tokens as the expectation."""
    write_csv(tmp_path / "input.csv", ticket_rows(50))
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    found = await aestimate(job, sample=0)
    assert sim.stats()["requests"] == 0
    assert found.pilot_rows == 0 and found.interval is None
    assert found.expected_cost_usd == found.worst_case_cost_usd > 0
    assert found.input_tokens > 0 and found.rows == found.rows_to_do == 50


async def test_the_pilot_spend_cap_holds(tmp_path: Path, sim: SimServer) -> None:
    """A tiny pilot budget stops the pilot early; the estimate still comes back."""
    write_csv(tmp_path / "input.csv", ticket_rows(400))
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url, limits={"concurrency": 4})))
    found = await aestimate(job, sample=300, pilot_max_cost=0.0003)
    assert found.pilot_cost_usd <= 0.0003
    assert 0 < found.pilot_rows < 300
    assert found.expected_cost_usd > 0


async def test_rows_already_done_are_left_out(tmp_path: Path, sim: SimServer) -> None:
    """After a partial run, only the rows still to do are estimated."""
    write_csv(tmp_path / "input.csv", ticket_rows(120))
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    await arun_job(job, RunOptions(limit=70))
    found = await aestimate(job, sample=0)
    assert (found.rows, found.rows_to_do) == (120, 50)


async def test_a_limit_estimates_the_first_rows_only(tmp_path: Path, sim: SimServer) -> None:
    """--limit 30 counts, prices and pilots the first 30 rows, as a run with --limit 30 sends."""
    write_csv(tmp_path / "input.csv", ticket_rows(120))
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    found = await aestimate(job, sample=0, limit=30)
    assert (found.rows, found.rows_to_do, found.requests_to_send) == (30, 30, 30)
    whole = await aestimate(job, sample=0)
    assert found.input_tokens < whole.input_tokens / 3


async def test_a_prompt_over_the_context_window_is_not_counted_as_a_request(
    tmp_path: Path, sim: SimServer
) -> None:
    """A prompt over the context window is no request; a duplicate id counts as one (errs high)."""
    rows = ticket_rows(40)
    rows += [{"id": row["id"], "text": "a different text"} for row in rows[:5]]
    rows.append({"id": "HUGE", "text": "word " * 140_000})
    write_csv(tmp_path / "input.csv", rows)
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    found = await aestimate(job, sample=0)
    assert (found.rows, found.requests_to_send) == (46, 41)
    summary = await arun_job(job)
    assert (summary.sent, summary.failed) == (40, 6)


async def test_a_long_shared_prefix_shows_the_caching_saving(
    tmp_path: Path, sim: SimServer
) -> None:
    """A system prompt over 1,024 tokens is priced at the cached rate after the first request."""
    write_csv(tmp_path / "input.csv", ticket_rows(40))
    system = "You are a careful support analyst. " * 160
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url, prompt={"system": system})))
    found = await aestimate(job, sample=0)
    assert found.shared_prefix_tokens >= 1024
    assert found.cached_expected_cost_usd is not None
    assert found.cached_expected_cost_usd < found.expected_cost_usd


def test_estimate_cli_prints_a_screen_and_json(tmp_path: Path, sim: SimServer) -> None:
    """The CLI prints one readable screen, or JSON with the documented keys."""
    write_csv(tmp_path / "input.csv", ticket_rows(60))
    job = write_job(tmp_path, job_data(sim.url))
    screen = CliRunner().invoke(main, ["-q", "estimate", "--sample", "0", str(job)])
    assert screen.exit_code == 0, screen.stderr
    assert "expected cost" in screen.stdout and "worst case" in screen.stdout
    result = CliRunner().invoke(main, ["-q", "estimate", "--json", str(job)])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    for key in (
        "rows",
        "input_tokens",
        "expected_cost_usd",
        "low_cost_usd",
        "high_cost_usd",
        "worst_case_cost_usd",
        "batch_expected_cost_usd",
        "expected_seconds",
    ):
        assert key in data, key
    assert data["low_cost_usd"] <= data["expected_cost_usd"] <= data["high_cost_usd"]
