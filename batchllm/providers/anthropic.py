"""Anthropic Messages (``POST {base_url}/v1/messages``, providers.md §7 and §8).

``base_url`` is the API root the way the official SDK takes it, without ``/v1`` (default
``https://api.anthropic.com``). The key goes in ``x-api-key``, with ``anthropic-version:
2023-06-01``.

Request: system messages become the top-level ``system``, one text block carrying
``cache_control: {"type": "ephemeral"}``, so the system prompt every row shares is written to the
prompt cache once and read by the rows after it (below the model's minimum cacheable length the
API just does not cache). ``[model.params]``: ``max_tokens`` / ``max_completion_tokens`` give the
required ``max_tokens`` (1024 when the job sets neither); ``temperature`` and ``top_p`` keep
their names; ``stop`` becomes ``stop_sequences`` (a list); ``seed`` is dropped (Anthropic has
none, and it only ever promised best-effort determinism); every other key is sent as a top-level
field, unchanged (``top_k``, ``thinking``, ``metadata``, ``service_tier``, ...). A reply schema
goes in ``output_config.format`` (merged into an ``output_config`` the params may give).

Reply: the text blocks, concatenated (a refusal with no text reads its
``stop_details.explanation``). ``stop_reason`` end_turn and stop_sequence read "stop", max_tokens
and model_context_window_exceeded "length", refusal "refusal"; others as they are.

Usage (``parse_usage``): Anthropic reports ``input_tokens`` *after* the last cache breakpoint
only, with cache writes and reads beside it, not inside it; batchllm's ``Usage.input_tokens``
includes both (the OpenAI convention, and what genai-prices expects). Thinking tokens are already
inside ``output_tokens``.

Errors (§8.1): 401, 402 and 403 are fatal (``AuthFailed``); so is a spend cap, whether the 429
says ``enforced_spend_limit_reached`` or a 400 says the usage limit was reached or the credit
balance is too low (``QuotaExhausted``); 429 waits for ``retry-after``; 408, 409, 5xx and 529
(overloaded) are retried; 413 (often a Cloudflare page, not JSON) and other 4xx fail the row.
Rate limits (§8.2): ``anthropic-ratelimit-requests-*``, and for tokens
``anthropic-ratelimit-tokens-*`` (the most restrictive token limit in effect), else the
``input-tokens-*`` family: output tokens are counted as they are produced, not at admission.
Resets are RFC 3339 times, read as seconds from now.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import orjson

from batchllm.errors import (
    AuthFailed,
    BadReply,
    ProviderError,
    QuotaExhausted,
    ServerError,
    error_for_status,
)
from batchllm.providers import ratelimits
from batchllm.providers.base import Completion, HttpCall, RateLimitInfo, Usage, redact
from batchllm.providers.media_parts import anthropic_content
from batchllm.providers.ratelimits import seconds_until as seconds_until
from batchllm.providers.wire import (
    count,
    error_text,
    json_or_none,
    retry_after,
    snippet,
)
from batchllm.render import Request, estimate_tokens

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
_MAPPED_PARAMS = frozenset({"max_tokens", "max_completion_tokens", "stop", "seed"})
_CACHE_CONTROL = {"type": "ephemeral"}
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
}
_SPEND_LIMIT = re.compile(
    r"usage limits?|spend(?:ing)? limit|credit balance is too low", re.IGNORECASE
)


class AnthropicMessages:
    """Adapter for the Anthropic Messages wire format."""

    name = "anthropic"

    def __init__(self, base_url: str | None, api_key: str | None) -> None:
        self.url = (base_url or DEFAULT_BASE_URL).rstrip("/") + "/v1/messages"
        self._api_key = api_key
        headers = {"Content-Type": "application/json", "anthropic-version": API_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        self.headers = headers

    def build(self, request: Request) -> HttpCall:
        body = _params(request.params)
        body["model"] = request.model
        body.setdefault("stream", False)
        body["max_tokens"] = (
            request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS
        )
        system = "\n\n".join(text for role, text in request.messages if role == "system" and text)
        if system:
            body["system"] = [{"type": "text", "text": system, "cache_control": _CACHE_CONTROL}]
        body["messages"] = [
            {"role": role, "content": anthropic_content(text, request.media)}
            for role, text in request.messages
            if role != "system"
        ]
        if request.response_schema is not None:
            given = body.get("output_config")
            config = dict(given) if isinstance(given, Mapping) else {}
            config["format"] = {"type": "json_schema", "schema": request.response_schema}
            body["output_config"] = config
        return HttpCall("POST", self.url, self.headers, orjson.dumps(body))

    def parse(self, status: int, headers: Mapping[str, str], body: bytes) -> Completion:
        if status != 200:
            raise self._error(status, headers, body)
        data = json_or_none(body)
        if isinstance(data, dict) and data.get("type") == "error":
            raise ServerError(redact(error_text(data), self._api_key), status=status)
        content = data.get("content") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(content, list):
            raise BadReply(f"unreadable reply: {body[:200]!r}", status=status)
        text = "".join(_block_text(block) for block in content) or _refusal(data)
        reason = data.get("stop_reason")
        return Completion(
            text=text,
            finish_reason=_FINISH.get(reason, reason) if isinstance(reason, str) else None,
            usage=_usage(data.get("usage"), text),
            model=str(data.get("model") or ""),
            request_id=headers.get("request-id") or data.get("id"),
        )

    def rate_limits(self, headers: Mapping[str, str]) -> RateLimitInfo:
        return ratelimits.read(headers)

    def _error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        data = json_or_none(body)
        message = redact(error_text(data) if data is not None else snippet(body), self._api_key)
        text = f"HTTP {status}: {message}"
        if status == 402:  # billing: as fatal as a bad key
            return AuthFailed(text, status=status)
        if _spend_capped(status, data, message):
            return QuotaExhausted(text, status=status)
        return error_for_status(status, text, retry_after_s=retry_after(headers))


def parse_usage(raw: Any) -> Usage:
    """A Messages ``usage`` block as a ``Usage``; missing or null fields count as 0."""
    if not isinstance(raw, dict):
        return Usage(estimated=True)
    written = count(raw, "cache_creation_input_tokens")
    read = count(raw, "cache_read_input_tokens")
    return Usage(
        input_tokens=count(raw, "input_tokens") + written + read,
        output_tokens=count(raw, "output_tokens"),
        cached_tokens=read,
        cache_write_tokens=written,
        reasoning_tokens=count(raw.get("output_tokens_details"), "thinking_tokens"),
    )


def _params(params: Mapping[str, Any]) -> dict[str, Any]:
    body = {key: value for key, value in params.items() if key not in _MAPPED_PARAMS}
    stop = params.get("stop")
    if stop is not None:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    return body


def _block_text(block: Any) -> str:
    if isinstance(block, dict) and block.get("type") == "text":
        return str(block.get("text") or "")
    return ""


def _refusal(data: dict[str, Any]) -> str:
    """A refusal's explanation, when the reply has no text of its own (as Chat's ``refusal``)."""
    details = data.get("stop_details")
    explanation = details.get("explanation") if isinstance(details, dict) else None
    return str(explanation) if data.get("stop_reason") == "refusal" and explanation else ""


def _usage(raw: Any, text: str) -> Usage:
    usage = parse_usage(raw)
    if usage.estimated:
        return dataclasses.replace(usage, output_tokens=estimate_tokens(text))
    return usage


def _spend_capped(status: int, data: Any, message: str) -> bool:
    error = data.get("error") if isinstance(data, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    code = details.get("error_code") if isinstance(details, dict) else None
    if code == "enforced_spend_limit_reached":
        return True
    return status == 400 and _SPEND_LIMIT.search(message) is not None
