"""A shard's reading of the input: exactly the rows ``row_key`` puts in it, without Ray."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from batchllm.job import JobSpec, load_job
from batchllm.keys import row_key
from batchllm.query import query
from batchllm.run.context import Seams
from batchllm.run.pipeline import JobRun
from batchllm.scale.shards import ShardSource, shard_job, shard_of
from batchllm.simulate import SimServer
from batchllm.source import Source
from batchllm.tally import RunOptions
from conftest import job_data, write_job

SHARDS = 3


def _job(directory: Path, lines: list[str], **sections: dict[str, Any]) -> JobSpec:
    (directory / "input.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_job(write_job(directory, job_data(None, **sections)))


def _mixed_lines(count: int) -> list[str]:
    """Ids, rows without one, ids that look like batchllm's keys, and a line that cannot be
    read: every way a row finds its key."""
    lines = ["id,text"]
    for i in range(count):
        ident = "" if i % 11 == 0 else f"h:{i}" if i % 13 == 0 else f"T{i:05d}"
        lines.append(f"{ident},ticket {i % 17}")
        if i == 40:
            lines.append("T-bad,one,too many")
    return lines


def _by_rows(job: JobSpec, shard: int, limit: int | None) -> list[tuple[str, Any]]:
    """The shard's rows found one by one: each row of the input as a dict, its key, its shard."""
    found: list[tuple[str, Any]] = []
    taken = 0
    for rows in Source(job.input).rows():
        for row in rows:
            if limit is not None and taken == limit:
                return found
            taken += 1
            key = row.key or row_key(row.data, job.input.id_column)
            if shard_of(key, SHARDS) == shard:
                found.append((key, row.problem or row.data))
    return found


def _column_wise(job: JobSpec, shard: int, limit: int | None) -> list[tuple[str, Any]]:
    source = ShardSource(job.input, shard, SHARDS, limit)
    found: list[tuple[str, Any]] = []
    for rows in source.rows():
        found += [
            (row.key or row_key(row.data, job.input.id_column), row.problem or row.data)
            for row in rows
        ]
    return found


@pytest.mark.parametrize("limit", [None, 37])
def test_shard_reads_exactly_its_rows(tmp_path: Path, limit: int | None) -> None:
    """Each shard reads the rows (and unreadable lines) whose key hashes to it, in order."""
    job = _job(tmp_path, _mixed_lines(120))
    for shard in range(SHARDS):
        assert _column_wise(job, shard, limit) == _by_rows(job, shard, limit)
        assert ShardSource(job.input, shard, SHARDS, limit).count_rows() == len(
            _by_rows(job, shard, limit)
        )
    assert sum(len(_column_wise(job, s, limit)) for s in range(SHARDS)) == (limit or 121)


def test_integer_ids_and_content_keys_split_as_row_key_does(tmp_path: Path) -> None:
    """Integer ids, and rows keyed by their content (no id column), go to row_key's shard."""
    lines = ["id,text"] + [f"{i},ticket {i % 5}" for i in range(90)]
    numbered = _job(tmp_path, lines)
    plain = _job(tmp_path, lines, input={"id_column": None, "columns": None})
    for job in (numbered, plain):
        for shard in range(SHARDS):
            assert _column_wise(job, shard, None) == _by_rows(job, shard, None)


def test_a_shard_without_rows_reads_nothing(tmp_path: Path) -> None:
    """A shard that owns no row of a small input is no error: it reads no row."""
    job = _job(tmp_path, ["id,text", "T00001,one"])
    owner = shard_of("T00001", 8)
    empty = ShardSource(job.input, (owner + 1) % 8, 8, None)
    assert (list(empty.rows()), empty.count_rows()) == ([], 0)


def test_a_shard_run_sends_only_its_rows(tmp_path: Path, sim: SimServer) -> None:
    """A run given a shard's source sends its rows and records exactly them."""
    lines = ["id,text"] + [f"T{i:05d},ticket {i}" for i in range(60)]
    job = _job(tmp_path, lines, model={"base_url": sim.url})
    mine = [key for key, _ in _by_rows(job, 1, None)]
    source = ShardSource(job.input, 1, SHARDS, None)
    run = JobRun(shard_job(job, 1, SHARDS), RunOptions(), seams=Seams(source=source))
    summary = asyncio.run(run.execute())
    assert (summary.rows, summary.ok, sim.stats()["requests"]) == (len(mine),) * 3
    keys = query(shard_job(job, 1, SHARDS), "select row_key from results order by row_key")
    assert keys.column("row_key").to_pylist() == sorted(mine)


def test_a_shard_run_over_a_grown_input_skips_its_unchanged_prefix(
    tmp_path: Path, sim: SimServer
) -> None:
    """A shard's second run over an input that only grew reads from where the first ended and
    sends only its new rows; a shard with a limit reads from the start."""
    lines = ["id,text"] + [f"T{i:05d},ticket {i}" for i in range(60)]
    job = _job(tmp_path, lines, model={"base_url": sim.url})
    first = len(_by_rows(job, 1, None))

    def shard_run() -> Any:
        source = ShardSource(job.input, 1, SHARDS, None)
        run = JobRun(shard_job(job, 1, SHARDS), RunOptions(), seams=Seams(source=source))
        return asyncio.run(run.execute())

    shard_run()
    with (tmp_path / "input.csv").open("a", encoding="utf-8") as grown:
        grown.writelines(f"T{i:05d},ticket {i}\n" for i in range(60, 90))
    summary = shard_run()
    mine = len(_by_rows(job, 1, None))
    runs = query(
        shard_job(job, 1, SHARDS), "select prefix_rows, sent from runs order by run_number"
    )
    assert runs.to_pylist()[-1] == {"prefix_rows": first, "sent": mine - first}
    assert (summary.rows, summary.ok, sim.stats()["requests"]) == (mine, mine - first, mine)
    assert not ShardSource(job.input, 1, SHARDS, 10).spans


def test_a_shard_takes_its_share_of_each_pool_endpoint(tmp_path: Path) -> None:
    """A shard's job divides each endpoint's concurrency, rpm and tpm by the shards, never below
    1, and leaves an endpoint's unset limits unset and the job's own limits whole."""
    job = _job(tmp_path, ["id,text", "T1,a"], limits={"rpm": 900, "concurrency": 16})
    pool = ('[{ url = "http://a:1/v1", concurrency = 9, rpm = 600, tpm = 40000 }, '
            '{ url = "http://b:1/v1", concurrency = 2 }]')  # fmt: skip
    job.path.write_text(job.path.read_text().replace('"http://127.0.0.1:9/v1"', pool))
    job = load_job(job.path)

    shard = shard_job(job, 1, 4)

    figures = [(e.url, e.concurrency, e.rpm, e.tpm) for e in shard.model.endpoints]
    assert figures == [("http://a:1/v1", 2, 150, 10_000), ("http://b:1/v1", 1, None, None)]
    assert (shard.limits.rpm, shard.limits.concurrency) == (900, 16)
    assert shard_job(job, 0, 1).model.endpoints == job.model.endpoints  # one shard: all of it
