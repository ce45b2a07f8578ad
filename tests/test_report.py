"""The run report: figures checked against the results they summarise, over real runs."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import pytest

import batchllm
from batchllm.pricing import resolve_price
from batchllm.providers.base import Usage
from batchllm.report import Report, build_report, report_json, report_text
from batchllm.run.pipeline import RunOptions, RunSummary, arun_job
from batchllm.simulate import Fault, SimConfig, SimServer
from conftest import SimThread, job_data, ticket_rows, write_csv, write_job

SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["bug", "billing", "other"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["label", "confidence"],
    "additionalProperties": False,
}


def _job(tmp_path: Path, url: str, rows: int = 40, **sections: dict) -> batchllm.JobSpec:
    write_csv(tmp_path / "input.csv", ticket_rows(rows))
    return batchllm.load_job(write_job(tmp_path, job_data(url, **sections)))


def _column(job: batchllm.JobSpec, sql: str) -> list:
    return batchllm.query(job, sql).column(0).to_pylist()


def _quantile_cont(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks, as DuckDB's quantile_cont does."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


@pytest.fixture
async def faulty(tmp_path: Path, sim: SimServer) -> tuple[batchllm.JobSpec, RunSummary, Report]:
    """40 rows; one 500 (retried to ok) and two 400s (two failed rows)."""
    sim.script([Fault("500"), Fault("400", count=2)])
    job = _job(tmp_path, sim.url)
    summary = await arun_job(job)
    return job, summary, build_report(job)


async def test_rows_are_counted_by_status_and_error_type(faulty) -> None:
    """Rows by status always name ok, failed and invalid; failed rows are grouped by error type."""
    _, summary, report = faulty
    assert report.rows == 40
    assert report.by_status == {"ok": 38, "failed": 2, "invalid": 0}
    assert report.errors_by_type == {"rejected": 2}
    assert (summary.ok, summary.failed) == (38, 2)


async def test_tokens_are_what_the_provider_counted(faulty, sim: SimServer) -> None:
    """Each token figure is what the simulated provider itself counted for the ok replies (no
    prompt caching in this job, so cached and cache-write tokens are 0)."""
    _, _, report = faulty
    stats = sim.stats()
    assert report.tokens.input == stats["prompt_tokens"] > 0
    assert report.tokens.output == stats["completion_tokens"] > 0
    assert (report.tokens.cached, report.tokens.reasoning, report.tokens.cache_write) == (0, 0, 0)


async def test_cost_total_mean_and_by_status_match_the_provider(faulty, sim: SimServer) -> None:
    """Total cost is the provider's token counts at the model's price (a flat price: summing
    per-reply costs equals pricing the sums); the mean is per row; by status adds up."""
    job, summary, report = faulty
    stats = sim.stats()
    billed = resolve_price(job).cost(
        Usage(input_tokens=stats["prompt_tokens"], output_tokens=stats["completion_tokens"])
    )
    assert report.cost.total_usd == pytest.approx(billed)
    assert report.cost.total_usd == pytest.approx(summary.cost_usd)
    assert report.cost.spent_all_runs_usd == pytest.approx(billed)
    assert report.cost.mean_per_row_usd == pytest.approx(billed / 40)
    assert sum(report.cost.by_status.values()) == pytest.approx(report.cost.total_usd)
    assert report.cost.by_status["failed"] == 0.0
    assert report.cost.repairs_usd == 0.0


async def test_percentiles_interpolate_between_ranks(faulty) -> None:
    """p95 cost per row and p50/p95/p99 latency are continuous quantiles of the results."""
    job, _, report = faulty
    costs = _column(job, "select cost_usd from results")
    latencies = _column(job, "select latency_ms from results where latency_ms is not null")
    assert report.cost.p95_per_row_usd == pytest.approx(_quantile_cont(costs, 0.95))
    assert report.latency_ms.p50 == pytest.approx(_quantile_cont(latencies, 0.5))
    assert report.latency_ms.p95 == pytest.approx(_quantile_cont(latencies, 0.95))
    assert report.latency_ms.p99 == pytest.approx(_quantile_cont(latencies, 0.99))


async def test_retries_are_counted_and_cost_nothing(faulty, sim: SimServer) -> None:
    """Attempts are every request sent; the one 500 is one retry, and retries cost $0."""
    _, _, report = faulty
    assert report.attempts.total == sim.stats()["requests"] == 41
    assert (report.attempts.retries, report.attempts.repairs) == (1, 0)
    assert report.attempts.mean_per_row == pytest.approx(41 / 40)
    assert report.cost.retries_usd == 0.0


async def test_rate_limits_come_from_the_runs(tmp_path: Path, sim: SimServer) -> None:
    """429s and admission pauses are the runs' own record, and each 429 is a retry."""
    sim.script([Fault("429", count=3, retry_after_s=0.05)])
    job = _job(tmp_path, sim.url, rows=20)
    await arun_job(job)
    report = build_report(job)
    recorded = batchllm.query(
        job, "select sum(rate_limited) as n, sum(rate_limit_wait_s) as s from runs"
    ).to_pylist()[0]
    assert report.rate_limits.count == recorded["n"] == sim.stats()["rate_limited"] == 3
    assert report.rate_limits.wait_s == pytest.approx(recorded["s"])
    assert report.rate_limits.wait_s > 0
    assert report.attempts.retries == 3


