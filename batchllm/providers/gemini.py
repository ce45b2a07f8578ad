"""Google Gemini ``generateContent`` (``POST {base_url}/models/{model}:generateContent``, §10).

``base_url`` defaults to ``https://generativelanguage.googleapis.com/v1beta``; the key goes in
``x-goog-api-key``. A model named ``models/...`` is sent without that prefix, once.

Request: system messages become ``systemInstruction``; user and assistant turns ``contents``
with roles user and model. ``[model.params]`` go into ``generationConfig``: ``max_tokens`` /
``max_completion_tokens`` as ``maxOutputTokens``, ``top_p`` as ``topP``, ``top_k`` as ``topK``,
``stop`` as ``stopSequences`` (a list), ``temperature`` and ``seed`` as they are, and every other
key unchanged (proto JSON takes camelCase or snake_case) except the request's own top-level
fields (``safetySettings``, ``tools``, ``toolConfig``, ``cachedContent``), which stay top-level.
A reply schema sets ``responseMimeType`` application/json and ``responseJsonSchema``.

Reply: the first candidate's text parts, concatenated (thought summaries left out).
``finishReason`` STOP reads "stop", MAX_TOKENS "length", others lowercased ("safety", ...). No
candidate and a ``promptFeedback.blockReason``: the prompt was blocked, the row fails.
Usage (§15): ``promptTokenCount`` already includes ``cachedContentTokenCount`` (and
``toolUsePromptTokenCount`` is input too, so it is added), but thinking tokens are *not* inside
``candidatesTokenCount``: ``thoughtsTokenCount`` is added to the output and is the reasoning
count, so output includes reasoning as everywhere in batchllm.

Errors: ``{"error": {"code", "message", "status", "details"}}``. A 429 RESOURCE_EXHAUSTED waits
for its ``RetryInfo.retryDelay``, unless a QuotaFailure names a per-day quota (``...PerDay...``):
that will not clear with retries, so it is fatal (``QuotaExhausted``). A bad key is a 400
INVALID_ARGUMENT (reason API_KEY_INVALID), fatal like 401/403. Gemini sends no rate-limit headers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from batchllm.errors import (
    AuthFailed,
    BadReply,
    ProviderError,
    QuotaExhausted,
    RequestRejected,
    error_for_status,
)
from batchllm.providers.base import Completion, HttpCall, RateLimitInfo, Usage, redact
from batchllm.providers.media_parts import gemini_parts
from batchllm.providers.wire import count, error_text, json_or_none, parse_duration, snippet
from batchllm.render import Request, estimate_tokens

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"
_RENAMED = {
    "max_tokens": "maxOutputTokens",
    "max_completion_tokens": "maxOutputTokens",
    "top_p": "topP",
    "top_k": "topK",
}
_TOP_LEVEL = frozenset(
    {"safetySettings", "safety_settings", "tools", "toolConfig", "tool_config"}
    | {"cachedContent", "cached_content"}
)
_FINISH = {"STOP": "stop", "MAX_TOKENS": "length"}
_BAD_KEY = re.compile(r"api key (?:not valid|not found|expired)", re.IGNORECASE)
_RPC = "type.googleapis.com/google.rpc."


class Gemini:
    """Adapter for the Gemini generateContent wire format."""

    name = "gemini"

    def __init__(self, base_url: str | None, api_key: str | None) -> None:
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._api_key = api_key
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["x-goog-api-key"] = api_key
        self.headers = headers

    def build(self, request: Request) -> HttpCall:
        model = quote(request.model.removeprefix("models/"), safe="")
        url = f"{self.base_url}/models/{model}:generateContent"
        body, config = _split_params(request.params)
        system = "\n\n".join(text for role, text in request.messages if role == "system")
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        body["contents"] = [
            {
                "role": "model" if role == "assistant" else "user",
                "parts": gemini_parts(text, request.media),
            }
            for role, text in request.messages
            if role != "system"
        ]
        if request.response_schema is not None:
            config["responseMimeType"] = "application/json"
            config["responseJsonSchema"] = request.response_schema
        if config:
            body["generationConfig"] = config
        return HttpCall("POST", url, self.headers, orjson.dumps(body))

    def parse(self, status: int, headers: Mapping[str, str], body: bytes) -> Completion:
        if status != 200:
            raise self._error(status, body)
        data = json_or_none(body)
        if not isinstance(data, dict):
            raise BadReply(f"unreadable reply: {body[:200]!r}", status=status)
        candidates = data.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            raise _no_candidate(data, status)
        candidate = candidates[0] if isinstance(candidates[0], dict) else {}
        text = _candidate_text(candidate)
        reason = candidate.get("finishReason")
        return Completion(
            text=text,
            finish_reason=_FINISH.get(reason, reason.lower()) if isinstance(reason, str) else None,
            usage=_usage(data.get("usageMetadata"), text),
            model=str(data.get("modelVersion") or ""),
            request_id=data.get("responseId"),
        )

    def rate_limits(self, headers: Mapping[str, str]) -> RateLimitInfo:
        return RateLimitInfo()  # Gemini sends none; its 429 body says how long to wait

    def _error(self, status: int, body: bytes) -> ProviderError:
        data = json_or_none(body)
        error = data.get("error") if isinstance(data, dict) else None
        details = _details(error)
        message = redact(error_text(data) if data is not None else snippet(body), self._api_key)
        text = f"HTTP {status}: {message}"
        if status in (401, 403) or (status == 400 and _bad_key(details, message)):
            return AuthFailed(text, status=status)
        if status == 429 and any("PerDay" in quota for quota in _quota_ids(details)):
            return QuotaExhausted(text, status=status)
        return error_for_status(status, text, retry_after_s=_retry_delay(details))


def _split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The params as (top-level request fields, ``generationConfig``)."""
    body: dict[str, Any] = {}
    config: dict[str, Any] = {}
    for key, value in params.items():
        if key in _TOP_LEVEL:
            body[key] = value
        elif key == "stop":
            config["stopSequences"] = [value] if isinstance(value, str) else list(value)
        else:
            config[_RENAMED.get(key, key)] = value
    return body, config


