"""Gemini ``generateContent`` wire format as the simulated provider speaks it (providers.md §10).

Owns reading a ``POST /v1beta/models/{model}:generateContent`` body (key in ``x-goog-api-key``
or ``?key=``, ``systemInstruction``, ``contents`` with roles user/model, ``generationConfig``
with ``maxOutputTokens`` and ``responseMimeType`` + ``responseJsonSchema``; proto JSON accepts
snake_case too) into the Chat shape, and everything sent back: one candidate with
``finishReason`` STOP or MAX_TOKENS, ``usageMetadata`` (``thoughtsTokenCount`` 0, cached tokens
inside ``promptTokenCount``), and Google's ``{"error": {code, message, status, details}}``
envelope, where a bad key is a 400 and a 429 is RESOURCE_EXHAUSTED with QuotaFailure and, when
it says when to retry, RetryInfo. Gemini sends no rate-limit headers, so neither does this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from batchllm.simulate.content import Reply
from batchllm.simulate.formats import ErrorReply, Incoming, SimRequest, SimUsage
from batchllm.simulate.limits import QuotaState, Rejection

_TYPES = "type.googleapis.com/google.rpc."
_BAD_KEY = "API key not valid. Please pass a valid API key."
_NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)
_OVERLOADED = "The model is overloaded. Please try again later."
_SERVER_ERROR_HTML = (
    b"<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n"
    b"  <title>Error 502 (Server Error)!!1</title>\n"
    b"  <p><b>502.</b> <ins>That\xe2\x80\x99s an error.</ins>\n"
    b"  <p>The server encountered a temporary error and could not complete your request."
    b"<p>Please try again in 30 seconds.  <ins>That\xe2\x80\x99s all we know.</ins>\n"
)
_ERRORS: Mapping[str, tuple[int, str, str]] = {
    "500": (
        500,
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    "502-json": (502, "UNAVAILABLE", "Bad Gateway"),
    "503": (503, "UNAVAILABLE", _OVERLOADED),
    "529": (529, "UNAVAILABLE", _OVERLOADED),
    "400": (
        400,
        "INVALID_ARGUMENT",
        "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576).",
    ),
    "403": (403, "PERMISSION_DENIED", "The caller does not have permission"),
}
_QUOTA_IDS = {
    "requests": "GenerateRequestsPerMinutePerProjectPerModel",
    "tokens": "GenerateContentInputTokensPerModelPerMinute",
}
_DAILY_QUOTA_ID = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"


def envelope(code: int, status: str, message: str, details: Sequence[Any] = ()) -> bytes:
    """Google's error body; ``details`` are google.rpc messages with their ``@type``."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return orjson.dumps({"error": error})


