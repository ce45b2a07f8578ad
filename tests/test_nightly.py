"""Unattended use: incremental runs on a growing input, validate, and keys that never leak."""

from __future__ import annotations

import csv
from pathlib import Path

import structlog
from click.testing import CliRunner

import batchllm
from batchllm.cli import main
from batchllm.log import configure
from batchllm.preflight import api_key
from batchllm.run.pipeline import arun_job
from batchllm.simulate import Fault, SimConfig, SimServer
from conftest import job_data, ticket_rows, write_csv, write_job

FAKE_KEY = "sk-batchllmtest-NEVERPRINT-7f3a9c2e51d04b68"


async def test_a_grown_input_sends_only_its_new_rows(tmp_path: Path, sim: SimServer) -> None:
    """Nightly: yesterday's rows are reused, today's are sent, and runs lists both nights."""
    rows = ticket_rows(80)
    write_csv(tmp_path / "input.csv", rows[:50])
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    assert (await arun_job(job)).sent == 50
    with (tmp_path / "input.csv").open("a", newline="", encoding="utf-8") as handle:
        csv.DictWriter(handle, fieldnames=list(rows[0])).writerows(rows[50:])
    second = await arun_job(job)
    assert (second.sent, second.reused, second.ok) == (30, 50, 30)
    assert sim.stats()["requests"] == 80
    runs = batchllm.query(job, "select rows, reused, sent, ok from runs order by run_id")
    assert runs.to_pylist() == [
        {"rows": 50, "reused": 0, "sent": 50, "ok": 50},
        {"rows": 80, "reused": 50, "sent": 30, "ok": 30},
    ]
    assert batchllm.query(job, "select count(*) as n from results").to_pylist() == [{"n": 80}]


def test_validate_reports_every_problem_at_once(
    tmp_path: Path, sim: SimServer, monkeypatch
) -> None:
    """One validate call lists the template, price, key and run-dir problems together."""
    monkeypatch.delenv("BATCHLLM_TEST_ABSENT_KEY", raising=False)
    write_csv(tmp_path / "input.csv", ticket_rows(3))
    (tmp_path / "occupied").write_text("a file")
    data = job_data(
        sim.url,
        prompt={"template": "{{ body }}"},
        model={"name": "acme-7", "api_key_env": "BATCHLLM_TEST_ABSENT_KEY"},
        output={"dir": "occupied/run"},
    )
    result = CliRunner().invoke(main, ["validate", str(write_job(tmp_path, data))])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 4
    joined = "\n".join(lines)
    for part in ("column 'body'", "no price known", "BATCHLLM_TEST_ABSENT_KEY", "occupied"):
        assert part in joined
    assert sim.stats()["requests"] == 0


def test_validate_passes_a_good_job(tmp_path: Path, sim: SimServer) -> None:
    """A job that can run validates with exit 0 and sends nothing."""
    write_csv(tmp_path / "input.csv", ticket_rows(3))
    result = CliRunner().invoke(main, ["validate", str(write_job(tmp_path, job_data(sim.url)))])
    assert result.exit_code == 0 and ": ok (" in result.stdout
    assert sim.stats()["requests"] == 0


def test_the_api_key_never_appears_in_anything_written(tmp_path: Path, sims, monkeypatch) -> None:
    """Success, retries, failed rows, a bad-key stop, estimate, report and --help: no key."""
    monkeypatch.setenv("BATCHLLM_FAKE_KEY", FAKE_KEY)
    good = sims.start(SimConfig(latency_ms=1, jitter_ms=0, api_key=FAKE_KEY))
    wrong = sims.start(SimConfig(latency_ms=1, jitter_ms=0, api_key="sk-some-other-key-0000"))
    write_csv(tmp_path / "input.csv", ticket_rows(30))
    model = {"api_key_env": "BATCHLLM_FAKE_KEY"}
    job = write_job(tmp_path, job_data(good.url, model=model, retry={"max_attempts": 2}))
    bad = write_job(
        tmp_path, job_data(wrong.url, model=model, output={"dir": "bad-run"}), name="bad.toml"
    )
    good.script([Fault("500", count=3), Fault("429", retry_after_s=0.01), Fault("400")])
    outputs = []
    for args in (
        ["-v", "--log-format", "json", "run", str(job)],
        ["-v", "--log-format", "console", "run", "--fresh", str(job)],
        ["-v", "run", str(bad)],
        ["-v", "estimate", "--sample", "5", str(job)],
        ["report", str(job)],
        ["report", "--json", str(job)],
        ["query", str(job), "select * from all_results"],
        ["validate", str(job)],
        ["--help"],
        ["run", "--help"],
    ):
        result = CliRunner().invoke(main, args)
        outputs.append(result.stdout + result.stderr + repr(result.exception))
    written = [path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()]
    middle = FAKE_KEY[3:-4].encode()
    for blob in [out.encode() for out in outputs] + written:
        assert FAKE_KEY.encode() not in blob
        assert middle not in blob
    assert any("auth" in out for out in outputs)  # the bad-key run did fail, and said so


def test_a_log_event_carrying_the_key_prints_stars(tmp_path: Path, monkeypatch, capsys) -> None:
    """Once the job's key is read, any log field that holds it by mistake shows *** instead."""
    monkeypatch.setenv("BATCHLLM_FAKE_KEY", FAKE_KEY)
    write_csv(tmp_path / "input.csv", ticket_rows(1))
    data = job_data("http://127.0.0.1:9/v1", model={"api_key_env": "BATCHLLM_FAKE_KEY"})
    job = batchllm.load_job(write_job(tmp_path, data))
    saved = structlog.get_config()
    try:
        configure("json")  # bound to this test's captured stderr, so put back afterwards
        assert api_key(job) == FAKE_KEY
        structlog.get_logger("batchllm").warning("request.failed", error=f"401 for {FAKE_KEY}")
    finally:
        structlog.configure(**saved)
    err = capsys.readouterr().err
    assert FAKE_KEY not in err and "401 for ***" in err
