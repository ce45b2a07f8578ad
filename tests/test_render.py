"""Rows into requests: the request key (what makes two rows the same call), the input hash,
the token estimate, system prompts and the schema's place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import batchllm
from batchllm.errors import RowError
from batchllm.render import Renderer, estimate_tokens, input_hash
from batchllm.validate import OutputSchema
from conftest import job_data, write_csv, write_job

URL = "http://127.0.0.1:1/v1"
ROW = {"id": "T1", "text": "The invoice total is wrong"}
SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string"}},
    "required": ["label"],
    "additionalProperties": False,
}


def _renderer(tmp_path: Path, schema: bool = False, **sections: Any) -> Renderer:
    tmp_path.mkdir(exist_ok=True)
    write_csv(tmp_path / "input.csv", [ROW])
    job = batchllm.load_job(write_job(tmp_path, job_data(URL, **sections)))
    reply = OutputSchema(SCHEMA) if schema else None
    return Renderer(job, list(ROW), reply)


def test_the_same_row_makes_the_same_request_key(tmp_path: Path) -> None:
    """Rendering a row twice, or another row with the same prompt, gives one request key; the
    row key is not part of it."""
    renderer = _renderer(tmp_path)
    first = renderer.render("T1", ROW)
    again = renderer.render("T1", dict(ROW))
    other = renderer.render("T9", {"id": "T9", "text": ROW["text"]})
    assert first.request_key == again.request_key == other.request_key
    assert len(first.request_key) == 32


@pytest.mark.parametrize(
    "change",
    [
        {"model": {"name": "gpt-4o"}},
        {"model": {"params": {"max_tokens": 41, "temperature": 0}}},
        {"model": {"params": {"max_tokens": 40, "temperature": 0.5}}},
        {"prompt": {"system": "Be brief."}},
        {"prompt": {"template": "Label: {{ text }}"}},
    ],
)
def test_a_changed_model_parameter_or_prompt_makes_a_new_key(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    """Anything that changes what is sent changes the request key (so the row is sent again)."""
    base = _renderer(tmp_path / "a").render("T1", ROW).request_key
    changed = _renderer(tmp_path / "b", **change).render("T1", ROW).request_key
    assert base != changed


def test_a_changed_cell_makes_a_new_key_and_input_hash(tmp_path: Path) -> None:
    """A row whose printed text changed is a new request and a new input hash."""
    renderer = _renderer(tmp_path)
    edited = {**ROW, "text": ROW["text"] + "!"}
    assert renderer.render("T1", ROW).request_key != renderer.render("T1", edited).request_key
    assert input_hash(ROW) != input_hash(edited)


def test_the_input_hash_ignores_column_order_and_sees_every_column() -> None:
    """The same data in another column order hashes the same; a column not printed still
    counts (the row's data changed)."""
    assert input_hash({"a": 1, "b": "x"}) == input_hash({"b": "x", "a": 1})
    assert input_hash({"a": 1, "b": "x"}) != input_hash({"a": 1, "b": "x", "c": None})
    assert len(input_hash(ROW)) == 16


def test_messages_are_the_system_then_the_user_prompt(tmp_path: Path) -> None:
    """With a system template both are rendered, system first; without, one user message."""
    renderer = _renderer(tmp_path, prompt={"system": "You triage {{ id }}."})
    request = renderer.render("T1", ROW)
    assert request.messages == (
        ("system", "You triage T1."),
        ("user", "Classify as billing, bug or other: The invoice total is wrong"),
    )
    alone = _renderer(tmp_path / "b").render("T1", ROW)
    assert [role for role, _ in alone.messages] == ["user"]


def test_a_native_schema_travels_with_the_request(tmp_path: Path) -> None:
    """With native schemas the schema is sent as such (strict when it can be); without, the
    instructions are appended to the prompt instead."""
    native = _renderer(tmp_path, schema=True).render("T1", ROW)
    assert native.response_schema == SCHEMA and native.schema_strict is True
    assert "JSON Schema" not in native.messages[-1][1]
    prompted = _renderer(tmp_path / "b", schema=True, model={"native_schema": False})
    request = prompted.render("T1", ROW)
    assert request.response_schema is None
    assert "JSON Schema" in request.messages[-1][1]
    assert json.dumps(SCHEMA["properties"]).replace(" ", "") in request.messages[-1][1]


def test_the_token_estimate_is_about_four_bytes_a_token_plus_framing(tmp_path: Path) -> None:
    """Each message costs its bytes over four plus a few framing tokens; the reply three more."""
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("é" * 4) == 2  # two bytes each in UTF-8
    request = _renderer(tmp_path).render("T1", ROW)
    text = request.messages[0][1]
    assert request.est_input_tokens == estimate_tokens(text) + 4 + 3


def test_a_follow_up_asks_again_with_the_invalid_reply_and_the_problem(tmp_path: Path) -> None:
    """A re-ask keeps the conversation, adds the reply and what was wrong, and counts them."""
    request = _renderer(tmp_path).render("T1", ROW)
    again = request.follow_up('{"label": 3}', "$.label: 3 is not of type 'string'")
    assert again.messages[: len(request.messages)] == request.messages
    assert again.messages[-2] == ("assistant", '{"label": 3}')
    role, ask = again.messages[-1]
    assert role == "user" and "$.label: 3 is not of type 'string'" in ask
    assert again.est_input_tokens > request.est_input_tokens
    assert again.request_key == request.request_key  # the same row's request, asked again


def test_a_null_printed_by_the_template_fails_only_that_row(tmp_path: Path) -> None:
    """A null cell the template prints is a RowError for that row; the next row renders."""
    renderer = _renderer(tmp_path)
    with pytest.raises(RowError, match="empty \\(null\\)"):
        renderer.render("T2", {"id": "T2", "text": None})
    assert renderer.render("T1", ROW).messages


def test_a_filter_that_fails_on_a_value_fails_only_that_row(tmp_path: Path) -> None:
    """A value the template's filter cannot take is that row's error, named as a template
    failure."""
    renderer = _renderer(
        tmp_path, prompt={"template": "{{ text | int + 1 }} {{ (text | list)[99] }}"}
    )
    with pytest.raises(RowError, match="template failed on this row"):
        renderer.render("T1", ROW)
