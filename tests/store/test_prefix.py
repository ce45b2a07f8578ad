"""The input's unchanged prefix: a grown input is read from where the last run's read ended."""

from __future__ import annotations

import csv
import gzip
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

import batchllm
from batchllm.estimate.scan import scan
from batchllm.run.pipeline import arun_job
from batchllm.simulate import Fault, SimServer
from batchllm.tally import RunOptions
from conftest import (
    job_data,
    result_counts,
    run_counts,
    sim_stats,
    ticket_rows,
    write_csv,
    write_job,
)


def _append_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("a", newline="", encoding="utf-8") as handle:
        csv.DictWriter(handle, fieldnames=list(rows[0])).writerows(rows)


def _write_jsonl(path: Path, rows: list[dict[str, Any]], mode: str = "wb") -> None:
    with path.open(mode) as handle:
        handle.writelines(orjson.dumps(row) + b"\n" for row in rows)


async def test_a_grown_csv_is_read_from_the_end_of_its_last_read(
    tmp_path: Path, sim: SimServer
) -> None:
    """The 50 rows of the first night are counted done unread; only the 30 appended are read."""
    rows = ticket_rows(80)
    write_csv(tmp_path / "input.csv", rows[:50])
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    await arun_job(job)
    _append_csv(tmp_path / "input.csv", rows[50:])
    second = await arun_job(job)
    assert (second.rows, second.reused, second.sent) == (80, 50, 30)
    third = await arun_job(job)
    assert (third.rows, third.reused, third.sent) == (80, 80, 0)
    assert [run["prefix_rows"] for run in run_counts(job)] == [0, 50, 80]
    assert sim.stats()["requests"] == 80
    assert result_counts(job) == [{"n": 80, "k": 80, "s": "ok"}]


async def test_a_grown_jsonl_is_read_from_the_end_of_its_last_read(
    tmp_path: Path, sim: SimServer
) -> None:
    """JSON Lines with typed cells: the appended rows read alone are keyed as a whole read."""
    rows = [{"id": i, "text": f"ticket {i}", "score": i / 4, "open": i % 3 == 0} for i in range(40)]
    _write_jsonl(tmp_path / "input.jsonl", rows[:25])
    data = job_data(sim.url, input={"path": "input.jsonl"})
    job = batchllm.load_job(write_job(tmp_path, data))
    await arun_job(job)
    _write_jsonl(tmp_path / "input.jsonl", rows[25:], "ab")
    second = await arun_job(job)
    assert (second.reused, second.sent) == (25, 15)
    assert [run["prefix_rows"] for run in run_counts(job)] == [0, 25]
    # the appended rows were keyed exactly as a read of the whole file keys them
    (tmp_path / "run" / "prefix" / "chunks.json").unlink()
    whole = await arun_job(job)
    assert (whole.reused, whole.sent, whole.rows) == (40, 0, 40)
    assert result_counts(job) == [{"n": 40, "k": 40, "s": "ok"}]


async def test_a_changed_prefix_is_read_in_full_and_each_row_is_right(
    tmp_path: Path, sim: SimServer
) -> None:
    """A row edited in place (the bytes before the end differ): nothing is skipped, the edited
    row and the appended ones are sent, and results hold each row once, the edit's reply."""
    rows = ticket_rows(60)
    write_csv(tmp_path / "input.csv", rows[:40])
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    await arun_job(job)
    rows[7] = {**rows[7], "text": rows[7]["text"].replace("invoice", "INVOICE")}  # same length
    write_csv(tmp_path / "input.csv", rows)
    second = await arun_job(job)
    assert (second.reused, second.sent) == (39, 21)
    assert [run["prefix_rows"] for run in run_counts(job)] == [0, 0]
    assert result_counts(job) == [{"n": 60, "k": 60, "s": "ok"}]
    latest = batchllm.query(job, "select input_hash from results where row_key = 'T00007'")
    first = batchllm.query(
        job, "select input_hash from all_results where row_key = 'T00007' order by seq limit 1"
    )
    assert latest.to_pylist() != first.to_pylist()
    third = await arun_job(job)  # the read in full was recorded: the next night skips it
    assert (third.reused, third.sent) == (60, 0)
    assert [run["prefix_rows"] for run in run_counts(job)] == [0, 0, 60]


