"""The Anthropic Messages adapter on real reply shapes (providers.md §7–8): no network."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import orjson
import pytest

from batchllm import errors
from batchllm.providers import DEFAULT_KEY_ENV, make_adapter
from batchllm.providers.anthropic import AnthropicMessages, parse_usage, seconds_until
from batchllm.render import Request

KEY = "sk-ant-api03-secret-key-0001"
ADAPTER = AnthropicMessages("http://127.0.0.1:1", KEY)
SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string"}},
    "required": ["label"],
    "additionalProperties": False,
}


def _request(params: dict[str, Any], max_tokens: int | None = None, **extra: Any) -> Request:
    messages = (("system", "You classify."), ("user", "Classify: spam?"))
    return Request("r", "k", "claude-haiku-4-5", messages, params, 9, max_tokens, **extra)


def _sent(request: Request) -> dict[str, Any]:
    return dict(orjson.loads(ADAPTER.build(request).body))


def _error(error_type: str, message: str, **details: str) -> bytes:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if details:
        error["details"] = details
    return orjson.dumps({"type": "error", "error": error, "request_id": "req_011CSLsW7mFqvHHn"})


def _iso(seconds_from_now: float) -> str:
    moment = dt.datetime.fromtimestamp(time.time() + seconds_from_now, dt.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


REPLY = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "Hi! "},
        {"type": "text", "text": "How can I help?"},
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "stop_details": None,
    "usage": {
        "input_tokens": 21,
        "output_tokens": 393,
        "cache_creation_input_tokens": 188086,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 188086, "ephemeral_1h_input_tokens": 0},
        "output_tokens_details": {"thinking_tokens": 120},
        "server_tool_use": None,
        "service_tier": "standard",
    },
}


def test_build_posts_to_v1_messages_with_key_and_version_headers() -> None:
    """The base URL is the API root without /v1; x-api-key and anthropic-version are sent."""
    call = ADAPTER.build(_request({}))
    assert (call.method, call.url) == ("POST", "http://127.0.0.1:1/v1/messages")
    assert call.headers["x-api-key"] == KEY
    assert call.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in call.headers
    default = AnthropicMessages(None, KEY).build(_request({}))
    assert default.url == "https://api.anthropic.com/v1/messages"


def test_system_prompt_is_one_cached_text_block_and_turns_stay_messages() -> None:
    """The shared system prompt is a top-level block marked for prompt caching."""
    request = _request({}).follow_up("not json", "$: bad")
    body = _sent(request)
    assert body["system"] == [
        {"type": "text", "text": "You classify.", "cache_control": {"type": "ephemeral"}}
    ]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0] == {"role": "user", "content": "Classify: spam?"}


def test_no_system_prompt_sends_no_system_field() -> None:
    """A job without a system prompt sends no empty system block."""
    request = Request("r", "k", "claude-haiku-4-5", (("user", "U"),), {}, 1, None)
    assert "system" not in _sent(request)


def test_max_tokens_is_required_so_it_defaults_to_1024() -> None:
    """max_tokens comes from the job (either name) and is 1024 when the job sets none."""
    assert _sent(_request({}))["max_tokens"] == 1024
    assert _sent(_request({"max_tokens": 200}, max_tokens=200))["max_tokens"] == 200
    body = _sent(_request({"max_completion_tokens": 300}, max_tokens=300))
    assert body["max_tokens"] == 300
    assert "max_completion_tokens" not in body


def test_common_params_are_mapped_and_the_rest_pass_through() -> None:
    """temperature/top_p keep their names, stop becomes stop_sequences, seed is dropped."""
    params = {"temperature": 0, "top_p": 0.9, "stop": "END", "seed": 7, "top_k": 5}
    body = _sent(_request(params))
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0, 0.9, 5)
    assert body["stop_sequences"] == ["END"]
    assert "stop" not in body and "seed" not in body
    assert _sent(_request({"stop": ["A", "B"]}))["stop_sequences"] == ["A", "B"]


def test_schema_goes_in_output_config_format_next_to_params_output_config() -> None:
    """Structured output is output_config.format json_schema; an effort in params is kept."""
    request = _request({"output_config": {"effort": "low"}}, None, response_schema=SCHEMA)
    assert _sent(request)["output_config"] == {
        "effort": "low",
        "format": {"type": "json_schema", "schema": SCHEMA},
    }


def test_parse_concatenates_text_blocks_and_brings_usage_to_one_convention() -> None:
    """Cache writes and reads join input_tokens; thinking tokens are the reasoning count."""
    done = ADAPTER.parse(200, {"request-id": "req_9"}, orjson.dumps(REPLY))
    assert (done.text, done.finish_reason, done.request_id) == (
        "Hi! How can I help?",
        "stop",
        "req_9",
    )
    assert done.model == "claude-sonnet-4-5-20250929"
    usage = done.usage
    assert (usage.input_tokens, usage.cache_write_tokens, usage.cached_tokens) == (
        188107,
        188086,
        0,
    )
    assert (usage.output_tokens, usage.reasoning_tokens, usage.estimated) == (393, 120, False)


def test_cache_reads_are_input_tokens_at_the_cached_count() -> None:
    """A cache read adds to input_tokens and is reported as cached_tokens; nulls count 0."""
    raw = {"input_tokens": 30, "output_tokens": 5, "cache_read_input_tokens": 900}
    raw |= {"cache_creation_input_tokens": None}
    usage = parse_usage(raw)
    assert (usage.input_tokens, usage.cached_tokens, usage.cache_write_tokens) == (930, 900, 0)


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("refusal", "refusal"),
        ("tool_use", "tool_use"),
        ("pause_turn", "pause_turn"),
    ],
)
def test_stop_reasons_map_to_finish_reasons(stop_reason: str, finish: str) -> None:
    """max_tokens reads as length (truncated), end_turn as stop, refusal as refusal."""
    reply = {**REPLY, "stop_reason": stop_reason}
    assert ADAPTER.parse(200, {}, orjson.dumps(reply)).finish_reason == finish


def test_a_reply_without_usage_is_estimated() -> None:
    """A usage block that is missing gets an output estimate, flagged as estimated."""
    reply = {k: v for k, v in REPLY.items() if k != "usage"}
    usage = ADAPTER.parse(200, {}, orjson.dumps(reply)).usage
    assert usage.estimated and usage.output_tokens > 0


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, _error("invalid_request_error", "messages: Field required"), errors.RequestRejected),
        (
            400,
            _error(
                "invalid_request_error",
                "You have reached your specified API usage limits. You will regain access on "
                "2026-04-01 at 00:00 UTC.",
            ),
            errors.QuotaExhausted,
        ),
        (
            400,
            _error("invalid_request_error", "Your credit balance is too low to access the API."),
            errors.QuotaExhausted,
        ),
        (401, _error("authentication_error", "invalid x-api-key"), errors.AuthFailed),
        (402, _error("billing_error", "payment required"), errors.AuthFailed),
        (403, _error("permission_error", "no access"), errors.AuthFailed),
        (404, _error("not_found_error", "model: claude-x"), errors.RequestRejected),
        (409, _error("conflict_error", "conflict"), errors.ServerError),
        (413, b"<html><title>413 Request Entity Too Large</title></html>", errors.RequestRejected),
        (429, _error("rate_limit_error", "Number of requests exceeded"), errors.RateLimited),
        (
            429,
            _error("rate_limit_error", "spend cap", error_code="enforced_spend_limit_reached"),
            errors.QuotaExhausted,
        ),
        (500, _error("api_error", "Internal server error"), errors.ServerError),
        (502, b"<html><head><title>502 Bad Gateway</title></head></html>", errors.ServerError),
        (504, _error("timeout_error", "timeout"), errors.ServerError),
        (529, _error("overloaded_error", "Overloaded"), errors.ServerError),
        (200, b"<html>not json</html>", errors.BadReply),
        (200, _error("overloaded_error", "Overloaded"), errors.ServerError),
    ],
)
def test_each_error_becomes_the_type_that_decides_retry_or_stop(
    status: int, body: bytes, kind: type[errors.ProviderError]
) -> None:
    """§8.1: overloaded and 5xx retry, spend caps and bad keys stop the run, 4xx fail the row."""
    with pytest.raises(kind) as caught:
        ADAPTER.parse(status, {}, body)
    assert type(caught.value) is kind


def test_429_waits_for_retry_after() -> None:
    """retry-after (seconds) on a rate-limit 429 is the wait before the next try."""
    body = _error("rate_limit_error", "This request would exceed the rate limit")
    with pytest.raises(errors.RateLimited) as caught:
        ADAPTER.parse(429, {"retry-after": "17"}, body)
    assert caught.value.retry_after_s == 17.0
    with pytest.raises(errors.ServerError) as overloaded:
        ADAPTER.parse(529, {"retry-after": "3"}, _error("overloaded_error", "Overloaded"))
    assert overloaded.value.retry_after_s == 3.0


def test_the_key_is_redacted_from_error_messages() -> None:
    """A message that echoes the key never carries it into our error."""
    with pytest.raises(errors.AuthFailed) as caught:
        ADAPTER.parse(401, {}, _error("authentication_error", f"invalid x-api-key {KEY}"))
    assert "secret" not in str(caught.value)


def test_rate_limit_headers_are_read_with_rfc3339_resets() -> None:
    """anthropic-ratelimit-requests/tokens-* become limits; resets are seconds from now."""
    headers = {
        "anthropic-ratelimit-requests-limit": "1000",
        "anthropic-ratelimit-requests-remaining": "999",
        "anthropic-ratelimit-requests-reset": _iso(30),
        "anthropic-ratelimit-input-tokens-limit": "80000",
        "anthropic-ratelimit-input-tokens-remaining": "80000",
        "anthropic-ratelimit-input-tokens-reset": _iso(30),
        "anthropic-ratelimit-output-tokens-limit": "16000",
        "anthropic-ratelimit-output-tokens-remaining": "16000",
        "anthropic-ratelimit-output-tokens-reset": _iso(31),
        "anthropic-ratelimit-tokens-limit": "96000",
        "anthropic-ratelimit-tokens-remaining": "95000",
        "anthropic-ratelimit-tokens-reset": _iso(60),
    }
    info = ADAPTER.rate_limits(headers)
    assert (info.limit_requests, info.remaining_requests) == (1000, 999)
    assert (info.limit_tokens, info.remaining_tokens) == (96000, 95000)
    assert info.reset_requests_s == pytest.approx(30, abs=1.5)
    assert info.reset_tokens_s == pytest.approx(60, abs=1.5)


def test_input_token_limits_stand_in_when_the_combined_ones_are_missing() -> None:
    """Without anthropic-ratelimit-tokens-*, the input-token limit (ITPM) is the token limit."""
    headers = {
        "anthropic-ratelimit-input-tokens-limit": "80000",
        "anthropic-ratelimit-input-tokens-remaining": "41000",
        "anthropic-ratelimit-output-tokens-limit": "16000",
    }
    info = ADAPTER.rate_limits(headers)
    assert (info.limit_tokens, info.remaining_tokens) == (80000, 41000)
    assert info.limit_requests is None
    assert ADAPTER.rate_limits({}) == type(info)()


def test_rfc3339_resets_in_the_past_or_unreadable() -> None:
    """A reset already past reads 0 seconds; garbage reads None; fractions and offsets parse."""
    assert seconds_until("2025-08-21T12:40:59Z") == 0.0
    assert seconds_until("soon") is None
    assert seconds_until(None) is None
    later = dt.datetime.now(dt.timezone(dt.timedelta(hours=2))) + dt.timedelta(seconds=90)
    assert seconds_until(later.isoformat()) == pytest.approx(90, abs=1.5)


def test_registry_builds_the_adapter_with_its_key_variable() -> None:
    """provider = "anthropic" makes this adapter and reads ANTHROPIC_API_KEY by default."""
    assert isinstance(make_adapter("anthropic", None, "k"), AnthropicMessages)
    assert DEFAULT_KEY_ENV["anthropic"] == "ANTHROPIC_API_KEY"


def test_a_refusal_without_text_reads_its_explanation() -> None:
    """stop_reason refusal with no text block: the explanation is the text, as Chat's refusal."""
    details = {"type": "refusal", "category": "cyber", "explanation": "I can't help with that."}
    reply = {**REPLY, "content": [], "stop_reason": "refusal", "stop_details": details}
    done = ADAPTER.parse(200, {}, orjson.dumps(reply))
    assert (done.text, done.finish_reason) == ("I can't help with that.", "refusal")
