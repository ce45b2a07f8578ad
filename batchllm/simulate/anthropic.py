"""Anthropic Messages wire format as the simulated provider speaks it (providers.md §7 and §8).

Owns reading a ``POST /v1/messages`` body (``x-api-key`` and ``anthropic-version`` headers,
required ``max_tokens``, top-level ``system`` as a string or text blocks, ``output_config.format``
for structured output) into the Chat shape, the prefix a ``cache_control`` system block asks to
cache, and everything sent back: the message object with Anthropic's usage block (input tokens
after the cache, cache writes and reads beside them), the ``{"type": "error", ...}`` envelope
for every error kind, 429s with ``retry-after`` in whole seconds, and the
``anthropic-ratelimit-*`` headers with RFC 3339 resets. Not here: tools, thinking, streaming.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from batchllm.simulate.content import Reply, message_text
from batchllm.simulate.formats import (
    BAD_GATEWAY_HTML,
    ErrorReply,
    Incoming,
    SimRequest,
    SimUsage,
)
from batchllm.simulate.limits import QuotaState, Rejection
from batchllm.simulate.wire import model_of

ORG_ID = "00000000-0000-4000-8000-00000000051a"
_ROLES = frozenset({"user", "assistant"})
_DOCS = "For details, refer to: https://docs.claude.com/en/api/rate-limits."
_ERRORS: Mapping[str, tuple[int, str, str]] = {
    "500": (500, "api_error", "Internal server error"),
    "502-json": (502, "api_error", "Bad gateway"),
    "503": (503, "api_error", "Service unavailable"),
    "529": (529, "overloaded_error", "Overloaded"),
    "400": (400, "invalid_request_error", "prompt is too long: 213004 tokens > 200000 maximum"),
    "401": (401, "authentication_error", "invalid x-api-key"),
    "403": (
        403,
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
}
_SPEND_CAP = (
    "Your organization has reached the monthly spend limit of its usage tier. "
    "Access will be restored at the start of the next month."
)


def envelope(
    error_type: str, message: str, request_id: str, details: Mapping[str, Any] | None = None
) -> bytes:
    """Anthropic's error body; ``request_id`` repeats the ``request-id`` header."""
    error: dict[str, Any] = {"type": error_type, "message": message}
    if details:
        error["details"] = dict(details)
    return orjson.dumps({"type": "error", "error": error, "request_id": f"req_{request_id}"})


