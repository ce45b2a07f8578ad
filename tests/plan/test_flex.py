"""OpenAI's flex tier against the simulator over loopback: the tier sent outside the request key,
the served tier recorded and priced per reply, refusals retried then moved to the standard tier,
and the job error for a provider without service tiers."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

import batchllm
from batchllm.cli import main
from batchllm.errors import JobFileError
from batchllm.pricing import resolve_price, tier_price
from batchllm.providers import DEFAULT_KEY_ENV
from batchllm.providers.base import Usage
from batchllm.retry import FLEX_REFUSALS
from batchllm.simulate import SimConfig, SimServer
from conftest import SimThread, job_data, ticket_rows, write_csv, write_job

KEY = "sim-flex-key-000001"
FAST = {"latency_ms": 1, "jitter_ms": 0, "api_key": KEY}
ROWS = 6


def _job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim: SimServer, tier: str | None = "flex",
    **sections: dict[str, Any],
) -> batchllm.JobSpec:  # fmt: skip
    monkeypatch.setenv(DEFAULT_KEY_ENV["openai"], KEY)
    write_csv(tmp_path / "input.csv", ticket_rows(ROWS))
    model = {"provider": "openai", "name": "gpt-4o-mini", "base_url": sim.root + "/v1",
             "service_tier": tier}  # fmt: skip
    return batchllm.load_job(write_job(tmp_path, job_data(None, model=model, **sections)))


def _rows(job: batchllm.JobSpec) -> list[dict[str, Any]]:
    return batchllm.query(job, "select * from results order by row_key").to_pylist()


def _cost_at(job: batchllm.JobSpec, row: dict[str, Any], tier: str) -> float:
    usage = Usage(row["input_tokens"], row["output_tokens"])
    return tier_price(job, tier).cost(usage) if tier == "flex" else resolve_price(job).cost(usage)


async def test_flex_rows_are_priced_at_the_flex_rate_with_the_served_tier_recorded(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every row answered at flex: its service_tier column says so and it costs the flex price
    (the batch price for a model the price table sells no flex of), half the standard one."""
    sim = sims.start(SimConfig(**FAST))
    job = _job(tmp_path, monkeypatch, sim)
    summary = await batchllm.arun_job(job)
    assert (summary.ok, sim.stats()["flex_ok"]) == (ROWS, ROWS)
    for row in _rows(job):
        assert row["service_tier"] == "flex"
        assert row["cost_usd"] == pytest.approx(_cost_at(job, row, "flex"))
        assert row["cost_usd"] == pytest.approx(_cost_at(job, row, "default") / 2)


