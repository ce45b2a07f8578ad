"""Problems met in the middle of a run: an input that stops parsing, a full disk, bad job values.

Each ends with the replies already received saved, the run recorded with its status, and one
line on stderr with the documented exit code; never a traceback.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

import batchllm
from batchllm.cli import main
from batchllm.simulate import SimServer
from conftest import job_data, write_job

#: text long enough that a few hundred rows pass pyarrow's first read block
_LONG = "the invoice total is wrong again " * 30


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--log-format", "json", *args])
    return result.exit_code, result.stdout, result.stderr


def _jsonl_rows(count: int, start: int = 0) -> list[str]:
    return [json.dumps({"id": i, "text": f"{i} {_LONG}"}) for i in range(start, start + count)]


def _assert_saved_and_recorded(job: Path, err: str, status: str) -> None:
    """One error line, no traceback; every reply received is in the results; the run says why."""
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ")
    runs = batchllm.query(job, "select status, ok, sent from runs").to_pylist()
    assert [run["status"] for run in runs] == [status]
    saved = batchllm.query(job, "select count(*) as n from results where status = 'ok'")
    assert runs[0]["ok"] == runs[0]["sent"] == saved.column(0)[0].as_py() > 0
    assert not list((job.parent / "run" / "journal").glob("*.jsonl"))


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("bad line", '{"id": 1, "text": \n'),
        ("id changes type", json.dumps({"id": "x-1", "text": "late"}) + "\n"),
    ],
)
def test_a_jsonl_problem_mid_input_saves_the_replies_and_exits_2(
    tmp_path: Path, sim: SimServer, name: str, problem: str
) -> None:
    """A bad JSONL line, or an id whose type changes after the first block, ends the run with
    exit 2 and a line that says how many rows were read; earlier replies are kept."""
    lines = _jsonl_rows(700)
    (tmp_path / "input.jsonl").write_text("\n".join(lines) + "\n" + problem, encoding="utf-8")
    job = write_job(tmp_path, job_data(sim.url, input={"path": "input.jsonl"}))
    code, _, err = _cli("run", str(job))
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert "cannot parse jsonl input after its first" in last and " in row " not in last
    assert "results of this run are saved" in last
    _assert_saved_and_recorded(job, err, "input_error")


def test_a_truncated_gzip_csv_saves_the_replies_and_exits_2(tmp_path: Path, sim: SimServer) -> None:
    """A .csv.gz cut short ends the run with exit 2 after saving the rows read before it."""
    blob = "x" * 100_000  # a column no prompt uses: many megabytes, few rows
    text = "id,text,blob\n" + "".join(f"{i},ticket {i},{blob}\n" for i in range(400))
    packed = gzip.compress(text.encode(), compresslevel=1)
    (tmp_path / "input.csv.gz").write_bytes(packed[: len(packed) * 2 // 3])
    job = write_job(tmp_path, job_data(sim.url, input={"path": "input.csv.gz"}))
    code, _, err = _cli("run", str(job))
    assert code == 2, err
    assert "cannot parse csv input after its first" in err.strip().splitlines()[-1]
    _assert_saved_and_recorded(job, err, "input_error")


def test_a_ragged_line_that_is_not_utf8_is_an_error_row(tmp_path: Path, sim: SimServer) -> None:
    """A CSV line with too many fields and bytes that are not UTF-8 is one error row; the rest
    of the input is read and sent."""
    body = b"".join(f"{i},ticket {i}\n".encode() for i in range(40))
    (tmp_path / "input.csv").write_bytes(b"id,text\n" + body + b"x,caf\xe9,extra\n" + body[:0])
    more = b"".join(f"{i},ticket {i}\n".encode() for i in range(40, 60))
    with (tmp_path / "input.csv").open("ab") as handle:
        handle.write(more)
    job = write_job(tmp_path, job_data(sim.url))
    code, out, err = _cli("run", "--max-failure-rate", "0.5", str(job))
    assert code == 0, err
    assert "60 ok, 1 failed" in out and "Exception ignored" not in err
    failed = batchllm.query(job, "select error from results where status = 'failed'")
    assert "wrong number of fields" in failed.column(0)[0].as_py()


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0, -1.5])
def test_a_timeout_that_is_not_a_finite_positive_number_is_a_job_error(
    tmp_path: Path, value: float
) -> None:
    """timeout_s = inf, nan or <= 0 is refused before anything is sent: exit 2, one line."""
    (tmp_path / "input.csv").write_text("id,text\n1,a\n", encoding="utf-8")
    job = write_job(tmp_path, job_data(None, retry={"timeout_s": value}))
    for command in ("run", "validate"):
        code, _, err = _cli(command, str(job))
        assert code == 2
        assert "[retry] timeout_s" in err and "Traceback" not in err


@pytest.fixture
def small_disk(tmp_path: Path) -> Path:
    """A 384 KiB tmpfs: a real filesystem that fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=384k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_the_run_with_exit_5_and_it_resumes(
    tmp_path: Path, sim: SimServer, small_disk: Path
) -> None:
    """ENOSPC while writing the journal or a part: exit 5 naming the run directory, no
    traceback; with room again, the same command finishes every row once."""
    lines = _jsonl_rows(1500)
    (tmp_path / "input.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = job_data(sim.url, input={"path": "input.jsonl"}, output={"dir": str(small_disk)})
    job = write_job(tmp_path, data)
    code, _, err = _cli("run", str(job))
    assert code == 5, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: {small_disk}") and "No space left on device" in last
    assert "Traceback" not in err
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    code, _, err = _cli("run", str(job))
    assert code == 0, err
    total = batchllm.query(job, "select count(*) as n, min(status) as s from results")
    assert total.to_pylist() == [{"n": 1500, "s": "ok"}]
    statuses = batchllm.query(job, "select status from runs order by run_number")
    assert statuses.column(0).to_pylist()[0] in ("storage_error", "interrupted")
    assert sim.stats()["duplicates"] <= 8
