"""Checks before the first request: each problem a run would meet, found by ``validate`` and by
the run itself, with nothing sent."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import batchllm
from batchllm.cli import main
from batchllm.errors import InputError, MissingKeyError, RunDirError, UserError
from batchllm.preflight import api_key, check_budget, check_copies, check_run_dir, validate_job
from batchllm.simulate import SimServer
from conftest import job_data, ticket_rows, write_csv, write_job

URL = "http://127.0.0.1:1/v1"


def _job(tmp_path: Path, url: str = URL, **sections: Any) -> batchllm.JobSpec:
    write_csv(tmp_path / "input.csv", ticket_rows(5))
    return batchllm.load_job(write_job(tmp_path, job_data(url, **sections)))


def _validate(path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["validate", *args, str(path)])
    return result.exit_code, result.stdout, result.stderr


def test_a_cost_cap_needs_max_tokens(tmp_path: Path) -> None:
    """Without max_tokens no reply's cost is bounded, so a cap cannot hold: refused."""
    job = _job(tmp_path, model={"params": {"temperature": 0}}, limits={"max_cost_usd": 1.0})
    with pytest.raises(UserError, match=r"a cost cap needs \[model.params\] max_tokens"):
        check_budget(job)
    assert check_budget(_job(tmp_path, limits={"max_cost_usd": 1.0})) == 1.0


def test_the_command_line_cap_wins_over_the_job_file(tmp_path: Path) -> None:
    """``--max-cost`` replaces ``max_cost_usd`` for the run."""
    job = _job(tmp_path, limits={"max_cost_usd": 1.0})
    assert check_budget(job, 0.25) == 0.25


def test_batch_mode_takes_no_cost_cap(tmp_path: Path) -> None:
    """A batch is paid when it ends, so a cap cannot stop it midway: refused, saying why."""
    data = job_data(URL, model={"provider": "openai", "mode": "batch"})
    data["limits"]["max_cost_usd"] = 2.0
    write_csv(tmp_path / "input.csv", ticket_rows(3))
    job = batchllm.load_job(write_job(tmp_path, data))
    with pytest.raises(UserError, match="batch mode takes no cost cap"):
        check_budget(job)


def test_a_copied_column_named_like_a_results_column_is_refused(tmp_path: Path) -> None:
    """Copying an input column called ``status`` would overwrite the row's status."""
    write_csv(tmp_path / "input.csv", [{"id": "1", "text": "a", "status": "open"}])
    data = job_data(URL, input={"columns": ["id", "status"]})
    job = batchllm.load_job(write_job(tmp_path, data))
    with pytest.raises(InputError, match="'status' is also a results column"):
        check_copies(job)


def test_a_local_openai_server_needs_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """provider = openai with a base_url and no key variable set: no key is sent, no error."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    job = _job(tmp_path, model={"provider": "openai"})
    assert api_key(job) is None


def test_a_named_key_variable_that_is_unset_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """api_key_env names a variable that is not set: one line naming the variable."""
    monkeypatch.delenv("BATCHLLM_PREFLIGHT_KEY", raising=False)
    job = _job(tmp_path, model={"api_key_env": "BATCHLLM_PREFLIGHT_KEY"})
    with pytest.raises(MissingKeyError, match="BATCHLLM_PREFLIGHT_KEY is not set"):
        api_key(job)
    monkeypatch.setenv("BATCHLLM_PREFLIGHT_KEY", "k-123456")
    assert api_key(job) == "k-123456"


def test_a_run_directory_of_another_job_is_refused(tmp_path: Path) -> None:
    """A manifest naming another job: refused before anything is written."""
    job = _job(tmp_path)
    job.output_dir.mkdir()
    (job.output_dir / "manifest.json").write_text(json.dumps({"job": "other-job", "runs": []}))
    with pytest.raises(UserError, match="holds results of job 'other-job'"):
        check_run_dir(job)


def test_a_run_directory_under_a_file_is_refused(tmp_path: Path) -> None:
    """An output dir whose parent is a file cannot be created: named."""
    (tmp_path / "occupied").write_text("a file")
    job = _job(tmp_path, output={"dir": "occupied/run"})
    with pytest.raises(UserError, match="is not a writable folder"):
        check_run_dir(job)


def test_a_locked_run_directory_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    """While another process holds the lock, the check names its pid; once released, it passes."""
    job = _job(tmp_path)
    job.output_dir.mkdir()
    lock = job.output_dir / ".lock"
    with open(lock, "wb+") as handle:
        handle.write(b"4242")
        handle.flush()
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        # flock locks belong to the open file: a second open in this process conflicts too
        with pytest.raises(RunDirError, match="pid 4242"):
            check_run_dir(job)
    check_run_dir(job)


def test_validate_lists_every_problem_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copied column, missing key and foreign run directory: three problems, one call."""
    monkeypatch.delenv("BATCHLLM_PREFLIGHT_KEY", raising=False)
    write_csv(tmp_path / "input.csv", [{"id": "1", "text": "a", "status": "x"}])
    data = job_data(
        URL,
        input={"columns": ["id", "status"]},
        model={"api_key_env": "BATCHLLM_PREFLIGHT_KEY"},
    )
    path = write_job(tmp_path, data)
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"job": "someone-else", "runs": []}))
    job, problems = validate_job(path)
    assert job is not None
    joined = "\n".join(problems)
    assert len(problems) == 3
    for part in ("'status' is also a results column", "BATCHLLM_PREFLIGHT_KEY", "someone-else"):
        assert part in joined


def test_validate_of_a_good_job_says_so_and_sends_nothing(tmp_path: Path, sim: SimServer) -> None:
    """A job with no problem: exit 0 and no request reaches the provider."""
    job = _job(tmp_path, sim.url)
    code, out, err = _validate(job.path)
    assert (code, err) == (0, "")
    assert "ok" in out.lower()
    assert sim.stats()["requests"] == 0


def test_validate_probe_sends_one_small_request(tmp_path: Path, sim: SimServer) -> None:
    """--probe sends exactly one request, with max_tokens lowered, and stores nothing."""
    job = _job(tmp_path, sim.url)
    code, out, _ = _validate(job.path, "--probe")
    assert code == 0, out
    assert "probe ok" in out
    assert sim.stats()["requests"] == 1
    assert not (job.output_dir / "results").exists() or not any(
        (job.output_dir / "results").iterdir()
    )


def test_validate_probe_without_a_usable_row_names_the_input(
    tmp_path: Path, sim: SimServer
) -> None:
    """Every row's template prints a null: nothing to probe with, exit 2, nothing sent."""
    write_csv(tmp_path / "input.csv", [{"id": "1", "text": ""}, {"id": "2", "text": ""}])
    data = job_data(sim.url, prompt={"template": "{{ text or none }}"})
    path = write_job(tmp_path, data)
    code, _, err = _validate(path, "--probe")
    assert code == 2
    assert "nothing to probe with" in err
    assert sim.stats()["requests"] == 0


def test_a_run_refuses_the_same_problems_before_sending(tmp_path: Path, sim: SimServer) -> None:
    """A run with a copied 'status' column stops with exit 2 before any request."""
    write_csv(tmp_path / "input.csv", [{"id": "1", "text": "a", "status": "x"}])
    path = write_job(tmp_path, job_data(sim.url, input={"columns": ["id", "status"]}))
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 2
    assert "also a results column" in result.stderr
    assert sim.stats()["requests"] == 0
