"""The Gemini generateContent adapter on real reply shapes (providers.md §10): no network."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from batchllm import errors
from batchllm.providers import DEFAULT_KEY_ENV, make_adapter
from batchllm.providers.gemini import Gemini
from batchllm.providers.openai import OpenAIChat
from batchllm.render import Request

KEY = "AIzaSyD-secret-key-0001"
ADAPTER = Gemini("http://127.0.0.1:1/v1beta", KEY)
RPC = "type.googleapis.com/google.rpc."
SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}


def _request(params: dict[str, Any], model: str = "gemini-2.5-flash", **extra: Any) -> Request:
    messages = (("system", "You are a classifier."), ("user", "Classify: ..."))
    return Request("r", "k", model, messages, params, 9, params.get("max_tokens"), **extra)


def _sent(request: Request) -> dict[str, Any]:
    return dict(orjson.loads(ADAPTER.build(request).body))


def _error(code: int, status: str, message: str, *details: dict[str, Any]) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return orjson.dumps({"error": error})


def _quota(quota_id: str) -> dict[str, Any]:
    return {"@type": f"{RPC}QuotaFailure", "violations": [{"quotaId": quota_id}]}


REPLY = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"text": "thinking about it", "thought": True},
                    {"text": '{"label":'},
                    {"text": ' "spam"}'},
                ],
            },
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": [],
        }
    ],
    "promptFeedback": {},
    "usageMetadata": {
        "promptTokenCount": 1200,
        "cachedContentTokenCount": 1024,
        "candidatesTokenCount": 40,
        "thoughtsTokenCount": 300,
        "totalTokenCount": 1540,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1200}],
    },
    "modelVersion": "gemini-2.5-flash",
    "responseId": "mAitaLmkHPPlz7IPvtfUqQ4",
}


def test_build_posts_generate_content_for_the_model_with_the_key_header() -> None:
    """The model is in the path (a models/ prefix is not doubled); the key in x-goog-api-key."""
    call = ADAPTER.build(_request({}))
    assert call.url == "http://127.0.0.1:1/v1beta/models/gemini-2.5-flash:generateContent"
    assert call.headers["x-goog-api-key"] == KEY
    assert "Authorization" not in call.headers
    prefixed = Gemini(None, KEY).build(_request({}, model="models/gemini-2.0-flash"))
    assert prefixed.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"
    )


def test_system_becomes_system_instruction_and_assistant_turns_are_model() -> None:
    """systemInstruction holds the system prompt; contents use roles user and model."""
    body = _sent(_request({}).follow_up("oops", "$: bad"))
    assert body["systemInstruction"] == {"parts": [{"text": "You are a classifier."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][0]["parts"] == [{"text": "Classify: ..."}]
    assert "generationConfig" not in body


def test_params_go_into_generation_config_with_gemini_names() -> None:
    """max_tokens, top_p, top_k and stop are renamed; other keys pass into generationConfig."""
    params = {"max_tokens": 256, "temperature": 0, "top_p": 0.5, "top_k": 4, "seed": 7}
    params |= {"stop": "END", "thinkingConfig": {"thinkingBudget": 0}}
    config = _sent(_request(params))["generationConfig"]
    assert config == {
        "maxOutputTokens": 256,
        "temperature": 0,
        "topP": 0.5,
        "topK": 4,
        "seed": 7,
        "stopSequences": ["END"],
        "thinkingConfig": {"thinkingBudget": 0},
    }
    assert _sent(_request({"max_completion_tokens": 9}))["generationConfig"] == {
        "maxOutputTokens": 9
    }


def test_request_level_fields_in_params_stay_top_level() -> None:
    """safetySettings and cachedContent are request fields, not generation settings."""
    params = {"safetySettings": [], "cachedContent": "cachedContents/abc", "temperature": 1}
    body = _sent(_request(params))
    assert body["safetySettings"] == [] and body["cachedContent"] == "cachedContents/abc"
    assert body["generationConfig"] == {"temperature": 1}


def test_schema_sets_json_mime_type_and_response_json_schema() -> None:
    """Structured output: responseMimeType application/json plus responseJsonSchema."""
    config = _sent(_request({}, response_schema=SCHEMA))["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA}


def test_parse_reads_text_without_thoughts_and_adds_thoughts_to_output() -> None:
    """Thinking tokens are not in candidatesTokenCount: they join output and are reasoning."""
    done = ADAPTER.parse(200, {}, orjson.dumps(REPLY))
    assert (done.text, done.finish_reason) == ('{"label": "spam"}', "stop")
    assert (done.model, done.request_id) == ("gemini-2.5-flash", "mAitaLmkHPPlz7IPvtfUqQ4")
    usage = done.usage
    assert (usage.input_tokens, usage.cached_tokens, usage.cache_write_tokens) == (1200, 1024, 0)
    assert (usage.output_tokens, usage.reasoning_tokens, usage.estimated) == (340, 300, False)


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "safety"),
        ("RECITATION", "recitation"),
    ],
)
def test_finish_reasons_map_max_tokens_to_length(reason: str, finish: str) -> None:
    """MAX_TOKENS reads as length; other finish reasons are lowercased."""
    reply = {**REPLY, "candidates": [{**REPLY["candidates"][0], "finishReason": reason}]}
    assert ADAPTER.parse(200, {}, orjson.dumps(reply)).finish_reason == finish


def test_a_blocked_prompt_fails_the_row() -> None:
    """No candidates and a promptFeedback.blockReason: the prompt was refused, not retried."""
    blocked = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {}}
    with pytest.raises(errors.RequestRejected, match="blocked: SAFETY"):
        ADAPTER.parse(200, {}, orjson.dumps(blocked))
    with pytest.raises(errors.BadReply):
        ADAPTER.parse(200, {}, orjson.dumps({"candidates": []}))


def test_missing_usage_metadata_is_estimated() -> None:
    """A reply without usageMetadata gets an output estimate, flagged as estimated."""
    reply = {k: v for k, v in REPLY.items() if k != "usageMetadata"}
    usage = ADAPTER.parse(200, {}, orjson.dumps(reply)).usage
    assert usage.estimated and usage.output_tokens > 0


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            429,
            _error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota",
                {"@type": f"{RPC}RetryInfo", "retryDelay": "37s"},
                _quota("GenerateRequestsPerMinutePerProjectPerModel"),
            ),
            errors.RateLimited,
        ),
        (
            429,
            _error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota",
                {"@type": f"{RPC}RetryInfo", "retryDelay": "37s"},
                _quota("GenerateRequestsPerDayPerProjectPerModel-FreeTier"),
            ),
            errors.QuotaExhausted,
        ),
        (
            400,
            _error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                {"@type": f"{RPC}ErrorInfo", "reason": "API_KEY_INVALID"},
            ),
            errors.AuthFailed,
        ),
        (
            400,
            _error(400, "INVALID_ARGUMENT", "API Key not found. Please pass a valid API key."),
            errors.AuthFailed,
        ),
        (400, _error(400, "INVALID_ARGUMENT", "contents is not specified"), errors.RequestRejected),
        (
            403,
            _error(403, "PERMISSION_DENIED", "The caller does not have permission"),
            errors.AuthFailed,
        ),
        (404, _error(404, "NOT_FOUND", "models/gemini-x is not found"), errors.RequestRejected),
        (500, _error(500, "INTERNAL", "An internal error has occurred."), errors.ServerError),
        (503, _error(503, "UNAVAILABLE", "The model is overloaded."), errors.ServerError),
        (504, _error(504, "DEADLINE_EXCEEDED", "Deadline expired"), errors.ServerError),
        (502, b"<html><title>Error 502 (Server Error)!!1</title></html>", errors.ServerError),
        (200, b"not json", errors.BadReply),
    ],
)
def test_each_error_becomes_the_type_that_decides_retry_or_stop(
    status: int, body: bytes, kind: type[errors.ProviderError]
) -> None:
    """Per-day quotas and bad keys stop the run; per-minute 429s and 5xx retry; 4xx fail."""
    with pytest.raises(kind) as caught:
        ADAPTER.parse(status, {}, body)
    assert type(caught.value) is kind


def test_a_429_waits_for_its_retry_info_delay() -> None:
    """RetryInfo.retryDelay ("37s", "0.25s") is the wait; without it there is none."""
    info = {"@type": f"{RPC}RetryInfo", "retryDelay": "0.25s"}
    for delay, wait in ((info, 0.25), ({**info, "retryDelay": "37s"}, 37.0)):
        with pytest.raises(errors.RateLimited) as caught:
            ADAPTER.parse(429, {}, _error(429, "RESOURCE_EXHAUSTED", "quota", delay))
        assert caught.value.retry_after_s == wait
    with pytest.raises(errors.RateLimited) as bare:
        ADAPTER.parse(429, {}, _error(429, "RESOURCE_EXHAUSTED", "quota"))
    assert bare.value.retry_after_s is None


def test_the_key_is_redacted_from_error_messages() -> None:
    """A message that echoes the key never carries it into our error."""
    with pytest.raises(errors.RequestRejected) as caught:
        ADAPTER.parse(404, {}, _error(404, "NOT_FOUND", f"no such key {KEY} here"))
    assert "secret" not in str(caught.value)


def test_gemini_sends_no_rate_limit_headers() -> None:
    """There is nothing to learn from Gemini's headers, even OpenAI-looking ones."""
    headers = {"x-ratelimit-limit-requests": "60"}
    assert ADAPTER.rate_limits(headers) == OpenAIChat(None, None).rate_limits({})


def test_registry_builds_the_adapter_with_its_key_variable() -> None:
    """provider = "gemini" makes this adapter and reads GEMINI_API_KEY by default."""
    assert isinstance(make_adapter("gemini", None, "k"), Gemini)
    assert DEFAULT_KEY_ENV["gemini"] == "GEMINI_API_KEY"
