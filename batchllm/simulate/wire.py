"""OpenAI Chat Completions wire format as the simulated provider speaks it (providers.md §2 and §4).

Owns parsing a chat request body and building every body the simulator sends in this format: the
chat.completion object, the error envelope with OpenAI's own wording for each error kind, the
Cloudflare 502 page, the 401 and 429 messages and the ``x-ratelimit-*`` headers, gathered in
``ChatFormat`` (see ``formats``). Pure functions of their arguments, no aiohttp objects.
Deciding which of these to send belongs to ``batchllm.simulate.flow``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from batchllm.simulate.content import Reply
from batchllm.simulate.formats import (
    BAD_GATEWAY_HTML,
    ErrorReply,
    Incoming,
    SimRequest,
    SimUsage,
)
from batchllm.simulate.limits import QuotaState, Rejection, go_duration, openai_headers

ORG = "org-sim"
_RATE_DOCS = "Visit https://platform.openai.com/account/rate-limits to learn more."
_KEY_DOCS = "You can find your API key at https://platform.openai.com/account/api-keys."
_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
    "valid JSON.)"
)
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
CONTEXT_TOO_LONG = (
    "This model's maximum context length is 128000 tokens. However, your messages resulted in "
    "131072 tokens. Please reduce the length of the messages."
)


@dataclass(frozen=True, slots=True)
class BadRequest:
    """Why a chat request body was rejected with 400."""

    message: str
    param: str | None
    code: str | None


def envelope(message: str, error_type: str, code: str | None, param: str | None = None) -> bytes:
    """OpenAI's error body: all four keys always present."""
    error = {"message": message, "type": error_type, "param": param, "code": code}
    return orjson.dumps({"error": error})


def _json_error(
    status: int, message: str, error_type: str, code: str | None = None, param: str | None = None
) -> ErrorReply:
    return ErrorReply(status, envelope(message, error_type, code, param))


ERRORS: Mapping[str, ErrorReply] = {
    "500": _json_error(
        500,
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
    ),
    "502": ErrorReply(502, BAD_GATEWAY_HTML, "text/html"),
    "502-json": _json_error(502, "Bad gateway.", "cf_bad_gateway"),
    "503": _json_error(
        503,
        "The engine is currently overloaded, please try again later",
        "server_error",
        "server_is_overloaded",
    ),
    # 529 is Anthropic's overload status; OpenAI never sends it, but clients meet it via gateways.
    "529": _json_error(529, "Overloaded", "overloaded_error"),
    "400": _json_error(
        400, CONTEXT_TOO_LONG, "invalid_request_error", "context_length_exceeded", "messages"
    ),
    "401": _json_error(
        401,
        f"Incorrect API key provided: sk-sim***abcd. {_KEY_DOCS}",
        "invalid_request_error",
        "invalid_api_key",
    ),
    "403": _json_error(
        403,
        "Country, region, or territory not supported",
        "request_forbidden",
        "unsupported_country_region_territory",
    ),
    "insufficient_quota": _json_error(
        429,
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
        "insufficient_quota",
    ),
}
"""Canned replies by fault kind; "502" is the HTML page, "502-json" the JSON variant."""


def parse_chat(body: bytes, default_model: str | None = None) -> SimRequest | BadRequest:
    """Read a chat request body, or say why OpenAI would answer 400.

    ``default_model`` stands in for a missing ``model`` (Azure names the deployment in the path).
    """
    data = parse_json(body)
    if isinstance(data, BadRequest):
        return data
    model, messages = data.get("model", default_model), data.get("messages")
    if not isinstance(model, str) or not model:
        return BadRequest("you must provide a model parameter", "model", None)
    if not isinstance(messages, list) or not messages:
        message = "Missing required parameter: 'messages'."
        return BadRequest(message, "messages", "missing_required_parameter")
    name = "max_tokens" if data.get("max_completion_tokens") is None else "max_completion_tokens"
    cap = data.get(name)
    if cap is not None and (type(cap) is not int or cap < 1):
        return BadRequest(f"Invalid '{name}': expected a positive integer.", name, "invalid_value")
    return SimRequest(model, messages, cap, data.get("response_format"))


