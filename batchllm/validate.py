"""Structured output: the reply's JSON Schema, checking replies, local repair, typed columns.

Owns loading and checking the schema itself (draft 2020-12, via jsonschema-rs), deciding whether it
can be sent in OpenAI's strict mode, the prompt instructions for servers with no native schema
support, turning a reply's text into a checked object (stripping code fences and prose first:
the free repair tier), and the Arrow type and value of each top-level property. Re-asking the model
(the paid tier) is the dispatcher's job; this module only says what was wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from batchllm.errors import SchemaProblem

INSTRUCTION = (
    "Reply with only a JSON object, no prose and no code fences, that matches this JSON Schema:"
)
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Checked:
    """A reply's verdict: ``value`` when valid, else ``error`` (path and reason)."""

    value: dict[str, Any] | None
    error: str | None = None
    repaired: bool = False
    truncated: bool = False


class OutputSchema:
    """One job's reply schema, compiled once."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        import jsonschema_rs  # ~7 MB: only a job with a schema loads it

        try:
            jsonschema_rs.meta.validate(dict(schema))
            self._validator = jsonschema_rs.validator_for(dict(schema))
        except (jsonschema_rs.ValidationError, ValueError) as exc:
            reason = str(exc).splitlines()[0]
            raise SchemaProblem(f"not a valid JSON Schema: {reason}") from exc
        if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
            raise SchemaProblem('the top level must be {"type": "object", "properties": {...}}')
        self.schema = dict(schema)
        self.properties: dict[str, Any] = dict(schema["properties"])
        self.strict = _strict_ok(self.schema)

    def columns(self) -> list[tuple[str, pa.DataType]]:
        """One typed column per top-level property."""
        return [(name, arrow_type(spec)) for name, spec in self.properties.items()]

    def instructions(self) -> str:
        """What to append to the prompt when the server cannot take the schema natively."""
        return f"\n\n{INSTRUCTION}\n{orjson.dumps(self.schema).decode()}"

    def check(self, text: str, finish_reason: str | None) -> Checked:
        """Decode and validate a reply; the free repair (fences, prose) is applied here."""
        value, repaired, problem = _decode(text)
        if value is None:
            if finish_reason == "length":
                return Checked(None, "the reply was cut off at max_tokens", truncated=True)
            return Checked(None, problem)
        errors = list(self._validator.iter_errors(value))
        if errors:
            first = errors[0]
            return Checked(None, f"{_path(first.instance_path)}: {first.message}", repaired)
        return Checked(value, None, repaired)

    def fields(self, value: Mapping[str, Any] | None) -> dict[str, Any]:
        """The typed column values of a checked object (nulls when there is none)."""
        if value is None:
            return dict.fromkeys(self.properties)
        return {
            name: _column_value(value.get(name), spec) for name, spec in self.properties.items()
        }


def arrow_type(spec: Any) -> pa.DataType:
    """string/enum → string, integer → int64, number → float64, boolean → bool, else JSON text."""
    kind = _base_type(spec)
    return {
        "string": pa.string(),
        "integer": pa.int64(),
        "number": pa.float64(),
        "boolean": pa.bool_(),
    }.get(kind or "", pa.string())


def _base_type(spec: Any) -> str | None:
    if not isinstance(spec, Mapping):
        return None
    kind = spec.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind is None and isinstance(spec.get("enum"), list):
        values = spec["enum"]
        kind = "string" if all(isinstance(v, str) for v in values) else None
    return kind if isinstance(kind, str) else None


def _column_value(value: Any, spec: Any) -> Any:
    if value is None:
        return None
    kind = _base_type(spec)
    if kind == "integer":
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok else None
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if kind == "string":
        return value if isinstance(value, str) else orjson.dumps(value).decode()
    return orjson.dumps(value).decode()


def _decode(text: str) -> tuple[dict[str, Any] | None, bool, str]:
    """The JSON object in ``text``; ``repaired`` when fences or prose had to go first; else what
    was wrong: not an object, or why the text that looks like one is not valid JSON (a number
    too large for a double, say)."""
    problem = "the reply is not a JSON object"
    try:
        value = orjson.loads(text)
        return (value, False, "") if isinstance(value, dict) else (None, False, problem)
    except orjson.JSONDecodeError as exc:
        if text.lstrip().startswith("{"):
            problem = f"the reply is not valid JSON: {exc}"
    for candidate in _candidates(text):
        try:
            value = orjson.loads(candidate)
        except orjson.JSONDecodeError as exc:
            problem = f"the reply is not valid JSON: {exc}"
            continue
        if isinstance(value, dict):
            return value, True, ""
    return None, False, problem


def _candidates(text: str) -> list[str]:
    fenced = [match.group(1).strip() for match in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    braced = [text[start : end + 1]] if 0 <= start < end else []
    return fenced + braced


def _path(parts: list[str | int]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _strict_ok(schema: Any) -> bool:
    """OpenAI strict mode needs every object closed and every property required."""
    if isinstance(schema, list):
        return all(_strict_ok(item) for item in schema)
    if not isinstance(schema, Mapping):
        return True
    if "properties" in schema or schema.get("type") == "object":
        properties = schema.get("properties") or {}
        closed = schema.get("additionalProperties") is False
        if not closed or set(schema.get("required") or []) != set(properties):
            return False
    return all(_strict_ok(value) for key, value in schema.items() if key != "enum")
