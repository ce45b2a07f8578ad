"""End-to-end runs over loopback against the simulated provider, through the Python API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import batchllm
from batchllm.run.pipeline import RunOptions, arun_job
from batchllm.simulate import Fault, SimServer
from conftest import job_data, ticket_rows, write_csv, write_job


def _job(tmp_path: Path, sim: SimServer, rows: int = 40, **sections: dict) -> batchllm.JobSpec:
    write_csv(tmp_path / "input.csv", ticket_rows(rows))
    return batchllm.load_job(write_job(tmp_path, job_data(sim.url, **sections)))


async def test_every_row_gets_one_ok_result_with_usage_and_cost(
    tmp_path: Path, sim: SimServer
) -> None:
    """A CSV run writes one ok row per input row, with tokens, cost and the copied columns."""
    job = _job(tmp_path, sim)
    summary = await arun_job(job)
    assert (summary.ok, summary.failed, summary.sent) == (40, 0, 40)
    table = batchllm.query(job, "select * from results order by row_key")
    assert table.num_rows == 40
    rows = table.to_pylist()
    assert rows[0]["row_key"] == rows[0]["id"] == "T00000"
    assert all(r["status"] == "ok" and r["output"] for r in rows)
    assert all(r["input_tokens"] > 0 and r["output_tokens"] > 0 and r["cost_usd"] > 0 for r in rows)
    assert all(len(r["request_key"]) == 32 and r["run_id"] == summary.run_id for r in rows)
    assert sim.stats()["ok"] == 40
    expected = sum(r["input_tokens"] * 0.15 + r["output_tokens"] * 0.6 for r in rows) / 1e6
    assert summary.cost_usd == pytest.approx(expected)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
async def test_parquet_and_jsonl_inputs_run(tmp_path: Path, sim: SimServer, fmt: str) -> None:
    """Parquet and JSON Lines inputs run like CSV, and copied columns keep their types."""
    rows = [{"id": i, "text": f"ticket number {i}", "score": i / 2} for i in range(25)]
    path = tmp_path / f"input.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    job = batchllm.load_job(
        write_job(
            tmp_path, job_data(sim.url, input={"path": path.name, "columns": ["id", "score"]})
        )
    )
    summary = await arun_job(job)
    assert summary.ok == 25
    table = batchllm.query(job, "select id, score, row_key from results order by id")
    assert table.schema.field("id").type == pa.int64()
    assert table.column("score").to_pylist() == [i / 2 for i in range(25)]
    assert table.column("row_key").to_pylist()[3] == "3"


async def test_gzip_csv_is_read(tmp_path: Path, sim: SimServer) -> None:
    """A gzip-compressed CSV is read without unpacking it first."""
    import gzip

    plain = write_csv(tmp_path / "plain.csv", ticket_rows(10))
    (tmp_path / "input.csv.gz").write_bytes(gzip.compress(plain.read_bytes()))
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url, input={"path": "input.csv.gz"})))
    assert (await arun_job(job)).ok == 10


async def test_resume_sends_only_the_rows_not_yet_done(tmp_path: Path, sim: SimServer) -> None:
    """A run cut short by --limit, re-run in full, sends only the remaining rows."""
    job = _job(tmp_path, sim, rows=50)
    first = await arun_job(job, RunOptions(limit=20))
    assert (first.ok, first.rows) == (20, 20)
    second = await arun_job(job)
    assert (second.reused, second.sent, second.ok) == (20, 30, 30)
    assert sim.stats()["requests"] == 50
    assert sim.stats()["duplicates"] == 0
    count = batchllm.query(job, "select count(*) as n, count(distinct row_key) as k from results")
    assert count.to_pylist() == [{"n": 50, "k": 50}]
    third = await arun_job(job)
    assert (third.sent, third.reused) == (0, 50)


async def test_a_changed_prompt_redoes_rows_and_results_keep_one_row_each(
    tmp_path: Path, sim: SimServer
) -> None:
    """Editing the template changes every request key, so rows are redone, once each in results."""
    job = _job(tmp_path, sim, rows=15)
    await arun_job(job)
    changed = batchllm.load_job(
        write_job(tmp_path, job_data(sim.url, prompt={"template": "Summarize: {{ text }}"}))
    )
    summary = await arun_job(changed)
    assert (summary.sent, summary.reused) == (15, 0)
    assert batchllm.query(changed, "select count(*) as n from results").to_pylist() == [{"n": 15}]
    runs = batchllm.query(changed, "select count(distinct run_id) as n from results")
    assert runs.to_pylist() == [{"n": 1}]
    history = batchllm.query(changed, "select count(*) as n from all_results").to_pylist()
    assert history == [{"n": 30}]


async def test_identical_requests_in_one_input_are_sent_once(
    tmp_path: Path, sim: SimServer
) -> None:
    """Rows that render to the same request share one call; only one of them carries its cost."""
    rows = [{"id": f"R{i}", "text": "same text" if i % 2 else f"text {i}"} for i in range(20)]
    write_csv(tmp_path / "input.csv", rows)
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url, limits={"concurrency": 4})))
    summary = await arun_job(job)
    assert summary.ok == 20
    assert sim.stats()["requests"] == 11
    shared = batchllm.query(
        job,
        "select count(*) as n, sum(cost_usd) > 0 as paid from results where output = "
        "(select output from results where row_key = 'R1')",
    ).to_pylist()
    assert shared[0]["n"] >= 10 and shared[0]["paid"]


async def test_transient_faults_are_retried_until_ok(tmp_path: Path, sims, sim: SimServer) -> None:
    """5xx, 429 with Retry-After, dropped connections and hung requests all end ok, once each."""
    sim.script(
        [
            Fault("500", count=3),
            Fault("429", count=3, retry_after_s=0.05),
            Fault("503"),
            Fault("502"),
            Fault("reset", count=2),
            Fault("hang"),
            Fault("529"),
        ]
    )
    job = _job(tmp_path, sim, rows=30, retry={"timeout_s": 1, "max_attempts": 6})
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (30, 0)
    attempts = batchllm.query(job, "select sum(attempts) as a, count(*) as n from results")
    assert attempts.to_pylist() == [{"a": 30 + 12, "n": 30}]
    assert sim.stats()["duplicates"] == 0


async def test_a_row_that_keeps_failing_becomes_a_failed_row(
    tmp_path: Path, sim: SimServer
) -> None:
    """After max_attempts the row is failed with its last error; the other rows go on."""
    sim.script([Fault("500", count=2)])
    job = _job(tmp_path, sim, rows=10, retry={"max_attempts": 2}, limits={"concurrency": 1})
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (9, 1)
    failed = batchllm.query(
        job, "select error_type, attempts, error from results where status = 'failed'"
    )
    row = failed.to_pylist()[0]
    assert (row["error_type"], row["attempts"]) == ("server_error", 2)
    assert "HTTP 500" in row["error"]


async def test_a_rejected_request_is_not_retried(tmp_path: Path, sim: SimServer) -> None:
    """A 400 fails its row at the first attempt."""
    sim.script([Fault("400")])
    job = _job(tmp_path, sim, rows=5, limits={"concurrency": 1})
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (4, 1)
    rows = batchllm.query(job, "select attempts, error_type from results where status = 'failed'")
    assert rows.to_pylist() == [{"attempts": 1, "error_type": "rejected"}]
    assert sim.stats()["requests"] == 5


async def test_retry_failed_sends_only_the_failed_rows(tmp_path: Path, sim: SimServer) -> None:
    """--retry-failed re-runs failed rows; ok rows are reused and results stay one per row."""
    sim.script([Fault("400", count=3)])
    job = _job(tmp_path, sim, rows=12, limits={"concurrency": 1})
    assert (await arun_job(job)).failed == 3
    again = await arun_job(job)
    assert again.sent == 0
    fixed = await arun_job(job, RunOptions(retry_failed=True))
    assert (fixed.sent, fixed.ok, fixed.reused) == (3, 3, 9)
    statuses = batchllm.query(job, "select status, count(*) as n from results group by 1")
    assert statuses.to_pylist() == [{"status": "ok", "n": 12}]


async def test_bad_key_stops_the_run_at_once(tmp_path: Path, sims, monkeypatch) -> None:
    """A 401 raises FatalProviderError after a handful of requests, not one per row."""
    from batchllm.simulate import SimConfig

    server = sims.start(SimConfig(latency_ms=2, api_key="sk-right-key-000"))
    monkeypatch.setenv("TEST_KEY", "sk-wrong-key-123456")
    job = _job(tmp_path, server, rows=200, model={"api_key_env": "TEST_KEY"})
    with pytest.raises(batchllm.FatalProviderError, match="auth") as caught:
        await arun_job(job)
    assert "sk-wrong-key-123456" not in str(caught.value)
    assert server.stats()["requests"] <= 8 + 8


async def test_exhausted_quota_stops_the_run(tmp_path: Path, sim: SimServer) -> None:
    """A 429 insufficient_quota is not retried: the run stops with a fatal error."""
    sim.script([Fault("insufficient_quota", count=50)])
    job = _job(tmp_path, sim, rows=100, limits={"concurrency": 2})
    with pytest.raises(batchllm.FatalProviderError, match="quota"):
        await arun_job(job)
    assert sim.stats()["requests"] <= 4


async def test_a_request_larger_than_the_token_limit_fails_its_row(
    tmp_path: Path, sim: SimServer
) -> None:
    """With tpm below one request's need, the row fails as too_large instead of hanging."""
    job = _job(tmp_path, sim, rows=3, limits={"tpm": 30})
    summary = await arun_job(job)
    assert summary.failed == 3
    kinds = batchllm.query(job, "select distinct error_type from results").column(0).to_pylist()
    assert kinds == ["too_large"]
    assert sim.stats()["requests"] == 0


