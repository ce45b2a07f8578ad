"""OpenAI Responses wire format as the simulated provider speaks it (providers.md §3).

Owns reading a ``POST /v1/responses`` body (``instructions``, ``input`` as a string or message
items, ``max_output_tokens`` of at least 16, the flat ``text.format``) into the Chat shape, and
the Response object sent back: a ``message`` output item with one ``output_text`` part,
``status`` ``incomplete`` with ``incomplete_details.reason`` ``max_output_tokens`` when the cap
cut the reply, and the Responses usage block. Auth, errors, 429s and rate-limit headers are
OpenAI's, shared with ``ChatFormat``. Not here: tools, reasoning items, stored responses.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from batchllm.simulate.content import Reply
from batchllm.simulate.formats import ErrorReply, Incoming, SimRequest, SimUsage
from batchllm.simulate.wire import CONTEXT_TOO_LONG, BadRequest, ChatFormat, parse_json

_MIN_OUTPUT_TOKENS = 16
_SYSTEM_ROLES = frozenset({"system", "developer"})


class ResponsesFormat(ChatFormat):
    """OpenAI Responses, ``POST /v1/responses``: OpenAI's auth, envelopes and headers."""

    schema_field = "text.format"

    def parse(self, incoming: Incoming) -> SimRequest | ErrorReply:
        parsed = parse_responses(incoming.body)
        if isinstance(parsed, BadRequest):
            return self._rejected(parsed)
        return parsed

    def reply(
        self, request: SimRequest, reply: Reply, usage: SimUsage, incoming: Incoming
    ) -> bytes:
        sent = orjson.loads(incoming.body)
        cut = reply.finish_reason == "length"
        now = int(time.time())
        body = {
            "id": f"resp_sim{incoming.reply_id}",
            "object": "response",
            "created_at": now,
            "completed_at": None if cut else now,
            "status": "incomplete" if cut else "completed",
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
            "model": request.model,
            "instructions": sent.get("instructions"),
            "max_output_tokens": request.max_tokens,
            "output": [_message_item(reply.content, cut, incoming.reply_id)],
            "text": sent.get("text") or {"format": {"type": "text"}},
            "temperature": sent.get("temperature", 1.0),
            "top_p": sent.get("top_p", 1.0),
            "store": sent.get("store", True),
            "usage": _usage(usage),
            "metadata": {},
        }
        return orjson.dumps(body)

    def error(self, kind: str, incoming: Incoming) -> ErrorReply:
        if kind == "400":
            bad = BadRequest(CONTEXT_TOO_LONG, "input", "context_length_exceeded")
            return self._rejected(bad)
        return super().error(kind, incoming)


def parse_responses(body: bytes) -> SimRequest | BadRequest:
    """Read a Responses body into the Chat shape, or say why OpenAI would answer 400."""
    data = parse_json(body)
    if isinstance(data, BadRequest):
        return data
    model, given = data.get("model"), data.get("input")
    if not isinstance(model, str) or not model:
        return BadRequest("you must provide a model parameter", "model", None)
    if not isinstance(given, str | list) or not given:
        return BadRequest(
            "Missing required parameter: 'input'.", "input", "missing_required_parameter"
        )
    cap = data.get("max_output_tokens")
    if cap is not None and (type(cap) is not int or cap < _MIN_OUTPUT_TOKENS):
        message = (
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
            f"{_MIN_OUTPUT_TOKENS}, but got {cap!r} instead."
        )
        return BadRequest(message, "max_output_tokens", "integer_below_min_value")
    response_format = _chat_format(data.get("text"))
    if isinstance(response_format, BadRequest):
        return response_format
    return SimRequest(model, _messages(data.get("instructions"), given), cap, response_format)


def _messages(instructions: Any, given: str | list[Any]) -> list[Any]:
    found: list[Any] = []
    if isinstance(instructions, str) and instructions:
        found.append({"role": "system", "content": instructions})
    if isinstance(given, str):
        return [*found, {"role": "user", "content": given}]
    for item in given:
        role = item.get("role") if isinstance(item, dict) else None
        if isinstance(role, str):
            chat_role = "system" if role in _SYSTEM_ROLES else role
            found.append({"role": chat_role, "content": item.get("content")})
    return found


def _chat_format(text: Any) -> Any:
    """``text.format`` as a Chat ``response_format``; a json_schema needs a name and a schema."""
    fmt = text.get("format") if isinstance(text, dict) else None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema" or not isinstance(fmt, dict):
        return None
    for key in ("name", "schema"):
        if key not in fmt:
            param = f"text.format.{key}"
            return BadRequest(
                f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
            )
    spec = {"name": fmt["name"], "schema": fmt["schema"], "strict": fmt.get("strict")}
    return {"type": "json_schema", "json_schema": spec}


def _message_item(text: str, cut: bool, reply_id: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {
        "type": "message",
        "id": f"msg_sim{reply_id}",
        "status": "incomplete" if cut else "completed",
        "role": "assistant",
        "content": [part],
    }


def _usage(usage: SimUsage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read,
            "cache_write_tokens": usage.cache_write,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }
