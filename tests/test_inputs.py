"""Careless inputs: a one-line error before any request, or error rows, never a lost row."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import batchllm
from batchllm.cli import main
from batchllm.job import InputSpec
from batchllm.run.pipeline import arun_job
from batchllm.simulate import SimServer
from batchllm.source import InputRow, Source
from conftest import job_data, write_csv, write_job


def _run(job: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["-q", "run", str(job)])
    return result.exit_code, result.stderr


def test_an_empty_file_and_a_header_without_rows_are_refused(
    tmp_path: Path, sim: SimServer
) -> None:
    """Nothing to do is said in one line with exit 2, not a run of zero rows."""
    job = write_job(tmp_path, job_data(sim.url))
    (tmp_path / "input.csv").write_bytes(b"")
    code, err = _run(job)
    assert code == 2 and err.count("\n") == 1 and "input.csv" in err
    (tmp_path / "input.csv").write_text("id,text\n")
    code, err = _run(job)
    assert code == 2 and "the input has no rows" in err
    assert sim.stats()["requests"] == 0


async def test_duplicate_ids_become_error_rows(tmp_path: Path, sim: SimServer) -> None:
    """A repeated id is not sent and does not hide the first row's result."""
    rows = [{"id": "A", "text": "one"}, {"id": "B", "text": "two"}, {"id": "A", "text": "three"}]
    write_csv(tmp_path / "input.csv", rows)
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (2, 1)
    table = batchllm.query(job, "select row_key, id, status, error from results order by row_key")
    rows_out = table.to_pylist()
    assert [r["status"] for r in rows_out] == ["ok", "failed", "ok"]
    assert rows_out[1]["row_key"].startswith("A#dup-") and rows_out[1]["id"] == "A"
    assert "duplicate id 'A'" in rows_out[1]["error"]
    assert sim.stats()["requests"] == 2


async def test_bytes_that_are_not_utf8_fail_only_their_row(tmp_path: Path, sim: SimServer) -> None:
    """A Latin-1 cell in a UTF-8 file is an error row naming the encoding setting."""
    (tmp_path / "input.csv").write_bytes(b"id,text\n1,plain\n2,caf\xe9 cr\xe8me\n3,also plain\n")
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (2, 1)
    bad = batchllm.query(job, "select id, error_type, error from results where status = 'failed'")
    row = bad.to_pylist()[0]
    assert row["id"] == "2" and row["error_type"] == "input"
    assert "not valid UTF-8" in row["error"] and "[input] encoding" in row["error"]


async def test_a_declared_encoding_reads_the_file(tmp_path: Path, sim: SimServer) -> None:
    """[input] encoding = "latin-1" decodes the same file without errors."""
    (tmp_path / "input.csv").write_bytes(b"id,text\n1,caf\xe9 cr\xe8me\n")
    data = job_data(sim.url, input={"encoding": "latin-1", "columns": ["id", "text"]})
    job = batchllm.load_job(write_job(tmp_path, data))
    assert (await arun_job(job)).ok == 1
    text = batchllm.query(job, "select text from results").to_pylist()[0]["text"]
    assert text == "café crème"


async def test_ragged_csv_lines_become_error_rows(tmp_path: Path, sim: SimServer) -> None:
    """A line with too many or too few fields is reported, and the lines around it still run."""
    (tmp_path / "input.csv").write_text(
        'id,text\n1,fine\n2,too,many,fields\n3,"also fine"\n4\n5,last\n', encoding="utf-8"
    )
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    summary = await arun_job(job)
    assert (summary.rows, summary.ok, summary.failed) == (5, 3, 2)
    errors = batchllm.query(job, "select error from results where status = 'failed'")
    assert all("wrong number of fields" in e for e in errors.column(0).to_pylist())


async def test_a_prompt_longer_than_the_context_window_is_not_sent(
    tmp_path: Path, sim: SimServer
) -> None:
    """A cell far beyond the model's context becomes a too_large row without a request."""
    rows = [{"id": "1", "text": "short"}, {"id": "2", "text": "word " * 140_000}]
    write_csv(tmp_path / "input.csv", rows)
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (1, 1)
    row = batchllm.query(job, "select error_type, error from results where id = '2'").to_pylist()
    assert row[0]["error_type"] == "too_large" and "context window" in row[0]["error"]
    assert sim.stats()["requests"] == 1


async def test_nested_parquet_columns_are_json_text(tmp_path: Path, sim: SimServer) -> None:
    """Struct and list cells render into prompts and copy into results as JSON."""
    table = pa.table(
        {
            "id": [1, 2],
            "text": ["a", "b"],
            "meta": [{"lang": "en", "score": 1}, {"lang": "fr", "score": 2}],
            "tags": [["x", "y"], []],
        }
    )
    pq.write_table(table, tmp_path / "input.parquet")
    data = job_data(
        sim.url,
        input={"path": "input.parquet", "columns": ["id", "meta", "tags"]},
        prompt={"template": "{{ text }} {{ meta }} {{ tags }}"},
    )
    job = batchllm.load_job(write_job(tmp_path, data))
    assert (await arun_job(job)).ok == 2
    out = batchllm.query(job, "select meta, tags from results order by id").to_pylist()
    assert out[0] == {"meta": '{"lang":"en","score":1}', "tags": '["x","y"]'}


