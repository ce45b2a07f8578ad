"""OpenAI Chat Completions (``POST {base_url}/chat/completions``), also used by the simulated
provider and OpenAI-compatible servers (vLLM, Ollama, llama.cpp, ...).

Tolerant by design: every usage field is optional, rate-limit headers may be missing, ``error``
may be an object or a plain string, and 5xx bodies may be HTML.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from batchllm.errors import (
    BadReply,
    FlexUnavailable,
    ProviderError,
    QuotaExhausted,
    RequestTooLarge,
    ServerError,
    error_for_status,
)
from batchllm.providers import ratelimits
from batchllm.providers.base import Completion, HttpCall, RateLimitInfo, Usage, redact
from batchllm.providers.media_parts import chat_content
from batchllm.providers.wire import (
    count,
    error_text,
    json_or_none,
    retry_after,
    snippet,
    wait_or_none,
)
from batchllm.render import Request, estimate_tokens

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: finish reasons that explain a reply with no content
_EXPLAINED = frozenset({"length", "content_filter"})
_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?)(ms|s)\b", re.IGNORECASE)


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
        body.setdefault("stream", False)  # some servers stream unless told not to
        if request.service_tier is not None:
            body["service_tier"] = request.service_tier
        body["messages"] = [
            {"role": role, "content": chat_content(text, request.media)}
            for role, text in request.messages
        ]
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
            if not isinstance(message, dict):
                raise TypeError("message is not an object")
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BadReply(f"unreadable reply: {body[:200]!r}", status=status) from exc
        if isinstance(data.get("error"), dict | str):
            raise ServerError(error_text(data), status=status)
        content = message.get("content")
        text = content if isinstance(content, str) else ""
        finish = choice.get("finish_reason")
        usage = _usage(data.get("usage"), text)
        if not text and message.get("refusal"):
            text, finish = str(message["refusal"]), "refusal"
        elif content is None:
            unexplained(message.get("tool_calls"), finish, usage, status)
        return Completion(
            text=text,
            finish_reason=finish,
            usage=usage,
            model=str(data.get("model") or ""),
            request_id=headers.get("x-request-id") or data.get("id"),
            service_tier=served_tier(data),
        )

    def rate_limits(self, headers: Mapping[str, str]) -> RateLimitInfo:
        return ratelimits.read(headers)

    def _error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        data = json_or_none(body)
        message = redact(error_text(data) if data is not None else snippet(body), self._api_key)
        code = _error_field(data, "code")
        kind = _error_field(data, "type")
        text = f"HTTP {status}: {message}"
        if status == 429 and "insufficient_quota" in (code, kind):
            return QuotaExhausted(text, status=status)
        if status == 429 and "request too large" in message.lower():
            return RequestTooLarge(text, status=status)
        if status == 429 and _capacity_refusal(code, message):
            return FlexUnavailable(text, status=status, retry_after_s=retry_after(headers))
        wait = retry_after(headers)
        if status == 429 and wait is None:
            wait = _wait_from_message(message)
        return error_for_status(status, text, retry_after_s=wait)


def unexplained(tool_calls: Any, finish: Any, usage: Usage, status: int) -> None:
    """A reply with no text: fine when ``finish`` explains it (cut at max_tokens, filtered);
    tool calls nobody asked for fail the row; silence is a bad reply, worth another try. The
    usage goes with the error: the reply was paid for."""
    if tool_calls:
        names = (
            [
                str((call.get("function") or {}).get("name") or "?")
                for call in tool_calls
                if isinstance(call, dict)
            ]
            if isinstance(tool_calls, list)
            else []
        )
        raise BadReply(
            f"the model called a tool ({', '.join(names) or 'unnamed'}) instead of answering; "
            "batchllm sends no tools, so a server or proxy added them",
            status=status,
            usage=usage,
            retryable=False,
            kind="unexpected_tool_call",
        )
    if finish not in _EXPLAINED:
        raise BadReply(
            f"the reply has no content and no reason for it (finish_reason {finish!r})",
            status=status,
            usage=usage,
        )


def _usage(raw: Any, text: str) -> Usage:
    if not isinstance(raw, dict):
        return Usage(output_tokens=estimate_tokens(text), estimated=True)
    prompt = raw.get("prompt_tokens_details")
    return Usage(
        input_tokens=count(raw, "prompt_tokens"),
        output_tokens=count(raw, "completion_tokens"),
        cached_tokens=count(prompt, "cached_tokens"),
        cache_write_tokens=count(prompt, "cache_write_tokens"),
        reasoning_tokens=count(raw.get("completion_tokens_details"), "reasoning_tokens"),
    )


def served_tier(data: Mapping[str, Any]) -> str | None:
    """The tier a reply says it was served at (``service_tier``), when it says."""
    tier = data.get("service_tier")
    return tier if isinstance(tier, str) and tier else None


def _capacity_refusal(code: str | None, message: str) -> bool:
    """A 429 that refuses for want of flex capacity ("resource unavailable"), which a
    rate-limit 429 (``rate_limit_exceeded``, "Rate limit reached ...") never says."""
    return code == "resource_unavailable" or "resource unavailable" in message.lower()


def _wait_from_message(message: str) -> float | None:
    match = _TRY_AGAIN.search(message)
    if match is None:
        return None
    number = float(match.group(1))
    return wait_or_none(number / 1000 if match.group(2).lower() == "ms" else number)


def _error_field(data: Any, key: str) -> str | None:
    error = data.get("error") if isinstance(data, dict) else None
    value = error.get(key) if isinstance(error, dict) else None
    return str(value) if value is not None else None
