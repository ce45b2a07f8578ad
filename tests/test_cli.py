"""The command line: exit codes, one-line errors before any request, query output."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchllm.cli import main
from batchllm.simulate import Fault, SimServer
from conftest import REPO, job_data, ticket_rows, write_csv, write_job


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--log-format", "json", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def job_file(tmp_path: Path, sim: SimServer) -> Path:
    write_csv(tmp_path / "input.csv", ticket_rows(30))
    return write_job(tmp_path, job_data(sim.url))


def test_run_prints_a_summary_and_exits_0(job_file: Path) -> None:
    """A clean run exits 0 and says how many rows went ok, the cost and where results are."""
    code, out, err = _cli("run", str(job_file))
    assert code == 0, err
    assert "30 ok, 0 failed" in out
    assert "cost $" in out and "results in" in out
    events = [json.loads(line) for line in err.splitlines()]
    assert events[-1]["event"] == "run.finish" and events[-1]["ok"] == 30


def test_failed_rows_above_the_allowed_rate_exit_1(job_file: Path, sim: SimServer) -> None:
    """Rows that failed push the exit code to 1 unless --max-failure-rate allows them."""
    sim.script([Fault("400", count=3)])
    code, _, err = _cli("run", str(job_file))
    assert code == 1
    assert "3 rows failed" in err and "--retry-failed" in err
    sim.script([Fault("400", count=3)])
    code, _, _ = _cli("run", "--fresh", "--max-failure-rate", "0.2", str(job_file))
    assert code == 0


def test_fatal_provider_error_exits_4(job_file: Path, sim: SimServer) -> None:
    """An exhausted quota ends the run with exit code 4 and one line."""
    sim.script([Fault("insufficient_quota", count=100)])
    code, _, err = _cli("run", str(job_file))
    assert code == 4
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: quota") and "Traceback" not in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"job": {"nmae": "x"}}, "[job]: unknown key 'nmae' (did you mean 'name'?)"),
        ({"limits": {"rpm": "fast"}}, "[limits] rpm: expected an integer, got 'fast'"),
        ({"model": {"provider": "acme"}}, "'acme' is not one of openai, openai-responses"),
        ({"input": {"path": "missing.csv"}}, "missing.csv: input file not found"),
        (
            {"input": {"id_column": "ticket"}},
            "column 'ticket' named in [input] is not in the input",
        ),
        ({"prompt": {"template": "{{ body }}"}}, "uses column 'body' that the input does not have"),
        ({"prompt": {"template": "{{ text "}}, "[prompt] template: line 1"),
        ({"input": {"path": "input.xlsx"}}, "cannot tell the format of 'input.xlsx'"),
        (
            {
                "model": {
                    "provider": "openai",
                    "base_url": None,
                    "name": "gpt-4o-mini",
                    "api_key_env": "BATCHLLM_TEST_UNSET_KEY",
                }
            },
            "the API key variable BATCHLLM_TEST_UNSET_KEY is not set",
        ),
        ({"model": {"name": "no-such-model-anywhere"}}, "no price known for model"),
        ({"input": {"columns": ["id", "status"]}}, "'status' is also a results column"),
    ],
)
def test_bad_job_or_input_is_one_line_and_exit_2(
    tmp_path: Path, sim: SimServer, change: dict, message: str
) -> None:
    """Each user error gives exit 2, one line naming the problem, and sends nothing."""
    rows = [{**r, "status": "new"} for r in ticket_rows(5)]
    write_csv(tmp_path / "input.csv", rows)
    (tmp_path / "input.xlsx").write_bytes(b"PK\x03\x04")
    job = write_job(tmp_path, job_data(sim.url, **change))
    code, out, err = _cli("run", str(job))
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert message in err
    assert sim.stats()["requests"] == 0


def test_missing_section_and_invalid_toml_are_exit_2(tmp_path: Path) -> None:
    """A job without [model], or not TOML at all, is named in a one-line error."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[job]\nname = "x"\n[input]\npath = "a.csv"\n[prompt]\ntemplate = "x"\n')
    code, _, err = _cli("run", str(bad))
    assert (code, err.strip()) == (2, f"error: {bad}: missing section [model]")
    bad.write_text("[job\nname=")
    code, _, err = _cli("run", str(bad))
    assert code == 2 and "invalid TOML" in err and err.count("\n") == 1