def duration(seconds: float) -> str:
    """A protobuf Duration in JSON: ``"37s"``, ``"0.25s"``."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


class GeminiFormat:
    """Gemini ``generateContent``, ``POST /v1beta/models/{model}:generateContent``."""

    schema_field = "generationConfig.responseJsonSchema"

    def model_of(self, incoming: Incoming) -> str:
        return incoming.path.get("model", "gemini-sim")

    def authorize(self, expected: str | None, incoming: Incoming) -> ErrorReply | None:
        sent = incoming.headers.get("x-goog-api-key") or incoming.query.get("key")
        if expected is None or sent == expected:
            return None
        if not sent:
            return ErrorReply(403, envelope(403, "PERMISSION_DENIED", _NO_KEY))
        return _bad_key()

    def parse(self, incoming: Incoming) -> SimRequest | ErrorReply:
        try:
            data = orjson.loads(incoming.body)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            return self.bad_request("Invalid JSON payload received.", None, incoming)
        contents, config = data.get("contents"), _field(data, "generationConfig") or {}
        if not isinstance(contents, list) or not contents:
            message = "* GenerateContentRequest.contents: contents is not specified"
            return self.bad_request(message, None, incoming)
        cap = _field(config, "maxOutputTokens")
        if cap is not None and (type(cap) is not int or cap < 1):
            message = "* GenerateContentRequest.generation_config.max_output_tokens: must be > 0"
            return self.bad_request(message, None, incoming)
        system = _field(data, "systemInstruction")
        return SimRequest(
            self.model_of(incoming), _messages(system, contents), cap, _chat_format(config)
        )

    def bad_request(self, message: str, param: str | None, incoming: Incoming) -> ErrorReply:
        return ErrorReply(400, envelope(400, "INVALID_ARGUMENT", message))

    def reply(
        self, request: SimRequest, reply: Reply, usage: SimUsage, incoming: Incoming
    ) -> bytes:
        prompt, output = usage.prompt_tokens, usage.completion_tokens
        metadata: dict[str, Any] = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": output,
            "totalTokenCount": prompt + output,
            "thoughtsTokenCount": 0,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        }
        if usage.cache_read:
            metadata["cachedContentTokenCount"] = usage.cache_read
        candidate = {
            "content": {"parts": [{"text": reply.content}], "role": "model"},
            "finishReason": "MAX_TOKENS" if reply.finish_reason == "length" else "STOP",
            "index": 0,
        }
        body = {
            "candidates": [candidate],
            "usageMetadata": metadata,
            "modelVersion": request.model,
            "responseId": f"sim{incoming.reply_id}",
        }
        return orjson.dumps(body)

    def error(self, kind: str, incoming: Incoming) -> ErrorReply:
        if kind == "502":
            return ErrorReply(502, _SERVER_ERROR_HTML, "text/html")
        if kind == "401":
            return _bad_key()
        if kind == "insufficient_quota":
            details = [_quota_failure(_DAILY_QUOTA_ID, self.model_of(incoming))]
            return ErrorReply(429, envelope(429, "RESOURCE_EXHAUSTED", _QUOTA, details))
        status, name, message = _ERRORS[kind]
        return ErrorReply(status, envelope(status, name, message))

    def rate_limited(
        self, rejection: Rejection, model: str, with_wait: bool, incoming: Incoming
    ) -> ErrorReply:
        details = [_quota_failure(_QUOTA_IDS[rejection.dimension], model, rejection.limit)]
        if with_wait and not rejection.too_large:
            details.append(
                {"@type": f"{_TYPES}RetryInfo", "retryDelay": duration(rejection.wait_s)}
            )
        return ErrorReply(429, envelope(429, "RESOURCE_EXHAUSTED", _QUOTA, details))

    def headers(
        self, incoming: Incoming, processing_ms: int, quotas: Sequence[QuotaState]
    ) -> dict[str, str]:
        return {"server-timing": f"gfet4t7; dur={processing_ms}"}


def _bad_key() -> ErrorReply:
    info = {
        "@type": f"{_TYPES}ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
    return ErrorReply(400, envelope(400, "INVALID_ARGUMENT", _BAD_KEY, [info]))


def _quota_failure(quota_id: str, model: str, limit: int | None = None) -> dict[str, Any]:
    violation: dict[str, Any] = {
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": model},
    }
    if limit is not None:
        violation["quotaValue"] = str(limit)
    return {"@type": f"{_TYPES}QuotaFailure", "violations": [violation]}


def _field(data: Any, camel: str) -> Any:
    """A field by its proto JSON name, camelCase or snake_case."""
    if not isinstance(data, dict):
        return None
    if camel in data:
        return data[camel]
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
    return data.get(snake)


def _messages(system: Any, contents: list[Any]) -> list[Any]:
    found: list[Any] = []
    parts = _field(system, "parts")
    if isinstance(parts, list) and parts:
        found.append({"role": "system", "content": parts})
    for content in contents:
        if isinstance(content, dict):
            role = "assistant" if content.get("role") == "model" else "user"
            found.append({"role": role, "content": content.get("parts")})
    return found


def _chat_format(config: Any) -> Any:
    if _field(config, "responseMimeType") != "application/json":
        return None
    schema = _field(config, "responseJsonSchema") or _field(config, "responseSchema")
    if isinstance(schema, dict):
        return {"type": "json_schema", "json_schema": {"schema": schema}}
    return {"type": "json_object"}