def parse_json(body: bytes) -> dict[str, Any] | BadRequest:
    """A request body's JSON object, or OpenAI's 400 for a body that is not one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return BadRequest(_BAD_JSON, None, None)
    return data if isinstance(data, dict) else BadRequest(_BAD_JSON, None, None)


def model_of(body: bytes) -> str:
    """The model a body names, for error messages about bodies not otherwise parsed."""
    with contextlib.suppress(orjson.JSONDecodeError):
        data = orjson.loads(body)
        if isinstance(data, dict) and isinstance(data.get("model"), str):
            return str(data["model"])
    return "gpt-sim"


def auth_failure(expected: str | None, header: str | None) -> str | None:
    """The 401 message OpenAI would send, or None when the key is right (or none is required)."""
    if expected is None or header == f"Bearer {expected}":
        return None
    sent = (header or "").removeprefix("Bearer").strip()
    if not sent:
        return _NO_KEY
    masked = f"{sent[:3]}***{sent[-4:]}" if len(sent) > 8 else "***"
    return f"Incorrect API key provided: {masked}. {_KEY_DOCS}"


def rate_limit_message(rejection: Rejection, model: str) -> str:
    """OpenAI's 429 wording, which clients parse for "try again in" when headers are missing."""
    r = rejection
    where = f"for {model} in organization {ORG} on"
    if r.too_large:
        return (
            f"Request too large {where} tokens per min (TPM): Limit {r.limit}, Requested "
            f"{r.requested}. The input or output tokens must be reduced in order to run "
            f"successfully. {_RATE_DOCS}"
        )
    unit = "requests per min (RPM)" if r.dimension == "requests" else "tokens per min (TPM)"
    return (
        f"Rate limit reached {where} {unit}: Limit {r.limit}, Used {r.used}, Requested "
        f"{r.requested}. Please try again in {go_duration(max(r.wait_s, 0.001))}. {_RATE_DOCS}"
    )


def completion(
    request: SimRequest, content: str, finish: str, usage: tuple[int, int], reply_id: str
) -> dict[str, Any]:
    """A chat.completion object with one choice; ``usage`` is (prompt_tokens, completion_tokens)."""
    prompt, output = usage
    message: dict[str, Any] = {"role": "assistant", "content": content}
    message |= {"refusal": None, "annotations": []}
    details = {"reasoning_tokens": 0, "audio_tokens": 0}
    details |= {"accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
    return {
        "id": f"chatcmpl-sim-{reply_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": output,
            "total_tokens": prompt + output,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": details,
        },
        "service_tier": "default",
        "system_fingerprint": "fp_sim0000001",
    }


def retry_headers(wait_s: float) -> dict[str, str]:
    """``retry-after-ms`` and ``retry-after`` (whole seconds, rounded up) for a 429; a wait that
    is not a finite number (a hostile server's) is sent as Python spells it."""
    if not math.isfinite(wait_s):
        return {"retry-after-ms": str(wait_s), "retry-after": str(wait_s)}
    return {"retry-after-ms": f"{wait_s * 1000:.3f}", "retry-after": str(math.ceil(wait_s))}


class ChatFormat:
    """OpenAI Chat Completions, ``POST /v1/chat/completions``: Bearer key, OpenAI envelopes."""

    schema_field = "response_format"

    def model_of(self, incoming: Incoming) -> str:
        return model_of(incoming.body)

    def authorize(self, expected: str | None, incoming: Incoming) -> ErrorReply | None:
        denied = auth_failure(expected, incoming.headers.get("Authorization"))
        if denied is None:
            return None
        return ErrorReply(401, envelope(denied, "invalid_request_error", "invalid_api_key"))

    def parse(self, incoming: Incoming) -> SimRequest | ErrorReply:
        parsed = parse_chat(incoming.body)
        if isinstance(parsed, BadRequest):
            return self._rejected(parsed)
        return parsed

    def _rejected(self, bad: BadRequest) -> ErrorReply:
        return _json_error(400, bad.message, "invalid_request_error", bad.code, bad.param)

    def bad_request(self, message: str, param: str | None, incoming: Incoming) -> ErrorReply:
        return _json_error(400, message, "invalid_request_error", None, param)

    def reply(
        self, request: SimRequest, reply: Reply, usage: SimUsage, incoming: Incoming
    ) -> bytes:
        tokens = (usage.prompt_tokens, usage.completion_tokens)
        body = completion(request, reply.content, reply.finish_reason, tokens, incoming.reply_id)
        return orjson.dumps(body)

    def error(self, kind: str, incoming: Incoming) -> ErrorReply:
        return ERRORS[kind]

    def rate_limited(
        self, rejection: Rejection, model: str, with_wait: bool, incoming: Incoming
    ) -> ErrorReply:
        wanted = with_wait and not rejection.too_large
        body = envelope(
            rate_limit_message(rejection, model), rejection.dimension, "rate_limit_exceeded"
        )
        return ErrorReply(429, body, headers=retry_headers(rejection.wait_s) if wanted else {})

    def headers(
        self, incoming: Incoming, processing_ms: int, quotas: Sequence[QuotaState]
    ) -> dict[str, str]:
        return {
            "x-request-id": f"req_{incoming.request_id}",
            "openai-organization": ORG,
            "openai-processing-ms": str(processing_ms),
            "openai-version": "2020-10-01",
            **openai_headers(quotas),
        }
