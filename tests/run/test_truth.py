"""What a run reports is what its results hold: re-runs, outage and refusal stops, probes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import batchllm
from batchllm.cli import main
from batchllm.run.pipeline import arun_job
from batchllm.simulate import Fault, SimServer
from conftest import job_data, ticket_rows, write_csv, write_job


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--log-format", "json", *args])
    return result.exit_code, result.stdout, result.stderr


def _job_file(tmp_path: Path, sim: SimServer, rows: int = 30, **sections: dict) -> Path:
    write_csv(tmp_path / "input.csv", ticket_rows(rows))
    return write_job(tmp_path, job_data(sim.url, **sections))


# --- a re-run reports the failures still in the results ------------------------------------


def test_a_rerun_still_reports_the_failed_rows_and_exits_1(tmp_path: Path, sim: SimServer) -> None:
    """After a run that left failed rows, the same command again says so and exits 1."""
    job = _job_file(tmp_path, sim)
    sim.script([Fault("400", count=3)])
    assert _cli("run", str(job))[0] == 1
    code, out, err = _cli("run", str(job))
    assert code == 1
    assert "30 already done (3 of them failed or invalid)" in out
    assert "3 rows failed or invalid in the results; --retry-failed" in out
    assert "3 rows failed or invalid" in err and "3 from earlier runs" in err
    assert "--retry-failed" in err.strip().splitlines()[-1]
    code, _, _ = _cli("run", "--max-failure-rate", "0.2", str(job))
    assert code == 0
    code, out, _ = _cli("run", "--retry-failed", str(job))
    assert code == 0 and "3 ok, 0 failed, 27 already done" in out
    assert _cli("run", str(job))[0] == 0


async def test_the_summary_counts_reused_failures_and_input_error_rows(
    tmp_path: Path, sim: SimServer
) -> None:
    """Reused rows whose result failed (sent or input error rows) count in the summary and
    the ``runs`` view; a clean re-run of clean results counts none."""
    rows = [*ticket_rows(10), ticket_rows(1)[0]]  # the last row repeats an id: an error row
    write_csv(tmp_path / "input.csv", rows)
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url, limits={"concurrency": 1})))
    sim.script([Fault("400", count=2)])
    first = await arun_job(job)
    assert (first.ok, first.failed, first.reused_failed) == (8, 3, 0)
    again = await arun_job(job)
    assert (again.sent, again.reused, again.reused_failed) == (0, 11, 3)
    assert again.failure_rate == pytest.approx(3 / 11)
    runs = batchllm.query(job, "select reused_failed from runs order by run_number")
    assert runs.column(0).to_pylist() == [0, 3]


# --- only requests that reached the provider count towards an outage ------------------------


async def test_shared_replies_do_not_hide_an_outage(tmp_path: Path, sim: SimServer) -> None:
    """Rows answered from an identical request's reply neither reset nor advance the outage
    count: a provider that fails every request it gets still stops the run."""
    texts = [f"first {i}" for i in range(10)]
    rows = [{"id": f"A{i}", "text": texts[i]} for i in range(10)]
    for i in range(10, 400):
        text = texts[i % 10] if i % 2 else f"new {i}"
        rows.append({"id": f"R{i}", "text": text})
    write_csv(tmp_path / "input.csv", rows)
    data = job_data(sim.url, limits={"concurrency": 1}, retry={"max_attempts": 1})
    job = batchllm.load_job(write_job(tmp_path, data))
    sim.script([Fault("500", count=1000, after=10)])
    with pytest.raises(batchllm.FatalProviderError, match="provider unavailable: 50 rows"):
        await arun_job(job)
    assert sim.stats()["requests"] == 10 + 50


# --- a wrong model or endpoint stops the run after a few identical refusals -----------------


def _refusing_jobs(sim: SimServer) -> dict[str, dict[str, dict[str, object]]]:
    priced = {"input_per_mtok": 1.0, "output_per_mtok": 1.0}  # models no price table knows
    return {
        "unknown model": {"model": {"name": "no-such-model"}, "pricing": priced},
        "base_url without /v1": {"model": {"base_url": sim.root}},
        "anthropic base_url with /v1": {
            "model": {
                "provider": "anthropic",
                "name": "claude-haiku-4-5",
                "base_url": sim.url,
                "api_key_env": "TEST_ANTHROPIC_KEY",
            }
        },
    }


@pytest.mark.parametrize(
    "case", ["unknown model", "base_url without /v1", "anthropic base_url with /v1"]
)
def test_identical_refusals_stop_the_run_with_exit_4(
    tmp_path: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """Five identical 404s with no success stop the run: exit 4, one line naming the URL, the
    server's message and the likely fix, a handful of requests instead of one per row."""
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-test-0000")
    sections = _refusing_jobs(sim)[case]
    job = _job_file(tmp_path, sim, rows=200, limits={"concurrency": 2}, **sections)
    code, _, err = _cli("run", str(job))
    assert code == 4, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: http://127.0.0.1:") and "HTTP 404" in last
    assert "check base_url (does it end in /v1?) and the model name" in last
    assert sim.stats()["requests"] <= 5 + 2
    if case == "unknown model":
        assert "no-such-model` does not exist" in last