async def test_refused_rows_are_retried_then_sent_at_the_standard_tier(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flex refuses everything: each row is refused FLEX_REFUSALS times, then answered at the
    standard tier and priced at it; the refusals never fail a row, nor count as rate limits
    (the limiter is not paused for them)."""
    sim = sims.start(SimConfig(**FAST, flex_refuse_rate=1.0))
    job = _job(tmp_path, monkeypatch, sim, retry={"max_attempts": FLEX_REFUSALS + 1})
    summary = await batchllm.arun_job(job)
    stats = sim.stats()
    assert (summary.ok, stats["flex_refused"], stats["ok"]) == (ROWS, ROWS * FLEX_REFUSALS, ROWS)
    assert stats["rate_limited"] == 0
    assert batchllm.query(job, "select rate_limited from runs").to_pylist() == [{"rate_limited": 0}]
    for row in _rows(job):
        assert (row["service_tier"], row["attempts"]) == ("default", FLEX_REFUSALS + 1)
        assert row["cost_usd"] == pytest.approx(_cost_at(job, row, "default"))


async def test_a_re_ask_follows_on_at_the_tier_its_row_was_moved_to(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flex refuses everything and schema replies come broken: each row moves to the standard
    tier after its refusals, and its re-ask is sent there too, not at flex again (refusals
    stay at FLEX_REFUSALS a row; every reply, the re-asks' too, is at default)."""
    sim = sims.start(SimConfig(**FAST, flex_refuse_rate=1.0, malformed_rate=1.0))
    schema = {"type": "object", "properties": {"label": {"type": "string"}},
              "required": ["label"]}  # fmt: skip
    (tmp_path / "reply.schema.json").write_text(orjson.dumps(schema).decode())
    job = _job(tmp_path, monkeypatch, sim, retry={"max_attempts": FLEX_REFUSALS + 1},
               output={"schema_file": "reply.schema.json", "max_repairs": 1})  # fmt: skip
    summary = await batchllm.arun_job(job)
    stats = sim.stats()
    rows = _rows(job)
    repairs = sum(row["repairs"] for row in rows)
    assert summary.ok + summary.invalid == ROWS and repairs > 0
    assert (stats["flex_refused"], stats["ok"], stats.get("flex_ok", 0)) == (
        ROWS * FLEX_REFUSALS, ROWS + repairs, 0)  # fmt: skip
    assert {row["service_tier"] for row in rows} == {"default"}


async def test_a_refusal_with_no_attempt_left_fails_the_row_as_flex_unavailable(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 429 "resource unavailable" is read as a flex refusal, not a rate limit."""
    sim = sims.start(SimConfig(**FAST, flex_refuse_rate=1.0))
    job = _job(tmp_path, monkeypatch, sim, retry={"max_attempts": 1})
    summary = await batchllm.arun_job(job)
    assert summary.failed == ROWS
    assert {row["error_type"] for row in _rows(job)} == {"flex_unavailable"}


async def test_when_the_deadline_needs_the_standard_tier_rows_skip_flex(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deadline with no time for flex's slower replies (its standard-from point is now):
    flex refuses everything, yet no row waits on it: each goes at the standard tier at once."""
    sim = sims.start(SimConfig(**FAST, flex_refuse_rate=1.0))
    deadline = datetime.fromtimestamp(time.time() + 25).astimezone().isoformat()
    job = _job(tmp_path, monkeypatch, sim, plan={"deadline": deadline, "cheapest": False,
               "reserve_s": 24.0})  # fmt: skip
    summary = await batchllm.arun_job(job)
    stats = sim.stats()
    assert (summary.ok, stats.get("flex_refused", 0), stats["ok"]) == (ROWS, 0, ROWS)
    assert {row["service_tier"] for row in _rows(job)} == {"default"}


async def test_the_tier_is_not_part_of_the_request_key(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job run without a tier, then with service_tier = "flex": every row is reused, nothing
    is sent again (the same model gives the same answer at every tier)."""
    sim = sims.start(SimConfig(**FAST))
    plain = _job(tmp_path, monkeypatch, sim, tier=None)
    await batchllm.arun_job(plain)
    keys = [row["request_key"] for row in _rows(plain)]
    flex = _job(tmp_path, monkeypatch, sim)
    assert flex.fingerprint == plain.fingerprint
    summary = await batchllm.arun_job(flex)
    assert (summary.reused, summary.sent, sim.stats()["requests"]) == (ROWS, 0, ROWS)
    assert [row["request_key"] for row in _rows(flex)] == keys


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "openai-compatible"])
def test_other_providers_refuse_a_service_tier(tmp_path: Path, provider: str) -> None:
    """service_tier is OpenAI's: anywhere else it is a one-line job error naming the key."""
    model = {"provider": provider, "name": "m", "service_tier": "flex",
             "base_url": "http://127.0.0.1:9/v1"}  # fmt: skip
    write_csv(tmp_path / "input.csv", ticket_rows(1))
    path = write_job(tmp_path, job_data(None, model=model))
    with pytest.raises(JobFileError, match=r"\[model\] service_tier: is OpenAI's") as caught:
        batchllm.load_job(path)
    assert "\n" not in str(caught.value)


def test_estimate_with_a_deadline_shows_the_flex_tier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For OpenAI the plan's screen prices every tier: batch, flex and online."""
    monkeypatch.setenv(DEFAULT_KEY_ENV["openai"], KEY)
    write_csv(tmp_path / "input.csv", ticket_rows(ROWS))
    model = {"provider": "openai", "name": "gpt-4o-mini", "service_tier": "flex"}
    path = write_job(tmp_path, job_data(None, model=model))
    result = CliRunner().invoke(main, ["estimate", str(path), "--sample", "0",
                                       "--deadline", "23:59"])  # fmt: skip
    tiers = next(line for line in result.output.splitlines() if line.strip().startswith("tiers"))
    assert "batch $" in tiers and "flex $" in tiers and "online $" in tiers
