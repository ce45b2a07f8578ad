"""A Parquet input's unchanged prefix: row groups written again unchanged are not read again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

import batchllm
from batchllm.estimate.scan import scan
from batchllm.run.pipeline import arun_job
from batchllm.simulate import Fault, SimServer
from batchllm.tally import RunOptions
from conftest import job_data, result_counts, run_counts, ticket_rows, write_job

GROUP = 25


def _write(path: Path, rows: list[dict[str, str]], group: int = GROUP) -> None:
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=group)


def _job(tmp_path: Path, sim: SimServer) -> Any:
    data = job_data(sim.url, input={"path": "input.parquet"})
    return batchllm.load_job(write_job(tmp_path, data))


def _chunks(tmp_path: Path) -> list[dict[str, Any]]:
    saved = orjson.loads((tmp_path / "run" / "prefix" / "chunks.json").read_bytes())
    chunks: list[dict[str, Any]] = saved["chunks"]
    return chunks


async def test_a_parquet_written_again_with_row_groups_appended_reads_only_those(
    tmp_path: Path, sim: SimServer
) -> None:
    """Night 2 over the same 4 row groups plus 2 appended: the 100 rows of the 4 are counted
    done unread, only the 50 appended are read and sent; night 3 reads nothing."""
    rows = ticket_rows(150)
    _write(tmp_path / "input.parquet", rows[:100])
    job = _job(tmp_path, sim)
    await arun_job(job)
    assert [chunk["rows"] for chunk in _chunks(tmp_path)] == [GROUP] * 4
    _write(tmp_path / "input.parquet", rows)
    second = await arun_job(job)
    assert (second.rows, second.reused, second.sent) == (150, 100, 50)
    third = await arun_job(job)
    assert (third.rows, third.reused, third.sent) == (150, 150, 0)
    assert [run["prefix_rows"] for run in run_counts(job)] == [0, 100, 150]
    assert sim.stats()["requests"] == 150
    assert result_counts(job) == [{"n": 150, "k": 150, "s": "ok"}]
    assert [chunk["rows"] for chunk in _chunks(tmp_path)] == [GROUP] * 6


async def test_a_parquet_whose_first_row_group_changed_is_read_in_full(
    tmp_path: Path, sim: SimServer
) -> None:
    """One cell edited in the first row group: nothing is skipped, the edited row is sent
    again, every other row is found done as it is read."""
    rows = ticket_rows(100)
    _write(tmp_path / "input.parquet", rows)
    job = _job(tmp_path, sim)
    await arun_job(job)
    rows[3] = {**rows[3], "text": rows[3]["text"].replace("invoice", "INVOICE")}
    _write(tmp_path / "input.parquet", rows)
    second = await arun_job(job)
    assert (second.rows, second.reused, second.sent) == (100, 99, 1)
    assert [run["prefix_rows"] for run in run_counts(job)] == [0, 0]
    assert result_counts(job) == [{"n": 100, "k": 100, "s": "ok"}]
    third = await arun_job(job)  # the read in full was recorded: the next night skips it
    assert (third.reused, third.sent, run_counts(job)[-1]["prefix_rows"]) == (100, 0, 100)


async def test_a_row_group_with_a_failed_row_is_read_again_with_retry_failed(
    tmp_path: Path, sim: SimServer
) -> None:
    """--retry-failed: the read starts at the latest at the row group of the failed row, which
    is sent again; the row groups before it are skipped unread."""
    _write(tmp_path / "input.parquet", ticket_rows(100))
    job = _job(tmp_path, sim)
    sim.script([Fault("400", count=1)])
    await arun_job(job)
    failed = batchllm.query(job, "select row_key from results where status <> 'ok'").to_pylist()
    group = int(failed[0]["row_key"].removeprefix("T")) // GROUP
    retried = await arun_job(job, RunOptions(retry_failed=True))
    assert (retried.rows, retried.reused, retried.sent, retried.ok) == (100, 99, 1, 1)
    assert run_counts(job)[-1]["prefix_rows"] == group * GROUP
    assert result_counts(job) == [{"n": 100, "k": 100, "s": "ok"}]


async def test_the_estimate_over_a_grown_parquet_counts_the_appended_rows(
    tmp_path: Path, sim: SimServer
) -> None:
    """The estimate's scan skips the unchanged row groups as a run does: only appended rows
    are to do."""
    rows = ticket_rows(120)
    _write(tmp_path / "input.parquet", rows[:75])
    job = _job(tmp_path, sim)
    await arun_job(job)
    _write(tmp_path / "input.parquet", rows)
    found = scan(job, 0, None)
    assert (found.rows, found.to_do, found.to_send) == (120, 45, 45)


async def test_a_parquet_written_with_other_row_groups_is_read_in_full(
    tmp_path: Path, sim: SimServer
) -> None:
    """The same rows in row groups of another size: no recorded row group is found, the file
    is read in full, and nothing is sent again."""
    rows = ticket_rows(100)
    _write(tmp_path / "input.parquet", rows)
    job = _job(tmp_path, sim)
    await arun_job(job)
    _write(tmp_path / "input.parquet", rows, group=40)
    second = await arun_job(job)
    assert (second.rows, second.reused, second.sent) == (100, 100, 0)
    assert run_counts(job)[-1]["prefix_rows"] == 0
    assert [chunk["rows"] for chunk in _chunks(tmp_path)] == [40, 40, 20]
    assert result_counts(job) == [{"n": 100, "k": 100, "s": "ok"}]


async def test_a_chunk_of_a_csv_never_stands_for_a_parquet_input(
    tmp_path: Path, sim: SimServer
) -> None:
    """The same rows first as CSV, then as Parquet in the same run directory: the Parquet file
    is read in full (its rows found done as read), not skipped on the CSV's chunks."""
    rows = ticket_rows(60)
    _write(tmp_path / "input.parquet", rows)
    path = tmp_path / "input.csv"
    path.write_text(
        "id,text\n"
        + "".join(f'{r["id"]},"{r["text"].replace(chr(34), 2 * chr(34))}"\n' for r in rows),
        encoding="utf-8",
    )
    await arun_job(batchllm.load_job(write_job(tmp_path, job_data(sim.url))))
    job = _job(tmp_path, sim)
    second = await arun_job(job)
    assert (second.rows, second.reused, second.sent) == (60, 60, 0)
    assert run_counts(job)[-1]["prefix_rows"] == 0


async def test_the_row_groups_of_many_nights_are_joined_into_one_file(
    tmp_path: Path, sim: SimServer
) -> None:
    """A row group appended each night: past 8 chunk files their chunks go into one file, each
    row group still its own chunk, and the next night still skips them all."""
    rows = ticket_rows(300)
    job = _job(tmp_path, sim)
    for night in range(1, 11):
        _write(tmp_path / "input.parquet", rows[: (night + 2) * GROUP])
        await arun_job(job)
    files = {chunk["file"] for chunk in _chunks(tmp_path)}
    assert [chunk["rows"] for chunk in _chunks(tmp_path)] == [GROUP] * 12
    assert len(files) == 2
    assert sorted(path.name for path in (tmp_path / "run" / "prefix").glob("chunk-*")) == sorted(
        files
    )
    last = await arun_job(job)
    assert (last.rows, last.reused, last.sent) == (300, 300, 0)
    assert run_counts(job)[-1]["prefix_rows"] == 300
    assert sim.stats()["requests"] == 300
