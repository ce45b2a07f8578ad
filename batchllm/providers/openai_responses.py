"""OpenAI Responses API (``POST {base_url}/responses``, providers.md §3).

A sibling of the Chat adapter: the same Bearer key, error mapping (§4) and ``x-ratelimit-*``
headers (§5), inherited from ``OpenAIChat``; a different body and reply.

Request: system messages become ``instructions``; user and assistant turns the ``input`` items;
``store`` is false (a batch job has no use for responses kept server-side) unless the params say
otherwise. ``[model.params]``: ``max_tokens`` / ``max_completion_tokens`` become
``max_output_tokens`` (the API refuses values under 16: the row then fails with its message);
``temperature`` and ``top_p`` keep their names; ``seed`` is dropped (the Responses API has none);
every other key is sent as a top-level field, unchanged (``reasoning``, ``service_tier``, and
``stop``, which the API rejects rather than have it silently ignored). A reply schema goes in
``text.format`` flat (``type``, ``name`` "result", ``schema``, ``strict``), merged into a
``text`` the params may give (``verbosity``).

Reply: ``output_text`` is not on the wire; the text is every ``output_text`` part of every
``message`` output item, concatenated (a refusal part stands in when there is no text).
``status`` completed reads "stop"; incomplete reads its ``incomplete_details.reason``, with
max_output_tokens as "length". A 200 whose status is failed is an error: rate_limit_exceeded is
retried after a pause, invalid_prompt fails the row, anything else is retried.
Usage (§3.2): ``input_tokens`` includes cached and cache-write tokens, ``output_tokens`` includes
reasoning: batchllm's own convention already.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from batchllm.errors import BadReply, ProviderError, RateLimited, RequestRejected, ServerError
from batchllm.providers.base import Completion, HttpCall, Usage, redact
from batchllm.providers.media_parts import responses_content
from batchllm.providers.openai import DEFAULT_BASE_URL, OpenAIChat, served_tier, unexplained
from batchllm.providers.wire import count, json_or_none
from batchllm.render import Request, estimate_tokens

_MAPPED_PARAMS = frozenset({"max_tokens", "max_completion_tokens", "seed"})
_UNFINISHED = frozenset({"in_progress", "queued", "cancelled"})


class OpenAIResponses(OpenAIChat):
    """Adapter for the Responses wire format; errors and rate limits as ``OpenAIChat``."""

    name = "openai-responses"

    def __init__(self, base_url: str | None, api_key: str | None) -> None:
        super().__init__(base_url, api_key)
        self.url = (base_url or DEFAULT_BASE_URL).rstrip("/") + "/responses"

    def build(self, request: Request) -> HttpCall:
        body = {k: v for k, v in request.params.items() if k not in _MAPPED_PARAMS}
        body["model"] = request.model
        body.setdefault("store", False)
        body.setdefault("stream", False)  # transformers serve streams unless told not to
        if request.service_tier is not None:
            body["service_tier"] = request.service_tier
        instructions = "\n\n".join(text for role, text in request.messages if role == "system")
        if instructions:
            body["instructions"] = instructions
        body["input"] = [
            {"role": role, "content": responses_content(text, request.media)}
            for role, text in request.messages
            if role != "system"
        ]
        if request.max_tokens is not None:
            body["max_output_tokens"] = request.max_tokens
        if request.response_schema is not None:
            given = body.get("text")
            text = dict(given) if isinstance(given, Mapping) else {}
            text["format"] = {
                "type": "json_schema",
                "name": "result",
                "schema": request.response_schema,
                "strict": request.schema_strict,
            }
            body["text"] = text
        return HttpCall("POST", self.url, self.headers, orjson.dumps(body))

    def parse(self, status: int, headers: Mapping[str, str], body: bytes) -> Completion:
        if status != 200:
            raise self._error(status, headers, body)
        data = json_or_none(body)
        output = data.get("output") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(output, list):
            raise BadReply(f"unreadable reply: {body[:200]!r}", status=status)
        state = data.get("status")
        if state == "failed":
            raise self._failed(data.get("error"))
        if state in _UNFINISHED:
            raise BadReply(f"the response is {state}, not finished", status=status)
        text, refusal = _output_text(output)
        finish = _finish(data)
        usage = _usage(data.get("usage"), text)
        if not text and refusal:
            text, finish = refusal, "refusal"
        elif not any(isinstance(i, dict) and i.get("type") == "message" for i in output):
            calls = [i for i in output if isinstance(i, dict) and i.get("type") == "function_call"]
            unexplained([{"function": call} for call in calls], finish, usage, status)
        return Completion(
            text=text,
            finish_reason=finish,
            usage=usage,
            model=str(data.get("model") or ""),
            request_id=headers.get("x-request-id") or data.get("id"),
            service_tier=served_tier(data),
        )

    def _failed(self, error: Any) -> ProviderError:
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        text = redact(f"response failed: {code}: {message or error}", self._api_key)
        if code == "rate_limit_exceeded":
            return RateLimited(text, status=200)
        if code == "invalid_prompt":
            return RequestRejected(text, status=200)
        return ServerError(text, status=200)


def _output_text(output: list[Any]) -> tuple[str, str]:
    """The output_text parts of message items, and any refusal parts, each concatenated."""
    texts: list[str] = []
    refusals: list[str] = []
    for item in output:
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        for part in item.get("content") or []:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "output_text":
                texts.append(str(part.get("text") or ""))
            elif kind == "refusal":
                refusals.append(str(part.get("refusal") or ""))
    return "".join(texts), "".join(refusals)


def _finish(data: dict[str, Any]) -> str | None:
    state = data.get("status")
    if state == "completed":
        return "stop"
    if state != "incomplete":
        return state if isinstance(state, str) else None
    details = data.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    if reason == "max_output_tokens":
        return "length"
    return str(reason) if reason else "incomplete"


def _usage(raw: Any, text: str) -> Usage:
    if not isinstance(raw, dict):
        return Usage(output_tokens=estimate_tokens(text), estimated=True)
    given = raw.get("input_tokens_details")
    return Usage(
        input_tokens=count(raw, "input_tokens"),
        output_tokens=count(raw, "output_tokens"),
        cached_tokens=count(given, "cached_tokens"),
        cache_write_tokens=count(given, "cache_write_tokens"),
        reasoning_tokens=count(raw.get("output_tokens_details"), "reasoning_tokens"),
    )