def _no_candidate(data: dict[str, Any], status: int) -> ProviderError:
    feedback = data.get("promptFeedback")
    blocked = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if blocked:
        return RequestRejected(f"the prompt was blocked: {blocked}", status=status)
    return BadReply("the reply has no candidate", status=status)


def _candidate_text(candidate: dict[str, Any]) -> str:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return ""
    return "".join(
        str(part.get("text") or "")
        for part in parts
        if isinstance(part, dict) and not part.get("thought")
    )


def _usage(raw: Any, text: str) -> Usage:
    if not isinstance(raw, dict):
        return Usage(output_tokens=estimate_tokens(text), estimated=True)
    thoughts = count(raw, "thoughtsTokenCount")
    prompt = count(raw, "promptTokenCount")
    return Usage(
        input_tokens=prompt + count(raw, "toolUsePromptTokenCount"),
        output_tokens=count(raw, "candidatesTokenCount") + thoughts,
        cached_tokens=count(raw, "cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


def _details(error: Any) -> list[dict[str, Any]]:
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _of_type(details: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [d for d in details if d.get("@type") == f"{_RPC}{name}"]


def _bad_key(details: list[dict[str, Any]], message: str) -> bool:
    reasons = {d.get("reason") for d in _of_type(details, "ErrorInfo")}
    return "API_KEY_INVALID" in reasons or _BAD_KEY.search(message) is not None


def _quota_ids(details: list[dict[str, Any]]) -> list[str]:
    return [
        str(violation.get("quotaId") or "")
        for failure in _of_type(details, "QuotaFailure")
        for violation in failure.get("violations") or []
        if isinstance(violation, dict)
    ]


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    for info in _of_type(details, "RetryInfo"):
        delay = info.get("retryDelay")
        if isinstance(delay, str):
            return parse_duration(delay)
    return None
