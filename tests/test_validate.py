"""Checking a reply against the job's schema: decoding, free repair, the first problem's path,
typed column values, and whether the schema can go in OpenAI's strict mode."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from batchllm.errors import SchemaProblem
from batchllm.validate import INSTRUCTION, OutputSchema, arrow_type

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["bug", "billing", "other"]},
        "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
        "confidence": {"type": "number"},
        "refund": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "customer": {"type": "object", "properties": {"name": {"type": "string"}}},
    },
    "required": ["label", "urgency"],
    "additionalProperties": False,
}
GOOD = '{"label": "bug", "urgency": 2, "confidence": 1, "refund": false, "tags": ["a"]}'


@pytest.fixture
def schema() -> OutputSchema:
    return OutputSchema(SCHEMA)


def test_a_valid_reply_is_taken_as_it_is(schema: OutputSchema) -> None:
    """Plain JSON that matches: its value, no repair, no error."""
    checked = schema.check(GOOD, "stop")
    assert checked.value is not None and checked.value["label"] == "bug"
    assert (checked.error, checked.repaired, checked.truncated) == (None, False, False)


@pytest.mark.parametrize(
    "text",
    [
        f"```json\n{GOOD}\n```",
        f"```\n{GOOD}\n```",
        f"Here is the result:\n{GOOD}\nHope this helps!",
        f"Sure. ```JSON {GOOD} ``` Done.",
    ],
)
def test_fences_and_prose_are_removed_for_free(schema: OutputSchema, text: str) -> None:
    """Code fences and prose around the object are cut (no re-ask); the check says repaired."""
    checked = schema.check(text, "stop")
    assert checked.value is not None and checked.value["urgency"] == 2
    assert checked.repaired is True


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"label": "urgent", "urgency": 2}', '$.label: "urgent" is not one of'),
        ('{"label": "bug", "urgency": 9}', "$.urgency: 9 is greater than the maximum of 5"),
        ('{"label": "bug"}', '"urgency" is a required property'),
        ('{"label": "bug", "urgency": 1, "extra": 1}', "Additional properties"),
        ('{"label": "bug", "urgency": 1, "tags": [1]}', "$.tags[0]: 1 is not of type"),
        ("[1, 2]", "not a JSON object"),
        ("no json here at all", "not a JSON object"),
        ('{"label": "bug", "urgency": 1E99999}', "not valid JSON"),
    ],
)
def test_an_invalid_reply_names_its_first_problem_with_a_path(
    schema: OutputSchema, text: str, problem: str
) -> None:
    """What is wrong is said with a JSON path and the schema's words, for the re-ask and the
    error column."""
    checked = schema.check(text, "stop")
    assert checked.value is None
    assert checked.error is not None and problem in checked.error


def test_a_reply_cut_at_max_tokens_is_truncated_not_invalid(schema: OutputSchema) -> None:
    """Half an object with finish reason length: truncated, saying max_tokens cut it."""
    checked = schema.check('{"label": "bug", "urg', "length")
    assert checked.truncated is True
    assert checked.error == "the reply was cut off at max_tokens"


def test_typed_fields_take_their_values_or_null(schema: OutputSchema) -> None:
    """Each property becomes its column's value; arrays and objects as JSON text; a value of
    the wrong type is null rather than a wrong column type."""
    fields = schema.fields(
        {"label": "bug", "urgency": True, "confidence": 1, "refund": "no", "tags": ["a", "b"],
         "customer": {"name": "Ada"}}
    )  # fmt: skip
    assert fields == {
        "label": "bug",
        "urgency": None,
        "confidence": 1.0,
        "refund": None,
        "tags": '["a","b"]',
        "customer": '{"name":"Ada"}',
    }
    assert schema.fields(None) == dict.fromkeys(SCHEMA["properties"])


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ({"type": "string"}, pa.string()),
        ({"enum": ["a", "b"]}, pa.string()),
        ({"type": "integer"}, pa.int64()),
        ({"type": ["integer", "null"]}, pa.int64()),
        ({"type": "number"}, pa.float64()),
        ({"type": "boolean"}, pa.bool_()),
        ({"type": ["string", "integer"]}, pa.string()),
        ({"enum": [1, "a"]}, pa.string()),
        ({"type": "array"}, pa.string()),
        (True, pa.string()),
    ],
)
def test_each_property_has_one_arrow_type(spec: Any, kind: pa.DataType) -> None:
    """Scalar types map to their Arrow types (nullable ones too); anything else is JSON text."""
    assert arrow_type(spec) == kind


def test_strict_mode_needs_every_object_closed_and_fully_required() -> None:
    """OpenAI's strict mode is used only when every object (nested ones too) is closed and
    requires all its properties."""
    closed = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    assert OutputSchema(closed).strict is True
    assert OutputSchema({**closed, "required": []}).strict is False
    assert (
        OutputSchema({k: v for k, v in closed.items() if k != "additionalProperties"}).strict
        is False
    )
    nested = {**closed, "properties": {"a": {"type": "object", "properties": {"b": {}}}}}
    assert OutputSchema(nested).strict is False


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"type": "objekt"}, "not a valid JSON Schema"),
        ({"type": "array", "items": {}}, "the top level must be"),
        ({"type": "object"}, "the top level must be"),
    ],
)
def test_a_schema_that_cannot_describe_a_row_is_refused(bad: dict[str, Any], words: str) -> None:
    """An invalid schema, or one whose top level is not an object with properties: refused."""
    with pytest.raises(SchemaProblem, match=words):
        OutputSchema(bad)


def test_the_prompt_instructions_carry_the_schema(schema: OutputSchema) -> None:
    """For servers without native schemas, the prompt gets the instruction and the schema."""
    text = schema.instructions()
    assert INSTRUCTION in text and '"urgency"' in text
    assert text.startswith("\n\n")