async def test_a_prefix_with_a_failed_row_is_read_again_with_retry_failed(
    tmp_path: Path, sim: SimServer
) -> None:
    """Failed rows count as done (reused, failed) unread; --retry-failed reads and resends them."""
    write_csv(tmp_path / "input.csv", ticket_rows(20))
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    sim.script([Fault("400", count=2)])
    await arun_job(job)
    again = await arun_job(job)
    assert (again.reused, again.reused_failed, again.sent) == (20, 2, 0)
    retried = await arun_job(job, RunOptions(retry_failed=True))
    assert (retried.sent, retried.ok) == (2, 2)
    assert [run["prefix_rows"] for run in run_counts(job)] == [0, 20, 0]
    assert result_counts(job) == [{"n": 20, "k": 20, "s": "ok"}]


async def test_an_appended_row_with_a_prefix_id_is_a_duplicate(
    tmp_path: Path, sim: SimServer
) -> None:
    """Ids of the unread prefix are still seen: an appended row repeating one is refused."""
    rows = ticket_rows(10)
    write_csv(tmp_path / "input.csv", rows)
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    await arun_job(job)
    _append_csv(tmp_path / "input.csv", [{**rows[3], "text": "another text"}])
    second = await arun_job(job)
    assert (second.reused, second.sent, second.failed) == (10, 0, 1)
    errors = batchllm.query(job, "select error from results where status <> 'ok'").to_pylist()
    assert "duplicate id 'T00003'" in errors[0]["error"]


async def test_a_gzip_input_is_always_read_in_full(tmp_path: Path, sim: SimServer) -> None:
    """A compressed input has no byte offsets to start at: it is read whole, and right."""
    rows = ticket_rows(30)
    path = tmp_path / "input.csv.gz"
    lines = ["id,text", *(f'{r["id"]},"{r["text"].replace(chr(34), 2 * chr(34))}"' for r in rows)]
    path.write_bytes(gzip.compress(("\n".join(lines[:21]) + "\n").encode()))
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url, input={"path": "input.csv.gz"})))
    await arun_job(job)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    second = await arun_job(job)
    assert (second.reused, second.sent) == (20, 10)
    assert [run["prefix_rows"] for run in run_counts(job)] == [0, 0]
    assert not (tmp_path / "run" / "prefix").exists()
    assert result_counts(job) == [{"n": 30, "k": 30, "s": "ok"}]


async def test_the_estimate_skips_the_unread_prefix_too(tmp_path: Path, sim: SimServer) -> None:
    """The estimate's scan counts the prefix's rows done without reading them, as a run does."""
    rows = ticket_rows(50)
    write_csv(tmp_path / "input.csv", rows[:35])
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    await arun_job(job)
    _append_csv(tmp_path / "input.csv", rows[35:])
    found = scan(job, 0, None)
    assert (found.rows, found.to_do, found.to_send) == (50, 15, 15)


def test_a_killed_run_over_a_grown_input_then_a_rerun_does_each_row_once(
    tmp_path: Path, sim_process: str
) -> None:
    """kill -9 while the appended rows are sent (their read already recorded): the re-run reads
    them again, sends only what is missing, and every row is in the results exactly once."""
    rows = ticket_rows(500)
    write_csv(tmp_path / "input.csv", rows[:100])
    path = write_job(tmp_path, job_data(sim_process, limits={"concurrency": 4}))
    command = [sys.executable, "-m", "batchllm", "run", str(path)]
    assert subprocess.run(command, capture_output=True, check=False).returncode == 0
    _append_csv(tmp_path / "input.csv", rows[100:])
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while sim_stats(sim_process)["ok"] < 200:
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)
    proc.kill()
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert subprocess.run(command, capture_output=True, check=False).returncode == 0
    job = batchllm.load_job(path)
    runs = run_counts(job)
    assert (runs[0]["prefix_rows"], runs[-1]["prefix_rows"]) == (0, 100)
    assert result_counts(job) == [{"n": 500, "k": 500, "s": "ok"}]
    assert sim_stats(sim_process)["ok"] <= 500 + 4