async def test_a_null_printed_by_the_template_fails_only_that_row(
    tmp_path: Path, sim: SimServer
) -> None:
    """A null cell in a template column makes an error row with the reason; the rest run."""
    lines = [{"id": 1, "text": "fine"}, {"id": 2, "text": None}, {"id": 3, "text": "also fine"}]
    (tmp_path / "input.jsonl").write_text("\n".join(json.dumps(r) for r in lines))
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url, input={"path": "input.jsonl"})))
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (2, 1)
    row = batchllm.query(job, "select id, error_type, error from results where status = 'failed'")
    assert row.to_pylist()[0]["id"] == 2
    assert "null" in row.to_pylist()[0]["error"]


async def test_rate_limits_are_respected_client_side(tmp_path: Path, sims) -> None:
    """Against a server enforcing 1,200 RPM, a client limited to 1,200 RPM gets no 429s."""
    from batchllm.simulate import SimConfig

    server = sims.start(SimConfig(rpm=1200, latency_ms=5, jitter_ms=2))
    job = _job(tmp_path, server, rows=60, limits={"rpm": 1200, "concurrency": 16})
    summary = await arun_job(job)
    assert summary.ok == 60
    assert server.stats()["rate_limited"] == 0


async def test_limits_left_out_are_learned_from_headers(tmp_path: Path, sims) -> None:
    """With no limits in the job file, the server's headers slow the client to its limit."""
    from batchllm.simulate import SimConfig

    server = sims.start(SimConfig(rpm=1200, latency_ms=5, jitter_ms=2))
    job = _job(tmp_path, server, rows=80, limits={"concurrency": 4})
    summary = await arun_job(job)
    assert summary.ok == 80
    assert server.stats()["rate_limited"] <= 8


