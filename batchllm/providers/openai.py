"""OpenAI Chat Completions (``POST {base_url}/chat/completions``), also used by the simulated
provider and OpenAI-compatible servers (vLLM, Ollama, llama.cpp, ...).

Tolerant by design: every usage field is optional, rate-limit headers may be missing, ``error``
may be an object or a plain string, and 5xx bodies may be HTML.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

from batchllm.errors import (
    AuthFailed,
    BadReply,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    RequestRejected,
    RequestTooLarge,
    ServerError,
)
from batchllm.providers.base import Completion, HttpCall, RateLimitInfo, Usage, redact
from batchllm.render import Request, estimate_tokens

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?)(ms|s)\b", re.IGNORECASE)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


class OpenAIChat:
    """Adapter for the Chat Completions wire format."""

    name = "openai"

    def __init__(self, base_url: str | None, api_key: str | None) -> None:
        self.url = (base_url or DEFAULT_BASE_URL).rstrip("/") + "/chat/completions"
        self._api_key = api_key
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.headers = headers

    def build(self, request: Request) -> HttpCall:
        body: dict[str, Any] = dict(request.params)
        body["model"] = request.model
        body["messages"] = [{"role": role, "content": text} for role, text in request.messages]
        if request.response_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": "result",
                    "schema": request.response_schema,
                    "strict": request.schema_strict,
                },
            }
        return HttpCall("POST", self.url, self.headers, orjson.dumps(body))

    def parse(self, status: int, headers: Mapping[str, str], body: bytes) -> Completion:
        if status != 200:
            raise self._error(status, headers, body)
        try:
            data = orjson.loads(body)
            choice = data["choices"][0]
            message = choice.get("message") or {}
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
            raise BadReply(f"unreadable reply: {body[:200]!r}", status=status) from None
        if isinstance(data.get("error"), dict | str):
            raise ServerError(error_text(data), status=status)
        text = message.get("content") or ""
        finish = choice.get("finish_reason")
        if not text and message.get("refusal"):
            text, finish = str(message["refusal"]), "refusal"
        return Completion(
            text=text,
            finish_reason=finish,
            usage=_usage(data.get("usage"), text),
            model=str(data.get("model") or ""),
            request_id=headers.get("x-request-id") or data.get("id"),
        )

    def rate_limits(self, headers: Mapping[str, str]) -> RateLimitInfo:
        return RateLimitInfo(
            limit_requests=int_or_none(headers.get("x-ratelimit-limit-requests")),
            remaining_requests=int_or_none(headers.get("x-ratelimit-remaining-requests")),
            reset_requests_s=parse_duration(headers.get("x-ratelimit-reset-requests")),
            limit_tokens=int_or_none(headers.get("x-ratelimit-limit-tokens")),
            remaining_tokens=int_or_none(headers.get("x-ratelimit-remaining-tokens")),
            reset_tokens_s=parse_duration(headers.get("x-ratelimit-reset-tokens")),
        )

    def _error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        data = json_or_none(body)
        message = redact(error_text(data) if data is not None else snippet(body), self._api_key)
        code = _error_field(data, "code")
        kind = _error_field(data, "type")
        text = f"HTTP {status}: {message}"
        if status in (401, 403):
            return AuthFailed(text, status=status)
        if status == 429 and "insufficient_quota" in (code, kind):
            return QuotaExhausted(text, status=status)
        if status == 429 and "request too large" in message.lower():
            return RequestTooLarge(text, status=status)
        if status == 429:
            wait = retry_after(headers) or _wait_from_message(message)
            return RateLimited(text, status=status, retry_after_s=wait)
        if status in _RETRY_STATUSES or status >= 500:
            return ServerError(text, status=status, retry_after_s=retry_after(headers))
        return RequestRejected(text, status=status)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``retry-after`` (seconds or an HTTP date)."""
    millis = _float(headers.get("retry-after-ms"))
    if millis is not None and millis >= 0:
        return millis / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _float(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def parse_duration(value: str | None) -> float | None:
    """Parse OpenAI's Go-style durations (``"12ms"``, ``"1.5s"``, ``"6m0s"``) into seconds."""
    if not value:
        return None
    parts = _DURATION_PART.findall(value)
    if not parts:
        return _float(value)
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(number) * scale[unit] for number, unit in parts)


def _usage(raw: Any, text: str) -> Usage:
    if not isinstance(raw, dict):
        return Usage(output_tokens=estimate_tokens(text), estimated=True)
    prompt = raw.get("prompt_tokens_details") or {}
    completion = raw.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=int(raw.get("prompt_tokens") or 0),
        output_tokens=int(raw.get("completion_tokens") or 0),
        cached_tokens=int(prompt.get("cached_tokens") or 0),
        cache_write_tokens=int(prompt.get("cache_write_tokens") or 0),
        reasoning_tokens=int(completion.get("reasoning_tokens") or 0),
    )


def _wait_from_message(message: str) -> float | None:
    match = _TRY_AGAIN.search(message)
    if match is None:
        return None
    number = float(match.group(1))
    return number / 1000 if match.group(2).lower() == "ms" else number


def json_or_none(body: bytes) -> Any:
    """The body as JSON, or None when it is not JSON (an HTML gateway page, say)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def error_text(data: Any) -> str:
    """The message of an error body, whatever its envelope (object, string, flat)."""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    if error is not None:
        return str(error)
    if isinstance(data, dict) and "message" in data:
        return str(data["message"])
    return str(data)[:300]


def _error_field(data: Any, key: str) -> str | None:
    error = data.get("error") if isinstance(data, dict) else None
    value = error.get(key) if isinstance(error, dict) else None
    return str(value) if value is not None else None


def snippet(body: bytes) -> str:
    """A non-JSON error body in one short line: an HTML page's title, else its first words."""
    text = body.decode("utf-8", errors="replace")
    title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    return (title.group(1) if title else " ".join(text.split()))[:200] or "(empty body)"


def int_or_none(value: str | None) -> int | None:
    """A header value as an int, or None when missing or not a number."""
    number = _float(value)
    return int(number) if number is not None else None


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
