"""Shard planning and the [run] section, without Ray."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchllm.cli import main
from batchllm.errors import JobFileError, RunDirError, UserError
from batchllm.job import JobSpec, load_job
from batchllm.keys import row_key
from batchllm.scale.backend import arun
from batchllm.scale.shards import ShardSource, settle_plan, shard_of
from batchllm.tally import RunOptions
from conftest import job_data, ticket_rows, write_csv, write_job


def test_run_section_is_read(tmp_path: Path) -> None:
    """[run] backend, shards and address reach the JobSpec; the default is the local backend."""
    plain = load_job(write_job(tmp_path, job_data(None), "plain.toml"))
    assert (plain.run.backend, plain.run.shards) == ("local", 4)
    data = job_data(None, run={"backend": "ray", "shards": 3, "address": "auto"})
    job = load_job(write_job(tmp_path, data))
    assert (job.run.backend, job.run.shards, job.run.address) == ("ray", 3, "auto")


def test_unknown_backend_is_refused(tmp_path: Path) -> None:
    """A backend other than local or ray is a job-file error."""
    with pytest.raises(JobFileError, match="backend"):
        load_job(write_job(tmp_path, job_data(None, run={"backend": "spark"})))


def _keys(job: JobSpec, shard: int, shards: int, limit: int | None) -> list[str]:
    """The keys of the rows ``ShardSource`` gives ``shard`` (its own key, else its content's)."""
    id_column = job.input.id_column
    source = ShardSource(job.input, shard, shards, limit)
    return [row.key or row_key(row.data, id_column) for rows in source.rows() for row in rows]


def test_rows_split_into_disjoint_stable_shards(tmp_path: Path) -> None:
    """Every row is in exactly one of the shards, the same one each time."""
    write_csv(tmp_path / "input.csv", ticket_rows(200))
    job = load_job(write_job(tmp_path, job_data(None)))
    keys = [_keys(job, i, 3, None) for i in range(3)]
    flat = [key for shard in keys for key in shard]
    assert sorted(flat) == sorted(f"T{i:05d}" for i in range(200))
    assert all(shard_of(str(key), 3) == i for i, shard in enumerate(keys) for key in shard)
    assert len([key for i in range(3) for key in _keys(job, i, 3, 50)]) == 50


def test_another_shard_count_is_refused(tmp_path: Path) -> None:
    """A directory planned in 4 shards refuses 2: its rows would move between shards."""
    settle_plan(tmp_path, "job", 4)
    settle_plan(tmp_path, "job", 4)
    with pytest.raises(RunDirError, match="--shards 4"):
        settle_plan(tmp_path, "job", 2)


def test_a_deadline_on_ray_is_refused_by_the_api_and_the_command_line(tmp_path: Path) -> None:
    """A job with a [plan] deadline and backend "ray" is refused before anything is sent,
    through the Python API as through `batchllm run` (one line, exit 2)."""
    write_csv(tmp_path / "input.csv", ticket_rows(5))
    deadline = datetime.fromtimestamp(time.time() + 3600).astimezone().isoformat()
    data = job_data(None, run={"backend": "ray", "shards": 2}, plan={"deadline": deadline})
    path = write_job(tmp_path, data)
    with pytest.raises(UserError, match="deadline is planned on the local backend"):
        asyncio.run(arun(load_job(path), RunOptions()))
    done = CliRunner().invoke(main, ["run", str(path)])
    assert done.exit_code == 2
    assert "deadline is planned on the local backend, not on Ray" in done.output
    assert not (tmp_path / "run").exists()
