"""Azure OpenAI wire format as the simulated provider speaks it (providers.md §11, Azure row).

Owns what Azure does differently from OpenAI Chat on
``POST /openai/deployments/{deployment}/chat/completions?api-version=...``: the ``api-key``
header, the required ``api-version`` query parameter (400 without it), the deployment standing in
for a missing ``model``, content-filter results in the reply, error bodies whose ``code`` is the
HTTP status as a string with no ``type``, 429s that say "Please retry after N seconds", and only
the ``x-ratelimit-remaining-*`` headers. Request bodies and the completion object are OpenAI
Chat's (``ChatFormat``). Not here: Entra ID tokens, the ``/openai/v1`` routes.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence

import orjson

from batchllm.simulate.content import Reply
from batchllm.simulate.formats import ErrorReply, Incoming, SimRequest, SimUsage
from batchllm.simulate.limits import QuotaState, Rejection
from batchllm.simulate.wire import (
    ERRORS,
    BadRequest,
    ChatFormat,
    completion,
    parse_chat,
    rate_limit_message,
    retry_headers,
)

_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
    "a valid key for an active subscription and use a correct regional API endpoint for your "
    "resource."
)
_NO_VERSION = "Missing required query parameter 'api-version'."
_MESSAGES = {
    "500": "The server had an error while processing your request. Sorry about that!",
    "502-json": "Bad gateway.",
    "503": "The service is temporarily unable to process your request. Please try again later.",
    "529": "The service is overloaded. Please try again later.",
    "403": "Public access is disabled. Please configure private endpoint.",
}
_SAFE = {"filtered": False, "severity": "safe"}
_FILTERS = dict.fromkeys(("hate", "self_harm", "sexual", "violence"), _SAFE)


def envelope(status: int, message: str) -> bytes:
    """Azure's own error body: ``code`` is the HTTP status as a string, and there is no type."""
    return orjson.dumps({"error": {"code": str(status), "message": message}})


class AzureFormat(ChatFormat):
    """Azure OpenAI Chat Completions on a deployment."""

    def authorize(self, expected: str | None, incoming: Incoming) -> ErrorReply | None:
        if expected is None or incoming.headers.get("api-key") == expected:
            return None
        return ErrorReply(401, envelope(401, _DENIED))

    def parse(self, incoming: Incoming) -> SimRequest | ErrorReply:
        if not incoming.query.get("api-version"):
            return ErrorReply(400, envelope(400, _NO_VERSION))
        parsed = parse_chat(incoming.body, default_model=incoming.path.get("deployment"))
        if isinstance(parsed, BadRequest):
            return self._rejected(parsed)
        return parsed

    def reply(
        self, request: SimRequest, reply: Reply, usage: SimUsage, incoming: Incoming
    ) -> bytes:
        tokens = (usage.prompt_tokens, usage.completion_tokens)
        body = completion(request, reply.content, reply.finish_reason, tokens, incoming.reply_id)
        body["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _FILTERS}]
        for choice in body["choices"]:
            choice["content_filter_results"] = _FILTERS
        return orjson.dumps(body)

    def error(self, kind: str, incoming: Incoming) -> ErrorReply:
        if kind == "401":
            return ErrorReply(401, envelope(401, _DENIED))
        message = _MESSAGES.get(kind)
        if message is None:
            return ERRORS[kind]
        status = ERRORS[kind].status
        return ErrorReply(status, envelope(status, message))

    def rate_limited(
        self, rejection: Rejection, model: str, with_wait: bool, incoming: Incoming
    ) -> ErrorReply:
        if rejection.too_large:
            return ErrorReply(429, envelope(429, rate_limit_message(rejection, model)))
        wait = rejection.wait_s
        seconds = max(1, math.ceil(wait)) if math.isfinite(wait) else wait
        unit = "call" if rejection.dimension == "requests" else "token"
        version = incoming.query.get("api-version", "")
        message = (
            f"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
            f"{version} have exceeded {unit} rate limit of your current OpenAI S0 pricing tier. "
            f"Please retry after {seconds} second{'s' if seconds != 1 else ''}. Please go here: "
            "https://aka.ms/oai/quotaincrease if you would like to further increase the default "
            "rate limit."
        )
        headers = retry_headers(rejection.wait_s) if with_wait else {}
        return ErrorReply(429, envelope(429, message), headers=headers)

    def headers(
        self, incoming: Incoming, processing_ms: int, quotas: Sequence[QuotaState]
    ) -> dict[str, str]:
        found = {
            "apim-request-id": str(uuid.UUID(hex=incoming.request_id)),
            "x-request-id": str(uuid.UUID(hex=incoming.request_id)),
            "x-ms-region": "Sim Central",
        }
        for q in quotas:
            found[f"x-ratelimit-remaining-{q.name}"] = str(q.remaining)
        return found
