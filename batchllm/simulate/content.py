"""What the simulated provider says: token counts, plain-text replies, JSON replies, broken JSON.

Owns the content of a successful chat reply and nothing else. Everything here is a pure function of
its arguments (the caller passes a seeded ``random.Random``), so the same request and seed give the
same reply. HTTP, rate limits, latency and the choice of *when* to break a reply live in
``batchllm.simulate.flow``; every wire format's request reaches here in the Chat shape.

The tokenizer is an approximation of a BPE tokenizer, good to within tens of percent on English;
it is not tiktoken and nothing should depend on it matching a real model.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from batchllm.simulate.schema import drop_required, fake_value, violate_enum

MALFORMED_KINDS = ("fence", "prose", "truncated", "enum", "missing")
"""Ways a JSON reply can be broken, each one seen from real models."""

_LETTERS = re.compile(r"[A-Za-z]+")
_DIGITS = re.compile(r"[0-9]+")
_PUNCT = re.compile(r"[!-/:-@\[-`{-~]+")
_BREAKS = re.compile(r"\s{2,}|[^\S ]", re.ASCII)
_WIDE = re.compile(r"[^\x00-\x7f]")
_ASTRAL = re.compile(r"[\U00010000-\U0010ffff]")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}")
_CHOICES = re.compile(
    r"(?:categor(?:y|ies)|labels?|classes|one of|options|choices)\b[^:\n]{0,40}:\s*([^\n]+)"
    r"|\bone of\s+([^\n:]+)",
    re.IGNORECASE,
)
_INSTRUCTION = re.compile(r"^[^\n]*?summar\w*[^:\n]*:\s*", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_SUMMARY_WORDS = 30
_CHOICE_SPLIT = re.compile(r"\s*(?:,|\bor\b|\||/)\s*")
_STOPWORD_TEXT = (
    "the and for that this with from your you are was were have has had not but can will into "
    "about what which when where who how its it's they them their there then than please text "
    "following below above given return answer only one each should would could must also just "
    "more most some any all our out use using based"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_FALLBACK_WORDS = ("result", "request", "item", "detail", "value", "example", "record", "summary")
_NO_MAX_TOKENS = 1 << 30


@dataclass(frozen=True, slots=True)
class Reply:
    """The assistant message of one simulated completion."""

    content: str
    finish_reason: str
    completion_tokens: int


def count_tokens(text: str) -> int:
    """Approximate BPE token count: ~1 token per 4 characters of English, more for non-ASCII."""
    total = sum((len(run) + 4) // 5 for run in _LETTERS.findall(text))
    total += sum((len(run) + 2) // 3 for run in _DIGITS.findall(text))
    total += sum((len(run) + 1) // 2 for run in _PUNCT.findall(text))
    total += len(_BREAKS.findall(text))
    if not text.isascii():
        total += len(_WIDE.findall(text)) + len(_ASTRAL.findall(text))
    return total


# Batch jobs send the same system prompt with every row, so its count is worth remembering.
_count_cached = functools.lru_cache(maxsize=4096)(count_tokens)


def truncate_tokens(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that costs at most ``limit`` tokens."""
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if count_tokens(text[:mid]) <= limit:
            low = mid
        else:
            high = mid - 1
    return text[:low]


def message_text(message: Any) -> str:
    """The text of one chat message, whether its content is a string or a list of parts."""
    content = message.get("content") if isinstance(message, Mapping) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (p.get("text") for p in content if isinstance(p, Mapping))
        return "".join(p for p in parts if isinstance(p, str))
    return ""


def prompt_tokens(messages: Sequence[Any]) -> int:
    """Prompt tokens the way OpenAI bills chat: content + 4 per message + 3 to prime the reply."""
    return sum(_count_cached(message_text(m)) + 4 for m in messages) + 3


def make_reply(
    messages: Sequence[Any],
    response_format: Any,
    max_tokens: int | None,
    rng: random.Random,
    malformed: str | None = None,
) -> Reply:
    """A plausible reply to ``messages``; ``malformed`` names one of MALFORMED_KINDS to break it."""
    schema = _schema_of(response_format) or _schema_in_prompt(messages)
    if schema is None:
        content, finish = _text_reply(messages, rng), "stop"
        if malformed is not None:
            content, finish = content[: max(1, len(content) // 2)], "length"
    else:
        value = fake_value(schema, rng, _content_words(messages))
        content, finish = _render_json(value, schema, malformed)
    limit = _NO_MAX_TOKENS if max_tokens is None else max_tokens
    if count_tokens(content) > limit:
        content, finish = truncate_tokens(content, limit), "length"
    return Reply(content, finish, count_tokens(content))


def _schema_in_prompt(messages: Sequence[Any]) -> Mapping[str, Any] | None:
    """A schema the prompt asks for in words ("... this JSON Schema: {...}"), as a model obeys."""
    for message in reversed(messages):
        text = message_text(message)
        marker = text.rfind("JSON Schema:")
        if marker < 0:
            continue
        try:
            schema = json.loads(text[marker + len("JSON Schema:") :])
        except ValueError:
            return None
        return schema if isinstance(schema, Mapping) else None
    return None


def wants_json(response_format: Any) -> bool:
    """Whether the request asks for JSON (json_schema or json_object) rather than text."""
    return _schema_of(response_format) is not None


def _schema_of(response_format: Any) -> Mapping[str, Any] | None:
    """The JSON schema to satisfy; json_object mode gets a small fixed one; text mode gets None."""
    if not isinstance(response_format, Mapping):
        return None
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        return schema if isinstance(schema, Mapping) else _JSON_OBJECT
    return _JSON_OBJECT if kind == "json_object" else None


_JSON_OBJECT: Mapping[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "number", "maximum": 1}},
    "required": ["answer", "confidence"],
}


