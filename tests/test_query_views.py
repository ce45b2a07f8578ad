"""The query views over a run directory, and how query results are printed."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

import batchllm
from batchllm.errors import UserError
from batchllm.query import format_table, run_dir_of
from batchllm.simulate import Fault, SimServer
from conftest import job_data, ticket_rows, write_csv, write_job

SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["billing", "bug", "other"]},
        "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["label", "urgency"],
    "additionalProperties": False,
}


def _job(tmp_path: Path, sim: SimServer, rows: int = 10, **sections: dict) -> batchllm.JobSpec:
    write_csv(tmp_path / "input.csv", ticket_rows(rows))
    return batchllm.load_job(write_job(tmp_path, job_data(sim.url, **sections)))


async def test_results_hold_the_latest_outcome_and_all_results_the_history(
    tmp_path: Path, sim: SimServer
) -> None:
    """Rows failed in one run and ok after --retry-failed: results shows each row once, ok;
    all_results keeps both outcomes of the retried rows."""
    sim.script([Fault("400", count=3)])
    job = _job(tmp_path, sim, retry={"max_attempts": 1})
    await batchllm.arun_job(job)
    await batchllm.arun_job(job, batchllm.RunOptions(retry_failed=True))
    now = batchllm.query(job, "select status, count(*) as n from results group by 1")
    assert now.to_pylist() == [{"status": "ok", "n": 10}]
    history = batchllm.query(
        job, "select row_key, count(*) as n from all_results group by 1 having n > 1"
    )
    assert history.num_rows == 3


async def test_typed_fields_and_copied_columns_are_columns(tmp_path: Path, sim: SimServer) -> None:
    """With a reply schema, its fields are typed columns next to the copied input columns."""
    (tmp_path / "s.json").write_text(json.dumps(SCHEMA), encoding="utf-8")
    job = _job(tmp_path, sim, output={"schema_file": "s.json"}, input={"columns": ["id", "text"]})
    await batchllm.arun_job(job)
    table = batchllm.query(job, "select id, text, label, urgency from results limit 1")
    types = {field.name: field.type for field in table.schema}
    assert types == {"id": pa.string(), "text": pa.string(), "label": pa.string(),
                     "urgency": pa.int64()}  # fmt: skip
    label = table.to_pylist()[0]["label"]
    assert label in ("billing", "bug", "other")


async def test_the_runs_view_types_its_columns(tmp_path: Path, sim: SimServer) -> None:
    """runs: counts are integers, cost and waits are doubles, times are ISO text."""
    job = _job(tmp_path, sim)
    await batchllm.arun_job(job)
    table = batchllm.query(
        job, "select rows, ok, cost_usd, rate_limit_wait_s, started_at from runs"
    )
    kinds = [field.type for field in table.schema]
    assert kinds == [pa.int64(), pa.int64(), pa.float64(), pa.float64(), pa.string()]
    row = table.to_pylist()[0]
    assert row["rows"] == row["ok"] == 10 and row["started_at"][:4].isdigit()


def test_run_dir_of_takes_a_job_file_a_spec_or_the_directory(tmp_path: Path) -> None:
    """A job file, its JobSpec and its run directory all name the same directory; anything
    else is a one-line UserError."""
    write_csv(tmp_path / "input.csv", ticket_rows(2))
    path = write_job(tmp_path, job_data("http://127.0.0.1:1/v1"))
    job = batchllm.load_job(path)
    job.output_dir.mkdir(parents=True)
    assert run_dir_of(path) == run_dir_of(job) == run_dir_of(job.output_dir) == job.output_dir
    with pytest.raises(UserError, match="neither a job file nor a run directory"):
        run_dir_of(tmp_path / "nothing-here")


def test_the_text_table_aligns_truncates_and_counts() -> None:
    """Columns are padded to their widest cell, long text is cut with an ellipsis at 60
    characters, nulls print as NULL, small floats in exponent form, and a footer counts rows."""
    table = pa.table(
        {"name": ["a", "longer name"], "note": ["x" * 80, None], "cost": [0.00001234, 2.5]}
    )
    lines = format_table(table, "table").splitlines()
    assert lines[0].split() == ["name", "note", "cost"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert ("x" * 59 + "…") in lines[2] and "1.234e-05" in lines[2]
    assert "NULL" in lines[3] and "2.5" in lines[3]
    assert lines[-1] == "(2 rows)"
    assert lines[2].index("x") == lines[3].index("NULL")
    one = format_table(pa.table({"n": [1]}), "table").splitlines()
    assert one[-1] == "(1 row)"


def test_csv_and_json_formats_keep_values_exact() -> None:
    """CSV quotes text and keeps commas and quotes inside cells; JSON keeps types and nulls."""
    table = pa.table({"text": ['say "hi", then go', None], "n": [1, 2]})
    csv = format_table(table, "csv").splitlines()
    assert csv[0] == '"text","n"'
    assert csv[1] == '"say ""hi"", then go",1'
    assert json.loads(format_table(table, "json")) == [
        {"text": 'say "hi", then go', "n": 1},
        {"text": None, "n": 2},
    ]


def test_whitespace_in_cells_is_folded_for_the_text_table() -> None:
    """Newlines and tabs in a cell print as single spaces, so a row stays one line."""
    table = pa.table({"output": ["line one\nline two\tend"]})
    lines = format_table(table, "table").splitlines()
    assert lines[2] == "line one line two end"
