"""Unattended use: incremental runs on a growing input, validate, and keys that never leak."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import structlog
from click.testing import CliRunner

import batchllm
from batchllm.cli import main
from batchllm.keys import batch_digests, batch_keys, digest_strings, row_key
from batchllm.log import configure
from batchllm.preflight import api_key
from batchllm.render import input_hash
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


async def test_more_rows_than_a_batch_resume_column_wise(tmp_path: Path, sim: SimServer) -> None:
    """Done rows over many read batches are skipped; a repeated id in a later batch is refused."""
    rows = ticket_rows(3000)
    rows[1500]["id"] = ""  # no id: keyed by its content
    write_csv(tmp_path / "input.csv", rows)
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    assert (await arun_job(job)).sent == 3000
    again = [*rows, {"id": "T00003", "text": "a second row with an id seen long before"}]
    write_csv(tmp_path / "input.csv", [*again, {"id": "T09999", "text": "new"}])
    second = await arun_job(job)
    assert (second.sent, second.reused) == (1, 3000)
    assert sim.stats()["requests"] == 3001
    refused = batchllm.query(job, "select error from results where status = 'failed'").to_pylist()
    assert len(refused) == 1 and "duplicate id 'T00003'" in refused[0]["error"]


async def test_a_run_dir_with_input_hashes_of_the_old_kind_resumes(
    tmp_path: Path, sim: SimServer
) -> None:
    """Rows stored with an input hash of an older kind are recognised by request: none resent."""
    rows = ticket_rows(40)
    write_csv(tmp_path / "input.csv", rows)
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    assert (await arun_job(job)).sent == 40
    by_key = {row["id"]: input_hash(row) for row in rows}
    for part in (job.output_dir / "results").glob("*.parquet"):
        table = pq.read_table(part)
        old = pa.array([by_key[key] for key in table.column("row_key").to_pylist()])
        at = table.schema.get_field_index("input_hash")
        pq.write_table(table.set_column(at, "input_hash", old), part)
    second = await arun_job(job)
    assert (second.sent, second.reused) == (0, 40)
    assert sim.stats()["requests"] == 40


def test_column_wise_keys_are_the_row_keys() -> None:
    """Keys made a batch at a time equal ``row_key`` of each row, escapes and all."""
    ids = ["a", "h:x", "", "\\q", "line:z", "7"]
    batch = pa.record_batch({"id": pa.array([i.encode() for i in ids]), "t": ["1"] * 6})
    keyed = batch_keys(batch, "id")
    assert keyed is not None
    keys, missing = keyed
    assert missing.tolist() == [False, False, True, False, False, False]
    expected = [row_key({"id": i, "t": "1"}, "id") for i in ids]
    got = keys.to_pylist()
    assert [k for k, m in zip(got, missing, strict=True) if not m] == [
        k for k, m in zip(expected, missing, strict=True) if not m
    ]


def test_column_wise_input_hashes_tell_rows_apart() -> None:
    """A changed cell, a null and an empty cell, and moved text all change the input hash."""
    batch = pa.record_batch(
        {"a": ["x", "x", "x", None, "", "xy"], "b": ["y", "y", "z", "", "", ""]}
    )
    digests = digest_strings(batch_digests(batch)).to_pylist()
    assert digests[0] == digests[1]
    assert len(set(digests[1:])) == 5
    assert all(len(d) == 16 for d in digests)