def _prompt_text(messages: Sequence[Any]) -> str:
    return "\n".join(message_text(m) for m in messages)


def _last_user_text(messages: Sequence[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return message_text(message)
    return _prompt_text(messages)


def _content_words(messages: Sequence[Any]) -> Sequence[str]:
    words = [w for w in _WORD.findall(_last_user_text(messages)) if w.lower() not in _STOPWORDS]
    return words[:200] or _FALLBACK_WORDS


def _text_reply(messages: Sequence[Any], rng: random.Random) -> str:
    prompt = _prompt_text(messages)
    choices = _choices(prompt)
    if choices:
        return rng.choice(choices)
    if "summar" in prompt.lower():
        return _summary(messages, rng)
    return _sentences(_GENERIC, _content_words(messages), rng, 12, rng.randint(5, 120))


def _summary(messages: Sequence[Any], rng: random.Random) -> str:
    """One to three leading sentences of the text to summarise, as terse models tend to answer."""
    source = _INSTRUCTION.sub("", _last_user_text(messages), count=1)
    found = [
        " ".join(sentence.split()[:_SUMMARY_WORDS])
        for sentence in _SENTENCE_END.split(source)
        if len(sentence.split()) >= 4 and "summar" not in sentence.lower()
    ]
    if found:
        return " ".join(found[: rng.randint(1, 3)])
    return _sentences(_SUMMARY, _content_words(messages), rng, rng.randint(1, 3), 1 << 30)


def _choices(prompt: str) -> list[str]:
    """Labels a classification prompt offers, e.g. "one of: billing, bug, other"."""
    for match in _CHOICES.finditer(prompt):
        found = match.group(1) or match.group(2)
        options = [o.strip(" \t\"'`.;*-") for o in _CHOICE_SPLIT.split(found)]
        options = [o for o in options if o and len(o) <= 40 and len(o.split()) <= 4]
        if len(options) >= 2:
            return options
    return []


_SUMMARY = (
    "The text describes {a} and {b}.",
    "It highlights {a} as a key factor for {b}.",
    "Overall, it concludes that {a} matters more than {c}.",
    "The main point concerns {a}, {b} and {c}.",
)
_GENERIC = (
    "{A} is the central point here.",
    "The request concerns {a} and {b}.",
    "In short, {a} relates closely to {b}.",
    "Based on the input, {a} seems most relevant.",
    "Consider {a}, {b} and {c} together.",
    "This depends on {a} more than on {b}.",
    "A careful answer would mention {a}.",
    "Note that {a} can change how {b} behaves.",
)


def _sentences(
    templates: Sequence[str], words: Sequence[str], rng: random.Random, most: int, budget: int
) -> str:
    """Up to ``most`` filled-in sentences, stopping before ``budget`` tokens (at least one)."""
    out: list[str] = []
    used = 0
    for _ in range(most):
        a, b, c = rng.choice(words), rng.choice(words), rng.choice(words)
        sentence = rng.choice(templates).format(a=a, b=b, c=c, A=a[:1].upper() + a[1:])
        cost = count_tokens(sentence)
        if out and used + cost > budget:
            break
        out.append(sentence)
        used += cost
    return " ".join(out)


def _render_json(value: Any, schema: Mapping[str, Any], malformed: str | None) -> tuple[str, str]:
    if malformed == "enum" and not violate_enum(value, schema):
        malformed = "missing"
    if malformed == "missing" and not drop_required(value, schema):
        malformed = "fence"
    text = orjson.dumps(value).decode()
    if malformed == "fence":
        return f"```json\n{text}\n```", "stop"
    if malformed == "prose":
        return (
            f"Sure! Here is the JSON you asked for:\n{text}\nLet me know if you need more.",
            "stop",
        )
    if malformed == "truncated":
        return text[: max(1, len(text) * 2 // 3)], "length"
    return text, "stop"
