"""Reading a job file: every kind of mistake is one error naming the file, section and key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchllm.errors import JobFileError
from batchllm.job import load_job
from conftest import job_data, toml_dumps, write_job

URL = "http://127.0.0.1:1/v1"


def _error(tmp_path: Path, data: dict[str, Any]) -> str:
    with pytest.raises(JobFileError) as caught:
        load_job(write_job(tmp_path, data))
    message = str(caught.value)
    assert "\n" not in message, "one line"
    assert message.startswith(str(tmp_path / "job.toml"))
    return message


@pytest.mark.parametrize(
    ("section", "key", "suggestion"),
    [
        ("input", "id_colum", "id_column"),
        ("model", "temprature", None),
        ("limits", "rmp", "rpm"),
        ("retry", "max_attempt", "max_attempts"),
        ("output", "schema_fil", "schema_file"),
        ("prompt", "templat", "template"),
    ],
)
def test_a_misspelt_key_is_named_with_a_suggestion(
    tmp_path: Path, section: str, key: str, suggestion: str | None
) -> None:
    """An unknown key names its section and, when one is close, the key that was meant."""
    data = job_data(URL)
    data[section][key] = 1
    message = _error(tmp_path, data)
    assert f"[{section}]" in message and f"unknown key '{key}'" in message
    if suggestion is not None:
        assert f"did you mean '{suggestion}'" in message


@pytest.mark.parametrize("section", ["job", "input", "prompt", "model"])
def test_a_missing_required_section_is_named(tmp_path: Path, section: str) -> None:
    """Each required section, left out, is reported by name."""
    data = job_data(URL)
    del data[section]
    assert f"missing section [{section}]" in _error(tmp_path, data)


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("limits", "rpm", "fast", "expected an integer"),
        ("limits", "concurrency", 1.5, "expected an integer"),
        ("retry", "timeout_s", "soon", "expected a number"),
        ("input", "columns", "id", "expected a list"),
        ("prompt", "template", 3, "expected a string"),
        ("model", "native_schema", "yes", "expected true or false"),
    ],
)
def test_a_value_of_the_wrong_type_names_what_was_expected(
    tmp_path: Path, section: str, key: str, value: Any, expected: str
) -> None:
    """A wrong type says which key, what type it wanted and what it got."""
    data = job_data(URL)
    data[section][key] = value
    message = _error(tmp_path, data)
    assert f"[{section}] {key}" in message and expected in message
    assert repr(value) in message


def test_a_section_that_is_not_a_table_is_an_error(tmp_path: Path) -> None:
    """``limits = 5`` instead of a ``[limits]`` table is named."""
    path = tmp_path / "job.toml"
    text = toml_dumps({k: v for k, v in job_data(URL).items() if k != "limits"})
    path.write_text("limits = 5\n" + text, encoding="utf-8")
    with pytest.raises(JobFileError, match=r"\[limits\]: must be a table"):
        load_job(path)


def test_invalid_toml_is_reported_with_its_place(tmp_path: Path) -> None:
    """A syntax error in the TOML is one line naming the file and where TOML stopped."""
    path = tmp_path / "job.toml"
    path.write_text('[job]\nname = "x\n', encoding="utf-8")
    with pytest.raises(JobFileError, match=r"job.toml: invalid TOML: .*line 2"):
        load_job(path)


def test_a_missing_or_unreadable_job_file_is_named(tmp_path: Path) -> None:
    """A path with no file, and a file that is not UTF-8, each give one line naming the path."""
    with pytest.raises(JobFileError, match="job file not found"):
        load_job(tmp_path / "absent.toml")
    path = tmp_path / "latin.toml"
    path.write_bytes(b'[job]\nname = "caf\xe9"\n')
    with pytest.raises(JobFileError, match="cannot read job file"):
        load_job(path)


def test_a_provider_that_needs_a_base_url_says_so(tmp_path: Path) -> None:
    """``openai-compatible`` without ``base_url`` is refused when the job is read."""
    data = job_data(URL)
    del data["model"]["base_url"]
    assert "needs 'base_url'" in _error(tmp_path, data)


def test_an_unknown_provider_lists_the_known_ones(tmp_path: Path) -> None:
    """A provider name batchllm does not know is refused, with the names it does know."""
    data = job_data(URL, model={"provider": "openia"})
    message = _error(tmp_path, data)
    assert "openia" in message
    for known in ("openai", "anthropic", "gemini", "simulated"):
        assert known in message


def test_schema_and_schema_file_together_are_refused(tmp_path: Path) -> None:
    """A reply schema given twice is ambiguous: one error saying to give one of them."""
    (tmp_path / "s.json").write_text(json.dumps({"type": "object"}), encoding="utf-8")
    data = job_data(URL, output={"schema_file": "s.json", "schema": {"type": "object"}})
    assert "give 'schema' or 'schema_file', not both" in _error(tmp_path, data)


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "cannot read"), ("{not json", "is not JSON"), ("[1, 2]", "must hold a JSON object")],
)
def test_a_bad_schema_file_is_named(tmp_path: Path, content: str | None, expected: str) -> None:
    """A schema file that is missing, not JSON, or not an object is reported with its path."""
    if content is not None:
        (tmp_path / "s.json").write_text(content, encoding="utf-8")
    message = _error(tmp_path, job_data(URL, output={"schema_file": "s.json"}))
    assert "[output] schema_file" in message and expected in message


def test_a_schema_that_is_not_a_valid_json_schema_is_refused(tmp_path: Path) -> None:
    """An inline schema that JSON Schema itself rejects fails at load, naming [output] schema."""
    data = job_data(URL, output={"schema": {"type": "objekt"}})
    assert "[output] schema" in _error(tmp_path, data)


def test_a_template_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    """``template_file`` pointing nowhere names the file it looked for."""
    data = job_data(URL, prompt={"template": None, "template_file": "absent.j2"})
    message = _error(tmp_path, data)
    assert "[prompt] template_file" in message and "absent.j2" in message


def test_paths_are_relative_to_the_job_file_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Input, output and template files resolve next to the job file wherever it is run from."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "t.j2").write_text("{{ text }}", encoding="utf-8")
    data = job_data(
        URL,
        input={"path": "../data/in.csv"},
        prompt={"template": None, "template_file": "t.j2"},
        output={"dir": "../runs/x"},
    )
    monkeypatch.chdir(tmp_path.parent)
    job = load_job(write_job(jobs, data))
    assert job.input.path == (tmp_path / "data" / "in.csv").resolve()
    assert job.output_dir == (tmp_path / "runs" / "x").resolve()
    assert job.prompt.template == "{{ text }}"