async def test_throughput_covers_the_latest_run_only(tmp_path: Path, sim: SimServer) -> None:
    """Throughput is the rows the latest run finished over that run's own start and end."""
    job = _job(tmp_path, sim.url)
    first = await arun_job(job, RunOptions(limit=25))
    second = await arun_job(job)
    report = build_report(job)
    assert [run.run_id for run in report.runs] == [second.run_id, first.run_id]
    run = batchllm.query(
        job, f"select started_at, ended_at from runs where run_id = '{second.run_id}'"
    ).to_pylist()[0]
    wall_s = (
        datetime.fromisoformat(run["ended_at"]) - datetime.fromisoformat(run["started_at"])
    ).total_seconds()
    throughput = report.throughput
    assert (throughput.run_id, throughput.rows) == (second.run_id, 15)
    assert throughput.wall_s == pytest.approx(wall_s, abs=1e-6)
    assert throughput.rows_per_s == pytest.approx(15 / wall_s, rel=1e-3)
    assert [(r.sent, r.finished) for r in report.runs] == [(15, 15), (25, 25)]


async def test_spent_over_all_runs_counts_superseded_outcomes(
    tmp_path: Path, sim: SimServer
) -> None:
    """After --fresh, the results cost one run while the money spent covers both."""
    job = _job(tmp_path, sim.url, rows=20)
    await arun_job(job)
    await arun_job(job, RunOptions(fresh=True))
    report = build_report(job)
    current = sum(_column(job, "select cost_usd from results"))
    history = sum(_column(job, "select cost_usd from all_results"))
    assert report.cost.total_usd == pytest.approx(current)
    assert report.cost.spent_all_runs_usd == pytest.approx(history)
    assert report.cost.spent_all_runs_usd > report.cost.total_usd
    assert report.rows == 20 and len(report.runs) == 2


async def test_repair_cost_is_what_the_re_asks_cost(tmp_path: Path, sims: SimThread) -> None:
    """With broken replies re-asked, repair cost is the sum of repair_cost_usd, repairs counted."""
    server = sims.start(SimConfig(latency_ms=1, jitter_ms=0, malformed_rate=0.5, seed=3))
    (tmp_path / "reply.schema.json").write_text(json.dumps(SCHEMA))
    output = {"schema_file": "reply.schema.json", "max_repairs": 2}
    job = _job(tmp_path, server.url, rows=40, output=output)
    await arun_job(job)
    report = build_report(job)
    repair_cost = sum(_column(job, "select repair_cost_usd from results"))
    repairs = sum(_column(job, "select repairs from results"))
    assert report.cost.repairs_usd == pytest.approx(repair_cost)
    assert 0 < report.cost.repairs_usd < report.cost.total_usd
    assert report.attempts.repairs == repairs == server.stats()["requests"] - 40
    assert report.attempts.retries == 0