def test_unparseable_input_is_exit_2(tmp_path: Path, sim: SimServer) -> None:
    """A .parquet file that is not Parquet is refused before any request."""
    (tmp_path / "input.parquet").write_bytes(b"this is not parquet at all")
    job = write_job(tmp_path, job_data(sim.url, input={"path": "input.parquet"}))
    code, _, err = _cli("run", str(job))
    assert code == 2 and "input.parquet: cannot read as parquet" in err
    assert sim.stats()["requests"] == 0


def test_query_prints_table_csv_and_json(job_file: Path) -> None:
    """`query` answers SQL over the results as an aligned table, CSV or JSON."""
    assert _cli("run", str(job_file))[0] == 0
    sql = "select status, count(*) as n from results group by 1"
    code, out, _ = _cli("query", str(job_file), sql)
    assert code == 0 and out.splitlines()[0].split() == ["status", "n"] and "ok" in out
    code, out, _ = _cli("query", "--format", "csv", str(job_file), sql)
    assert out.splitlines() == ['"status","n"', '"ok",30']
    code, out, _ = _cli("query", "--format", "json", str(job_file.parent / "run"), sql)
    assert json.loads(out) == [{"status": "ok", "n": 30}]
    code, out, _ = _cli("query", "--format", "json", str(job_file), "select ok, sent from runs")
    assert json.loads(out) == [{"ok": 30, "sent": 30}]


def test_query_errors_are_one_line(job_file: Path) -> None:
    """Bad SQL, or a job with no results yet, is a one-line error with exit 2."""
    code, _, err = _cli("query", str(job_file), "select 1")
    assert code == 2 and "no results yet" in err
    _cli("run", str(job_file))
    code, _, err = _cli("query", str(job_file), "select nope from results")
    assert code == 2 and err.startswith("error: query failed") and err.count("\n") == 1


def test_help_lists_the_exit_codes() -> None:
    """`batchllm --help` and `run --help` document every exit code."""
    for args in (["--help"], ["run", "--help"]):
        out = CliRunner().invoke(main, args).stdout
        for code in ("0", "1", "2", "3", "4", "130"):
            assert re.search(rf"^\s+{code}\s+\w", out, re.MULTILINE), code


def test_simulated_provider_job_runs_in_process(tmp_path: Path) -> None:
    """provider = "simulated" starts its own server; no key, no network, no setup."""
    write_csv(tmp_path / "input.csv", ticket_rows(12))
    data = job_data(None, model={"provider": "simulated", "base_url": None})
    data["simulate"] = {"latency_ms": 1, "jitter_ms": 0}
    code, out, err = _cli("run", str(write_job(tmp_path, data)))
    assert code == 0, err
    assert "12 ok" in out


def test_module_entry_point_runs() -> None:
    """`python -m batchllm --version` works like the console script."""
    done = subprocess.run(
        [sys.executable, "-m", "batchllm", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("batchllm, version ")


def test_readme_demo_commands_run(tmp_path: Path) -> None:
    """The demo target's commands (README quickstart) run the example job and query it."""
    for name in ("jobs", "sample_data"):
        shutil.copytree(REPO / name, tmp_path / name)
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["make", "-s", "demo-run", f"BIN={Path(sys.executable).parent}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "3,000 ok, 0 failed" in done.stdout
    assert "category" in done.stdout and "(6 rows)" in done.stdout


def test_the_progress_line_ends_on_the_final_count(tmp_path: Path, sim: SimServer) -> None:
    """--progress draws a line on stderr that ends at every row, 100%, with the failures."""
    write_csv(tmp_path / "input.csv", ticket_rows(300))
    with (tmp_path / "input.csv").open("a", encoding="utf-8") as handle:
        handle.write("T99999,one,field,too,many\n")
    job = write_job(tmp_path, job_data(sim.url))
    code, out, err = _cli("-q", "run", "--progress", str(job), "--max-failure-rate", "0.01")
    assert code == 0, err
    last = err.split("\r")[-1]
    assert "301/301 rows" in last and "100%" in last and "1 failed" in last
    assert "rows/s" in last and "$" in last
    assert "300 ok, 1 failed" in out