def test_refusals_after_a_success_are_row_errors(tmp_path: Path, sim: SimServer) -> None:
    """Once a request has succeeded, identical refusals are the rows' own: the run goes on."""
    job = _job_file(tmp_path, sim, rows=20, limits={"concurrency": 1})
    sim.script([Fault("400", count=8, after=1)])
    code, out, _ = _cli("run", "--max-failure-rate", "1", str(job))
    assert code == 0
    assert "12 ok, 8 failed" in out


def test_validate_probe_reports_a_refused_request_before_a_run(
    tmp_path: Path, sim: SimServer
) -> None:
    """``validate --probe`` sends one request and exits 4 when the model is unknown; without
    --probe, nothing is sent and the job is ok; nothing is written to the run directory."""
    unknown = _refusing_jobs(sim)["unknown model"]
    job = _job_file(tmp_path, sim, **unknown)
    code, out, _ = _cli("validate", str(job))
    assert code == 0 and "ok" in out
    assert sim.stats()["requests"] == 0
    code, _, err = _cli("validate", "--probe", str(job))
    assert code == 4
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: probe: http://127.0.0.1:") and "HTTP 404" in last
    assert "/v1/chat/completions" in last and "check base_url" in last
    assert sim.stats()["requests"] == 1
    assert not (tmp_path / "run").exists()


def test_validate_probe_passes_against_a_working_server(tmp_path: Path, sim: SimServer) -> None:
    """A probe that is answered exits 0 and says so; its request carries a small max_tokens."""
    job = _job_file(tmp_path, sim, model={"params": {"max_tokens": 500}})
    code, out, err = _cli("validate", "--probe", str(job))
    assert code == 0, err
    assert "probe ok" in out
    stats = sim.stats()
    assert stats["requests"] == 1 and 0 < stats["completion_tokens"] <= 16
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert not [e for e in events if e.get("level") == "error"]


# --- user ids and content hashes never share a namespace ------------------------------------


async def test_ids_that_look_like_content_hashes_are_still_checked_for_duplicates(
    tmp_path: Path, sim: SimServer
) -> None:
    """Two rows with the id ``h:42`` are a duplicate (one sent, one error row); an ordinary
    id keeps its key, an id with an internal prefix is escaped."""
    rows = [
        {"id": "h:42", "text": "first"},
        {"id": "h:42", "text": "second"},
        {"id": "T1", "text": "third"},
    ]
    write_csv(tmp_path / "input.csv", rows)
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    summary = await arun_job(job)
    assert (summary.sent, summary.ok, summary.failed) == (2, 2, 1)
    keys = batchllm.query(job, "select row_key, status from results order by row_key")
    found = {(r["row_key"].split("#")[0], r["status"]) for r in keys.to_pylist()}
    assert found == {("T1", "ok"), ("\\h:42", "ok"), ("\\h:42", "failed")}
    assert (await arun_job(job)).sent == 0


# --- query is read-only unless asked ----------------------------------------------------------


def test_query_refuses_writes_unless_allowed(tmp_path: Path, sim: SimServer) -> None:
    """COPY ... TO is refused by default (exit 2, nothing written) and runs with
    --allow-writes; SELECT runs either way."""
    job = _job_file(tmp_path, sim, rows=5)
    assert _cli("run", str(job))[0] == 0
    target = tmp_path / "export.csv"
    copy = f"copy (select row_key from results) to '{target}'"
    code, _, err = _cli("query", str(job), copy)
    assert code == 2 and "read-only" in err and "--allow-writes" in err
    assert not target.exists()
    code, _, err = _cli("query", "--allow-writes", str(job), copy)
    assert code == 0, err
    assert len(target.read_text().splitlines()) == 6
    assert _cli("query", str(job), "select count(*) from results")[0] == 0


def test_twenty_identical_400s_before_any_success_stop_the_run(
    tmp_path: Path, sim: SimServer
) -> None:
    """A 400 may be a row's own, so it takes 20 alike with no success to stop the run."""
    job = _job_file(tmp_path, sim, rows=100, limits={"concurrency": 1})
    sim.script([Fault("400", count=100)])
    code, _, err = _cli("run", str(job))
    assert code == 4
    assert "refused the first 20 requests alike (HTTP 400" in err.strip().splitlines()[-1]
    assert sim.stats()["requests"] == 20