class AnthropicFormat:
    """Anthropic Messages, ``POST /v1/messages``."""

    schema_field = "output_config.format"

    def model_of(self, incoming: Incoming) -> str:
        return model_of(incoming.body)

    def authorize(self, expected: str | None, incoming: Incoming) -> ErrorReply | None:
        if expected is None or incoming.headers.get("x-api-key") == expected:
            return None
        return self._error(401, "authentication_error", "invalid x-api-key", incoming)

    def parse(self, incoming: Incoming) -> SimRequest | ErrorReply:
        if not incoming.headers.get("anthropic-version"):
            return self.bad_request("anthropic-version: header is required", None, incoming)
        problem, data = _read(incoming.body)
        if problem is None:
            problem = _check(data)
        if problem is not None:
            return self.bad_request(problem, None, incoming)
        return SimRequest(
            model=data["model"],
            messages=_messages(data.get("system"), data["messages"]),
            max_tokens=data["max_tokens"],
            response_format=_chat_format(data.get("output_config")),
            cache_prefix=_cache_prefix(data.get("system")),
        )

    def bad_request(self, message: str, param: str | None, incoming: Incoming) -> ErrorReply:
        return self._error(400, "invalid_request_error", message, incoming)

    def reply(
        self, request: SimRequest, reply: Reply, usage: SimUsage, incoming: Incoming
    ) -> bytes:
        written, read = usage.cache_write, usage.cache_read
        body = {
            "id": f"msg_sim{incoming.reply_id}",
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": [{"type": "text", "text": reply.content}],
            "stop_reason": "max_tokens" if reply.finish_reason == "length" else "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": usage.prompt_tokens - written - read,
                "cache_creation_input_tokens": written,
                "cache_read_input_tokens": read,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": written,
                    "ephemeral_1h_input_tokens": 0,
                },
                "output_tokens": usage.completion_tokens,
                "service_tier": "standard",
            },
        }
        return orjson.dumps(body)

    def error(self, kind: str, incoming: Incoming) -> ErrorReply:
        if kind == "502":
            return ErrorReply(502, BAD_GATEWAY_HTML, "text/html")
        if kind == "insufficient_quota":
            details = {"error_code": "enforced_spend_limit_reached"}
            body = envelope("rate_limit_error", _SPEND_CAP, incoming.request_id, details)
            return ErrorReply(429, body)
        status, error_type, message = _ERRORS[kind]
        return self._error(status, error_type, message, incoming)

    def rate_limited(
        self, rejection: Rejection, model: str, with_wait: bool, incoming: Incoming
    ) -> ErrorReply:
        r = rejection
        unit = "requests" if r.dimension == "requests" else "tokens"
        message = (
            f"This request would exceed the rate limit for your organization ({ORG_ID}) of "
            f"{r.limit} {unit} per minute. {_DOCS} You can see the response headers for current "
            "usage. Please reduce the prompt length or the maximum tokens requested, or try "
            "again later."
        )
        if r.too_large:
            message = f"{message} This request asks for {r.requested} tokens on its own."
        wanted = with_wait and not r.too_large
        wait = str(math.ceil(r.wait_s)) if math.isfinite(r.wait_s) else str(r.wait_s)
        headers = {"retry-after": wait} if wanted else {}
        body = envelope("rate_limit_error", message, incoming.request_id)
        return ErrorReply(429, body, headers=headers)

    def headers(
        self, incoming: Incoming, processing_ms: int, quotas: Sequence[QuotaState]
    ) -> dict[str, str]:
        found = {"request-id": f"req_{incoming.request_id}", "anthropic-organization-id": ORG_ID}
        now = time.time()
        for q in quotas:
            prefix = f"anthropic-ratelimit-{q.name}"
            found[f"{prefix}-limit"] = str(q.limit)
            found[f"{prefix}-remaining"] = str(q.remaining)
            found[f"{prefix}-reset"] = rfc3339(now + q.full_in_s)
        return found

    def _error(self, status: int, error_type: str, message: str, incoming: Incoming) -> ErrorReply:
        return ErrorReply(status, envelope(error_type, message, incoming.request_id))


def rfc3339(epoch_s: float) -> str:
    """A UTC timestamp in whole seconds, rounded up so it is never before ``epoch_s``."""
    moment = dt.datetime.fromtimestamp(math.ceil(epoch_s), dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _read(body: bytes) -> tuple[str | None, dict[str, Any]]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "There was an error parsing the body of your request: not valid JSON", {}
    if not isinstance(data, dict):
        return "The request body must be a JSON object", {}
    return None, data


def _check(data: dict[str, Any]) -> str | None:
    """The first validation error Anthropic would report, or None."""
    model, cap, messages = data.get("model"), data.get("max_tokens"), data.get("messages")
    if not isinstance(model, str) or not model:
        return "model: Field required"
    if cap is None:
        return "max_tokens: Field required"
    if type(cap) is not int or cap < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    if not isinstance(messages, list) or not messages:
        return "messages: Field required"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
    return None


def _system_blocks(system: Any) -> list[Any]:
    if isinstance(system, str):
        return [{"type": "text", "text": system}]
    return [b for b in system if isinstance(b, dict)] if isinstance(system, list) else []


def _messages(system: Any, messages: list[Any]) -> list[Any]:
    found: list[Any] = []
    blocks = _system_blocks(system)
    if blocks:
        found.append({"role": "system", "content": blocks})
    return found + [{"role": m["role"], "content": m.get("content")} for m in messages]


def _cache_prefix(system: Any) -> str | None:
    """The system text up to and including the last block marked ``cache_control``."""
    blocks = _system_blocks(system)
    marked = [i for i, block in enumerate(blocks) if block.get("cache_control")]
    if not marked:
        return None
    return message_text({"content": blocks[: marked[-1] + 1]})


def _chat_format(output_config: Any) -> Any:
    fmt = output_config.get("format") if isinstance(output_config, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return {"type": "json_schema", "json_schema": {"schema": fmt.get("schema")}}
    return None
