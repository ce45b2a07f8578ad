"""JSON values for a JSON Schema: what the simulated provider puts in a structured-output reply.

Owns ``fake_value`` (a value valid against a schema) and the two schema-aware ways to break one
(an out-of-enum value, a missing required property). Supports the subset structured outputs use:
type (including nullable lists like ["string", "null"]), object, properties, required, array,
items, minItems/maxItems, string minLength/maxLength and a few formats, integer/number
minimum/maximum (inclusive and exclusive), boolean, null, enum, const, local $ref, and
anyOf/oneOf/allOf by taking the first branch. Deliberately ignored: pattern, multipleOf,
uniqueItems, if/then/else; additionalProperties needs nothing since no extra keys are produced.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_OFF_ENUM = ("unknown", "other", "N/A")
_Maker = Callable[[Mapping[str, Any], "_Ctx", int], Any]
_MAX_DEPTH = 6
# Beyond this only a schema that requires infinite nesting is still recursing; it gets null.
_GIVE_UP_DEPTH = 40


@dataclass(frozen=True, slots=True)
class _Ctx:
    rng: random.Random
    root: Mapping[str, Any]
    words: Sequence[str]

    def word(self) -> str:
        return self.rng.choice(self.words)


def fake_value(schema: Mapping[str, Any], rng: random.Random, words: Sequence[str]) -> Any:
    """A value valid against ``schema``, with strings drawn from ``words`` (must be non-empty)."""
    return _fake(schema, _Ctx(rng, schema, words), 0)


def violate_enum(value: Any, schema: Mapping[str, Any]) -> bool:
    """Give the first enum-constrained property a value outside its enum; False if there is none."""
    return _violate_enum(value, schema, schema)


def drop_required(value: Any, schema: Mapping[str, Any]) -> bool:
    """Delete one required top-level property from ``value``; False if there is none to delete."""
    required = _resolve(schema, schema).get("required")
    if isinstance(value, dict) and isinstance(required, list):
        present = [name for name in required if name in value]
        if present:
            del value[present[-1]]
            return True
    return False


def _violate_enum(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any]) -> bool:
    if not isinstance(value, dict):
        return False
    for name, sub in _properties(schema, root).items():
        if name not in value:
            continue
        sub = _resolve(sub, root)
        enum = sub.get("enum")
        if isinstance(enum, list):
            value[name] = next((w for w in _OFF_ENUM if w not in enum), repr(enum))
            return True
        if _violate_enum(value[name], sub, root):
            return True
    return False


def _properties(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    props = _resolve(schema, root).get("properties")
    return props if isinstance(props, Mapping) else {}


def _resolve(schema: Any, root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow local ``$ref`` pointers and take the first anyOf/oneOf/allOf branch."""
    for _ in range(_MAX_DEPTH * 4):
        if not isinstance(schema, Mapping):
            return {}
        ref = schema.get("$ref")
        branches = schema.get("anyOf") or schema.get("oneOf") or schema.get("allOf")
        if isinstance(ref, str) and ref.startswith("#"):
            schema = _pointer(root, ref)
        elif isinstance(branches, list) and branches:
            schema = branches[0]
        else:
            return schema
    return {}


def _pointer(root: Mapping[str, Any], ref: str) -> Any:
    node: Any = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if part:
            key = part.replace("~1", "/").replace("~0", "~")
            node = node.get(key) if isinstance(node, Mapping) else None
    return node


def _pick_type(schema: Mapping[str, Any], rng: random.Random) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        concrete = [k for k in kind if k != "null"]
        if not concrete or ("null" in kind and rng.random() < 0.25):
            return "null"
        return str(concrete[0])
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    return "array" if "items" in schema else "string"


def _fake_object(schema: Mapping[str, Any], ctx: _Ctx, depth: int) -> dict[str, Any]:
    required = schema.get("required")
    must = set(required) if isinstance(required, list) else set()
    return {
        name: _fake(sub, ctx, depth + 1)
        for name, sub in _properties(schema, ctx.root).items()
        if name in must or (depth < _MAX_DEPTH and ctx.rng.random() < 0.5)
    }


