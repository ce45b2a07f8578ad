"""Every provider adapter end to end: the real pipeline against the simulator over loopback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import batchllm
from batchllm.errors import MissingKeyError
from batchllm.providers import DEFAULT_KEY_ENV
from batchllm.run.pipeline import arun_job
from batchllm.simulate import Fault, SimConfig, SimServer
from conftest import SimThread, job_data, ticket_rows, write_csv, write_job

KEY = "sim-provider-key-000001"
SYSTEM = "You triage support tickets for ACME Corp. Be brief."
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["billing", "bug", "other"]},
        "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "refund": {"type": "boolean"},
    },
    "required": ["label", "urgency", "confidence", "refund"],
    "additionalProperties": False,
}
#: provider -> (its base URL on the simulator, a model genai-prices knows for it)
PROVIDERS: dict[str, tuple[Callable[[SimServer], str], str]] = {
    "openai-responses": (lambda sim: sim.url, "gpt-4o-mini"),
    "anthropic": (lambda sim: sim.root, "claude-haiku-4-5"),
    "gemini": (lambda sim: f"{sim.root}/v1beta", "gemini-2.5-flash"),
    "azure-openai": (lambda sim: f"{sim.root}/openai/deployments/triage", "gpt-4o-mini"),
}
NAMES = sorted(PROVIDERS)


def _server(sims: SimThread, **config: Any) -> SimServer:
    return sims.start(SimConfig(**{"latency_ms": 2, "jitter_ms": 1, "api_key": KEY, **config}))


def _job(
    tmp_path: Path,
    provider: str,
    sim: SimServer,
    monkeypatch: pytest.MonkeyPatch,
    rows: int = 20,
    **sections: dict[str, Any],
) -> batchllm.JobSpec:
    monkeypatch.setenv(DEFAULT_KEY_ENV[provider], KEY)
    base_url, model = PROVIDERS[provider]
    write_csv(tmp_path / "input.csv", ticket_rows(rows))
    prompt = {"system": SYSTEM, **sections.pop("prompt", {})}
    model_section = {"provider": provider, "name": model, "base_url": base_url(sim)}
    model_section |= sections.pop("model", {})
    data = job_data(None, prompt=prompt, model=model_section, **sections)
    return batchllm.load_job(write_job(tmp_path, data))


@pytest.mark.parametrize("provider", NAMES)
async def test_a_run_gets_ok_rows_with_usage_and_cost(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """Each provider's run: one ok row per input row, real usage, a price, a request id."""
    sim = _server(sims)
    job = _job(tmp_path, provider, sim, monkeypatch)
    summary = await arun_job(job)
    assert (summary.ok, summary.failed, summary.sent) == (20, 0, 20)
    rows = batchllm.query(job, "select * from results").to_pylist()
    assert all(r["status"] == "ok" and r["output"] for r in rows)
    assert all(r["input_tokens"] > 0 and r["output_tokens"] > 0 for r in rows)
    assert all(r["cost_usd"] > 0 and not r["usage_estimated"] for r in rows)
    assert all(r["finish_reason"] in {"stop", "length"} for r in rows)
    assert all(r["provider_request_id"] for r in rows)
    assert sim.stats()["ok"] == 20
    assert sim.stats()["prompt_tokens"] == sum(r["input_tokens"] for r in rows)
    assert summary.cost_usd == pytest.approx(sum(r["cost_usd"] for r in rows))