async def test_json_has_every_figure_under_stable_keys(faulty) -> None:
    """The JSON is one object whose keys a cron job can rely on, with the report's values."""
    _, _, report = faulty
    data = json.loads(report_json(report))
    assert "\n" not in report_json(report)
    assert set(data) >= {
        "rows", "by_status", "errors_by_type", "tokens", "cost", "latency_ms", "attempts",
        "rate_limits", "throughput", "runs",
    }  # fmt: skip
    assert set(data["by_status"]) == {"ok", "failed", "invalid"}
    assert set(data["tokens"]) == {"input", "cached", "output", "reasoning", "cache_write"}
    assert set(data["cost"]) == {
        "total_usd", "spent_all_runs_usd", "mean_per_row_usd", "p95_per_row_usd", "by_status",
        "repairs_usd", "retries_usd",
    }  # fmt: skip
    assert set(data["latency_ms"]) == {"p50", "p95", "p99"}
    assert set(data["attempts"]) == {"total", "retries", "repairs", "mean_per_row"}
    assert set(data["rate_limits"]) == {"count", "wait_s"}
    assert "rows_per_s" in data["throughput"]
    assert data["rows"] == 40 and data["by_status"]["failed"] == 2
    assert data["cost"]["total_usd"] == pytest.approx(report.cost.total_usd)
    assert data["runs"][0]["run_id"] == report.throughput.run_id


async def test_text_has_every_section_in_order(faulty) -> None:
    """The text report is one screen with its sections in a fixed order and the key figures."""
    _, _, report = faulty
    text = report_text(report)
    labels = [line.split("  ")[0] for line in text.splitlines()[1:] if not line.startswith(" ")]
    assert labels == [
        "Rows", "Tokens", "Cost", "Latency", "Attempts", "Rate limits", "Throughput", "Runs",
    ]  # fmt: skip
    assert "38 ok, 2 failed, 0 invalid" in text
    assert "rejected 2" in text
    assert "41 attempts: 1 retries" in text
    assert len(text.splitlines()) <= 24


async def test_rows_never_answered_have_no_latency(tmp_path: Path, sim: SimServer) -> None:
    """When no row got a reply, latency percentiles are null in JSON and n/a in text."""
    job = _job(tmp_path, sim.url, rows=3, limits={"tpm": 30})
    await arun_job(job)
    report = build_report(job)
    assert report.by_status["failed"] == 3 and report.errors_by_type == {"too_large": 3}
    assert json.loads(report_json(report))["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert "p50 n/a, p95 n/a, p99 n/a" in report_text(report)
    assert report.cost.total_usd == 0.0


async def test_job_file_and_run_directory_give_the_same_report(faulty, tmp_path: Path) -> None:
    """The report can be asked for by job file, JobSpec or run directory alike."""
    job, _, report = faulty
    assert build_report(tmp_path / "job.toml") == report
    assert build_report(str(job.output_dir)) == report


def test_a_run_directory_without_results_is_a_user_error(tmp_path: Path) -> None:
    """An empty run directory, or a job never run, is exit 2 with 'no results yet'."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(batchllm.UserError, match="no results yet") as caught:
        build_report(tmp_path / "empty")
    assert caught.value.exit_code == 2
    write_csv(tmp_path / "input.csv", ticket_rows(3))
    never_run = write_job(tmp_path, job_data(None))
    with pytest.raises(batchllm.UserError, match="no results yet"):
        build_report(never_run)