def _fake_array(schema: Mapping[str, Any], ctx: _Ctx, depth: int) -> list[Any]:
    low = int(schema.get("minItems", 0))
    high = low if depth >= _MAX_DEPTH else int(schema.get("maxItems", low + 3))
    items = schema.get("items", {})
    if isinstance(items, list):
        items = items[0] if items else {}
    return [_fake(items, ctx, depth + 1) for _ in range(ctx.rng.randint(low, max(low, high)))]


def _fake_string(schema: Mapping[str, Any], ctx: _Ctx, depth: int) -> str:
    text = _formatted(schema.get("format"), ctx)
    if text is None:
        text = " ".join(ctx.word() for _ in range(ctx.rng.randint(1, 4)))
    while len(text) < int(schema.get("minLength", 0)):
        text += " " + ctx.word()
    return text[: int(schema.get("maxLength", len(text)))]


def _formatted(fmt: Any, ctx: _Ctx) -> str | None:
    make = _FORMATS.get(fmt) if isinstance(fmt, str) else None
    return None if make is None else make(ctx)


def _fake_date(ctx: _Ctx) -> str:
    return f"2024-{ctx.rng.randint(1, 12):02d}-{ctx.rng.randint(1, 28):02d}"


_FORMATS: dict[str, Callable[[_Ctx], str]] = {
    "date": _fake_date,
    "date-time": lambda ctx: (
        f"{_fake_date(ctx)}T{ctx.rng.randint(0, 23):02d}:{ctx.rng.randint(0, 59):02d}:00Z"
    ),
    "email": lambda ctx: f"{ctx.word().lower()}@example.com",
    "uri": lambda ctx: f"https://example.com/{ctx.word().lower()}",
    "uuid": lambda ctx: str(uuid.UUID(int=ctx.rng.getrandbits(128), version=4)),
}


def _bounds(schema: Mapping[str, Any], step: float) -> tuple[float, float]:
    """Inclusive bounds; exclusive ones are pulled in by ``step``; 100 wide when open-ended."""
    low = _limit(schema, "minimum", "exclusiveMinimum", step)
    high = _limit(schema, "maximum", "exclusiveMaximum", -step)
    if low is None:
        low = 0.0 if high is None or high >= 0 else high - 100
    return low, low + 100 if high is None else max(low, high)


def _limit(schema: Mapping[str, Any], inclusive: str, exclusive: str, step: float) -> float | None:
    for key, nudge in ((inclusive, 0.0), (exclusive, step)):
        value = schema.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value) + nudge
    return None


def _fake_integer(schema: Mapping[str, Any], ctx: _Ctx, depth: int) -> int:
    low, high = _bounds(schema, 1)
    return ctx.rng.randint(math.ceil(low), max(math.ceil(low), math.floor(high)))


def _fake_number(schema: Mapping[str, Any], ctx: _Ctx, depth: int) -> float:
    low, high = _bounds(schema, 0.01)
    value = round(ctx.rng.uniform(low, high), 2)
    return value if low <= value <= high else (low + high) / 2


def _fake_boolean(schema: Mapping[str, Any], ctx: _Ctx, depth: int) -> bool:
    return ctx.rng.random() < 0.5


def _fake_null(schema: Mapping[str, Any], ctx: _Ctx, depth: int) -> None:
    return None


_MAKERS: dict[str, _Maker] = {
    "object": _fake_object,
    "array": _fake_array,
    "string": _fake_string,
    "integer": _fake_integer,
    "number": _fake_number,
    "boolean": _fake_boolean,
    "null": _fake_null,
}


def _fake(schema: Any, ctx: _Ctx, depth: int) -> Any:
    if depth > _GIVE_UP_DEPTH:
        return None
    resolved = _resolve(schema, ctx.root)
    if "const" in resolved:
        return resolved["const"]
    enum = resolved.get("enum")
    if isinstance(enum, list) and enum:
        return ctx.rng.choice(enum)
    make: _Maker = _MAKERS.get(_pick_type(resolved, ctx.rng), _fake_string)
    return make(resolved, ctx, depth)