async def test_second_run_on_a_locked_directory_is_refused(tmp_path: Path, sim: SimServer) -> None:
    """While one run holds the run directory, another refuses with a clear error."""
    job = _job(tmp_path, sim, rows=200, limits={"rpm": 600, "concurrency": 2})
    started = asyncio.Event()
    first = asyncio.ensure_future(arun_job(job, progress=lambda _: started.set()))
    await started.wait()  # the progress hook first ticks once the run holds its directory
    with pytest.raises(batchllm.UserError, match="another batchllm run"):
        await arun_job(job)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_provider_that_keeps_failing_stops_the_run(tmp_path: Path, sims) -> None:
    """When every row fails even after its retries, the run stops instead of failing them all."""
    from batchllm.simulate import SimConfig

    server = sims.start(SimConfig(latency_ms=1, jitter_ms=0, error_rate=1.0))
    job = _job(tmp_path, server, rows=2000, retry={"max_attempts": 1}, limits={"concurrency": 4})
    with pytest.raises(batchllm.FatalProviderError, match="provider unavailable: 50 rows in a row"):
        await arun_job(job)
    failed = batchllm.query(job, "select count(*) as n from results where status = 'failed'")
    assert 50 <= failed.to_pylist()[0]["n"] < 60
    assert server.stats()["requests"] < 60


async def test_scattered_failures_do_not_stop_the_run(tmp_path: Path, sims) -> None:
    """Failures between successes are row errors; the run finishes."""
    from batchllm.simulate import SimConfig

    server = sims.start(SimConfig(latency_ms=1, jitter_ms=0, error_rate=0.3, seed=4))
    job = _job(tmp_path, server, rows=300, retry={"max_attempts": 1}, limits={"concurrency": 4})
    summary = await arun_job(job)
    assert summary.ok + summary.failed == 300
    assert summary.failed > 50