async def test_anthropic_writes_the_system_prompt_cache_once_and_reads_it_after(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first row pays a cache write, every later row a cache read, priced as such."""
    sim = _server(sims)
    job = _job(tmp_path, "anthropic", sim, monkeypatch, limits={"concurrency": 1})
    summary = await arun_job(job)
    assert summary.ok == 20
    rows = batchllm.query(
        job,
        "select row_key, input_tokens, output_tokens, cached_tokens, cache_write_tokens, cost_usd "
        "from results order by row_key",
    ).to_pylist()
    first, later = rows[0], rows[1:]
    assert first["cache_write_tokens"] > 0 and first["cached_tokens"] == 0
    assert all(r["cached_tokens"] == first["cache_write_tokens"] for r in later)
    assert all(r["cache_write_tokens"] == 0 for r in later)
    assert all(r["input_tokens"] > r["cached_tokens"] for r in rows)
    # claude-haiku-4-5: $1 input, $0.10 cache read, $1.25 cache write, $5 output per MTok
    for row in rows:
        fresh = row["input_tokens"] - row["cached_tokens"] - row["cache_write_tokens"]
        micro = fresh * 1 + row["cached_tokens"] * 0.1 + row["cache_write_tokens"] * 1.25
        assert row["cost_usd"] == pytest.approx((micro + row["output_tokens"] * 5) / 1e6)


@pytest.mark.parametrize("provider", NAMES)
async def test_structured_output_is_sent_natively_and_fills_typed_columns(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """The schema goes in each format's own field; every reply fits it; columns are typed."""
    sim = _server(sims)
    job = _job(
        tmp_path,
        provider,
        sim,
        monkeypatch,
        model={"params": {"max_tokens": 300}},
        output={"schema": SCHEMA},
    )
    assert job.model.native_schema
    summary = await arun_job(job)
    assert (summary.ok, summary.invalid, summary.failed) == (20, 0, 0)
    types = batchllm.query(
        job,
        "select typeof(label) as label, typeof(urgency) as urgency, "
        "typeof(confidence) as confidence, typeof(refund) as refund from results limit 1",
    ).to_pylist()[0]
    assert types == {
        "label": "VARCHAR",
        "urgency": "BIGINT",
        "confidence": "DOUBLE",
        "refund": "BOOLEAN",
    }
    rows = batchllm.query(job, "select label, urgency, refund from results").to_pylist()
    assert all(r["label"] in {"billing", "bug", "other"} and 1 <= r["urgency"] <= 5 for r in rows)
    assert all(r["refund"] is not None for r in rows)


@pytest.mark.parametrize("provider", NAMES)
async def test_a_server_without_native_schemas_refuses_each_format_by_its_field(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """Against a server without structured output, the 400 names the field the schema used."""
    sim = _server(sims, native_schema=False)
    job = _job(tmp_path, provider, sim, monkeypatch, rows=3, output={"schema": SCHEMA})
    summary = await arun_job(job)
    assert summary.failed == 3
    [error] = batchllm.query(job, "select distinct error_type, error from results").to_pylist()
    field = {
        "openai-responses": "text.format",
        "anthropic": "output_config.format",
        "gemini": "generationConfig.responseJsonSchema",
        "azure-openai": "response_format",
    }[provider]
    assert error["error_type"] == "rejected" and field in error["error"]


@pytest.mark.parametrize("provider", NAMES)
async def test_transient_faults_in_each_format_are_retried_to_success(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """A 429, 500, 502 page and 529 in the provider's own shapes are retried; every row ends ok."""
    sim = _server(sims)
    sim.script([Fault("429", retry_after_s=0.05), Fault("500"), Fault("502"), Fault("529")])
    job = _job(tmp_path, provider, sim, monkeypatch, rows=8, limits={"concurrency": 2})
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (8, 0)
    stats = sim.stats()
    assert (stats["rate_limited"], stats["errors"], stats["ok"]) == (1, 3, 8)
    attempts = batchllm.query(job, "select sum(attempts) as n from results").to_pylist()
    assert attempts == [{"n": 12}]


@pytest.mark.parametrize("provider", NAMES)
@pytest.mark.parametrize(("fault", "kind"), [("401", "auth"), ("insufficient_quota", "quota")])
async def test_bad_keys_and_exhausted_quotas_stop_the_run_in_every_format(
    tmp_path: Path,
    sims: SimThread,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    fault: str,
    kind: str,
) -> None:
    """A bad key or a spent quota, in the provider's own words, is fatal: the run stops."""
    sim = _server(sims)
    sim.script([Fault(fault, count=50)])
    job = _job(tmp_path, provider, sim, monkeypatch, rows=40, limits={"concurrency": 2})
    with pytest.raises(batchllm.FatalProviderError, match=kind) as caught:
        await arun_job(job)
    assert KEY not in str(caught.value)
    assert sim.stats()["requests"] <= 4


async def test_anthropic_limits_are_learned_from_its_own_headers(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no limits in the job, anthropic-ratelimit-* headers slow the client to the server's."""
    sim = _server(sims, rpm=1200, latency_ms=5, jitter_ms=2)
    job = _job(tmp_path, "anthropic", sim, monkeypatch, rows=60, limits={"concurrency": 4})
    summary = await arun_job(job)
    assert summary.ok == 60
    # Measured: 0 429s when the headers are read, 4 when they are ignored (one per worker).
    assert sim.stats()["rate_limited"] <= 1


@pytest.mark.parametrize("provider", NAMES)
def test_a_missing_key_stops_the_job_before_any_request(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """A base_url does not excuse a missing key for hosted providers: exit 2, nothing sent."""
    sim = _server(sims)
    job = _job(tmp_path, provider, sim, monkeypatch)
    monkeypatch.delenv(DEFAULT_KEY_ENV[provider])
    with pytest.raises(MissingKeyError, match=DEFAULT_KEY_ENV[provider]):
        batchllm.run_job(job)
    assert sim.stats()["requests"] == 0