def test_an_output_dir_that_cannot_be_created_is_exit_2(tmp_path: Path, sim: SimServer) -> None:
    """An output path under a regular file is refused in one line before any request."""
    write_csv(tmp_path / "input.csv", [{"id": "1", "text": "x"}])
    (tmp_path / "occupied").write_text("a file, not a directory")
    job = write_job(tmp_path, job_data(sim.url, output={"dir": "occupied/run"}))
    code, err = _run(job)
    assert code == 2 and "cannot use as run directory" in err and err.count("\n") == 1
    assert sim.stats()["requests"] == 0


def test_a_run_directory_of_another_job_is_refused(tmp_path: Path, sim: SimServer) -> None:
    """Pointing a second job at the first one's run directory is an error, not a mix."""
    write_csv(tmp_path / "input.csv", [{"id": "1", "text": "x"}])
    first = write_job(tmp_path, job_data(sim.url), name="first.toml")
    assert _run(first)[0] == 0
    second = write_job(tmp_path, job_data(sim.url, job={"name": "other-job"}), name="second.toml")
    code, err = _run(second)
    assert code == 2 and "holds results of job 'test-job', not 'other-job'" in err


async def test_input_problems_are_reported_once_across_runs(tmp_path: Path, sim: SimServer) -> None:
    """A re-run reuses the error rows of bad input instead of writing them again."""
    rows = [{"id": "A", "text": "one"}, {"id": "A", "text": "two"}, {"id": "B", "text": "x"}]
    write_csv(tmp_path / "input.csv", rows)
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    first = await arun_job(job)
    assert (first.ok, first.failed) == (2, 1)
    second = await arun_job(job)
    assert (second.reused, second.failed, second.sent) == (3, 0, 0)
    history = batchllm.query(job, "select count(*) as n from all_results").to_pylist()
    assert history == [{"n": 3}]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_a_row_of_megabytes_becomes_one_error_row(
    tmp_path: Path, sim: SimServer, fmt: str
) -> None:
    """A 3 MB row, far longer than a read block, fails alone as too_large; no row is read twice."""
    rows = [{"id": str(i), "text": f"ticket {i}"} for i in range(6000)]
    rows[5000]["text"] = "word " * 600_000
    if fmt == "csv":
        lines = write_csv(tmp_path / "input.csv", rows).read_text(encoding="utf-8").splitlines()
        lines.insert(4000, "4000,one,field,too,many")  # before the long row: reported once
        (tmp_path / "input.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        lines = b"".join(orjson.dumps(row) + b"\n" for row in rows)
        (tmp_path / "input.jsonl").write_bytes(lines)
    data = job_data(sim.url, input={"path": f"input.{fmt}"}, limits={"concurrency": 64})
    job = batchllm.load_job(write_job(tmp_path, data))
    summary = await arun_job(job)
    ragged = 1 if fmt == "csv" else 0
    assert (summary.rows, summary.ok, summary.failed) == (6000 + ragged, 5999, 1 + ragged)
    kinds = batchllm.query(
        job, "select error_type, count(*) as n from results where status = 'failed' group by 1"
    ).to_pylist()
    assert sorted((k["error_type"], k["n"]) for k in kinds) == sorted(
        [("too_large", 1)] + [("input", 1)] * ragged
    )
    ids = batchllm.query(job, "select count(distinct id) as n, count(*) as rows from results")
    assert ids.to_pylist() == [{"n": 6000, "rows": 6000 + ragged}]


async def test_counting_rows_in_a_thread_while_reading_keeps_each_bad_line_once(
    tmp_path: Path,
) -> None:
    """A count in a thread (a run's progress total) during a read neither takes nor adds lines."""
    lines = ["id,text"] + [
        f"{i},row {i}" if i % 5000 else f"{i},bad,line" for i in range(1, 200_001)
    ]
    (tmp_path / "input.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = Source(InputSpec(tmp_path / "input.csv", "csv"))
    counting = asyncio.create_task(asyncio.to_thread(source.count_rows))
    read: list[InputRow] = []
    for batch in source.rows(batch_rows=256):
        read.extend(batch)
        await asyncio.sleep(0)  # let the counting thread run between batches
    bad = [row for row in read if row.problem is not None]
    assert await counting == len(read) == 200_000
    assert len(bad) == len({row.key for row in bad}) == 40


@pytest.mark.parametrize(
    ("delimiter", "name", "toml"),
    [(";", "input.csv", ";"), ("\t", "input.csv", "\t"), ("\t", "input.tsv", None)],
)
async def test_a_delimiter_reads_semicolon_and_tab_separated_files(
    tmp_path: Path, sim: SimServer, delimiter: str, name: str, toml: str | None
) -> None:
    """[input] delimiter reads ';' and tab separated files ("\\t" in TOML); .tsv is tab."""
    lines = ["id;text".replace(";", delimiter)] + [
        f"T{i}{delimiter}ticket, number {i}" for i in range(5)
    ]
    (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    job = batchllm.load_job(
        write_job(tmp_path, job_data(sim.url, input={"path": name, "delimiter": toml}))
    )
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (5, 0)
    ids = batchllm.query(job, "select id from results order by id").column(0).to_pylist()
    assert ids == [f"T{i}" for i in range(5)]


def test_a_delimiter_of_more_than_one_character_is_a_job_error(tmp_path: Path) -> None:
    """delimiter = ";;" is refused with the key named."""
    (tmp_path / "input.csv").write_text("id,text\n1,a\n", encoding="utf-8")
    job = write_job(tmp_path, job_data(None, input={"delimiter": ";;"}))
    with pytest.raises(batchllm.UserError, match=r"\[input\] delimiter"):
        batchllm.load_job(job)
