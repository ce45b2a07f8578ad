"""The job file: defaults, relative paths, and the errors that name what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchllm.errors import JobFileError
from batchllm.job import load_job
from conftest import job_data, write_job


def test_defaults_and_paths_relative_to_the_job_file(tmp_path: Path) -> None:
    """Paths resolve next to the job file; unset limits and retry settings take the defaults."""
    (tmp_path / "jobs").mkdir()
    data = job_data(None, input={"path": "../data/in.csv"}, output={"dir": "../runs/x"})
    del data["limits"], data["retry"]
    job = load_job(write_job(tmp_path / "jobs", data))
    assert job.input.path == tmp_path / "data" / "in.csv"
    assert job.input.format == "csv"
    assert job.output_dir == tmp_path / "runs" / "x"
    assert (job.limits.rpm, job.limits.tpm, job.limits.concurrency) == (None, None, 32)
    assert (job.retry.max_attempts, job.retry.timeout_s) == (6, 60.0)
    assert job.model.max_tokens == 40


def test_template_file_is_read_relative_to_the_job(tmp_path: Path) -> None:
    """template_file loads the template from a file next to the job file."""
    (tmp_path / "t.j2").write_text("Hello {{ text }}\n", encoding="utf-8")
    job = load_job(
        write_job(tmp_path, job_data(None, prompt={"template": None, "template_file": "t.j2"}))
    )
    assert job.prompt.template == "Hello {{ text }}\n"


def test_fingerprint_follows_the_prompt_and_params_only(tmp_path: Path) -> None:
    """The fingerprint changes with the template or params, not with limits."""
    base = load_job(write_job(tmp_path, job_data(None))).fingerprint
    limits = load_job(write_job(tmp_path, job_data(None, limits={"rpm": 10}))).fingerprint
    prompt = load_job(write_job(tmp_path, job_data(None, prompt={"template": "{{ text }}!"})))
    assert base == limits
    assert base != prompt.fingerprint


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"prompt": {"template_file": "t.j2"}},
            "give exactly one of 'template' or 'template_file'",
        ),
        ({"model": {"params": {"messages": []}}}, "[model.params]: 'messages' is set by batchllm"),
        ({"model": {"api_key_env": "sk-abc123"}}, "expected the NAME of an environment variable"),
        ({"model": {"base_url": "localhost:8000"}}, "expected an http(s) URL"),
        ({"limits": {"concurrency": 0}}, "must be between 1 and 4096"),
        ({"limits": {"max_failure_rate": 2}}, "must be between 0 and 1"),
        ({"retry": {"timeout_s": -1}}, "must be greater than 0"),
        ({"job": {"name": "my job"}}, "use letters, digits"),
        ({"simulate": {"latency_ms": 5}}, "[simulate]: applies only to provider = 'simulated'"),
        ({"limits": {"rpm": True}}, "expected an integer, got True"),
    ],
)
def test_invalid_values_are_named(tmp_path: Path, change: dict, message: str) -> None:
    """Each wrong value is reported with its section, key and what was expected."""
    with pytest.raises(JobFileError) as caught:
        load_job(write_job(tmp_path, job_data("http://127.0.0.1:1/v1", **change)))
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(tmp_path / "job.toml"))


def test_unknown_top_level_table_is_an_error(tmp_path: Path) -> None:
    """A misspelt section is caught, not ignored."""
    data = job_data(None)
    data["limit"] = {"rpm": 5}
    with pytest.raises(
        JobFileError, match=r"job.toml: unknown section \[limit\] \(did you mean \[limits\]\?\)$"
    ):
        load_job(write_job(tmp_path, data))


def test_impossible_simulator_settings_are_a_job_error(tmp_path: Path) -> None:
    """[simulate] rates that cannot add up fail when the job is read, not when the run starts."""
    data = job_data(None, model={"provider": "simulated", "base_url": None})
    data["simulate"] = {"error_rate": 0.6, "reset_rate": 0.6}
    with pytest.raises(JobFileError, match=r"\[simulate\]: error_rate \+ hang_rate \+ reset_rate"):
        load_job(write_job(tmp_path, data))
