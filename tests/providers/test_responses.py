"""The OpenAI Responses adapter on real reply shapes (providers.md §3): no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

import batchllm
from batchllm import errors
from batchllm.providers import DEFAULT_KEY_ENV, make_adapter
from batchllm.providers.openai_responses import OpenAIResponses
from batchllm.render import Request
from batchllm.run.pipeline import arun_job
from conftest import Start, job_data, ticket_rows, write_csv, write_job

KEY = "sk-proj-secret-key-0001"
ADAPTER = OpenAIResponses("http://127.0.0.1:1/v1", KEY)
SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string"}},
    "required": ["label"],
    "additionalProperties": False,
}


def _request(params: dict[str, Any], max_tokens: int | None = None, **extra: Any) -> Request:
    messages = (("system", "You label."), ("user", "Label: buy now!!!"))
    return Request("r", "k", "gpt-5.4-mini", messages, params, 9, max_tokens, **extra)


def _sent(request: Request) -> dict[str, Any]:
    return dict(orjson.loads(ADAPTER.build(request).body))


def _reply(**changes: Any) -> bytes:
    reply: dict[str, Any] = {
        "id": "resp_67ccd2bed1ec8190",
        "object": "response",
        "created_at": 1741476542,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "model": "gpt-5.4-mini-2026-03-17",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": '{"label":', "annotations": []},
                    {"type": "output_text", "text": '"spam"}', "annotations": []},
                ],
            },
        ],
        "usage": {
            "input_tokens": 2036,
            "input_tokens_details": {"cached_tokens": 1920, "cache_write_tokens": 0},
            "output_tokens": 87,
            "output_tokens_details": {"reasoning_tokens": 64},
            "total_tokens": 2123,
        },
    }
    return orjson.dumps(reply | changes)


def test_build_posts_to_responses_with_instructions_and_input_items() -> None:
    """System text is instructions; turns are input items; store is false for batch work."""
    call = ADAPTER.build(_request({}).follow_up("nope", "$: bad"))
    assert (call.method, call.url) == ("POST", "http://127.0.0.1:1/v1/responses")
    assert call.headers["Authorization"] == f"Bearer {KEY}"
    body = orjson.loads(call.body)
    assert body["instructions"] == "You label."
    assert [item["role"] for item in body["input"]] == ["user", "assistant", "user"]
    assert body["input"][0] == {"role": "user", "content": "Label: buy now!!!"}
    assert body["store"] is False
    assert OpenAIResponses(None, KEY).url == "https://api.openai.com/v1/responses"


def test_output_cap_is_max_output_tokens_and_seed_is_dropped() -> None:
    """max_tokens or max_completion_tokens become max_output_tokens; the rest pass through."""
    params = {"max_tokens": 64, "temperature": 0.2, "top_p": 1, "seed": 3}
    params |= {"reasoning": {"effort": "low"}, "store": True}
    body = _sent(_request(params, max_tokens=64))
    assert body["max_output_tokens"] == 64
    assert "max_tokens" not in body and "seed" not in body
    assert (body["temperature"], body["top_p"], body["reasoning"]) == (0.2, 1, {"effort": "low"})
    assert body["store"] is True
    body = _sent(_request({"max_completion_tokens": 32}, max_tokens=32))
    assert body["max_output_tokens"] == 32 and "max_completion_tokens" not in body
    assert "max_output_tokens" not in _sent(_request({}))


def test_schema_goes_flat_in_text_format_next_to_verbosity() -> None:
    """Structured output is text.format {type, name, schema, strict}, not nested as in Chat."""
    request = _request({"text": {"verbosity": "low"}}, response_schema=SCHEMA, schema_strict=True)
    assert _sent(request)["text"] == {
        "verbosity": "low",
        "format": {"type": "json_schema", "name": "result", "schema": SCHEMA, "strict": True},
    }


def test_parse_concatenates_output_text_of_message_items() -> None:
    """output_text is not on the wire: the text is every output_text part, in order."""
    done = ADAPTER.parse(200, {"x-request-id": "req_7"}, _reply())
    assert (done.text, done.finish_reason, done.request_id) == ('{"label":"spam"}', "stop", "req_7")
    assert done.model == "gpt-5.4-mini-2026-03-17"


def test_usage_already_follows_the_one_convention() -> None:
    """Cached and cache-write tokens are inside input_tokens; reasoning inside output_tokens."""
    usage = ADAPTER.parse(200, {}, _reply()).usage
    assert (usage.input_tokens, usage.cached_tokens, usage.cache_write_tokens) == (2036, 1920, 0)
    assert (usage.output_tokens, usage.reasoning_tokens) == (87, 64)
    old = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 2}
    assert ADAPTER.parse(200, {}, _reply(usage=old)).usage.cache_write_tokens == 0
    assert ADAPTER.parse(200, {}, _reply(usage=None)).usage.estimated


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("max_output_tokens", "length"), ("content_filter", "content_filter"), (None, "incomplete")],
)
def test_incomplete_responses_say_why(reason: str | None, finish: str) -> None:
    """status incomplete reads its incomplete_details.reason, max_output_tokens as length."""
    details = {"reason": reason} if reason else None
    reply = _reply(status="incomplete", incomplete_details=details)
    assert ADAPTER.parse(200, {}, reply).finish_reason == finish


def test_a_refusal_part_is_the_text_when_there_is_no_output_text() -> None:
    """A refusal content part reads as the text, with finish reason refusal."""
    message = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "refusal", "refusal": "I can't help with that."}],
    }
    done = ADAPTER.parse(200, {}, _reply(output=[message]))
    assert (done.text, done.finish_reason) == ("I can't help with that.", "refusal")


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("rate_limit_exceeded", errors.RateLimited),
        ("server_error", errors.ServerError),
        ("vector_store_timeout", errors.ServerError),
        ("invalid_prompt", errors.RequestRejected),
    ],
)
def test_a_failed_response_is_an_error_by_its_code(
    code: str, kind: type[errors.ProviderError]
) -> None:
    """A 200 with status failed raises by error.code: rate limits and server errors retry."""
    reply = _reply(status="failed", output=[], error={"code": code, "message": "went wrong"})
    with pytest.raises(kind, match=code):
        ADAPTER.parse(200, {}, reply)


def test_unfinished_or_unreadable_replies_are_retried() -> None:
    """A queued or in-progress response, or a body without output, is a BadReply."""
    for body in (_reply(status="in_progress"), b"{}", b"<html>"):
        with pytest.raises(errors.BadReply):
            ADAPTER.parse(200, {}, body)


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (401, {"type": "invalid_request_error", "code": "invalid_api_key"}, errors.AuthFailed),
        (429, {"type": "tokens", "code": "rate_limit_exceeded"}, errors.RateLimited),
        (429, {"type": "insufficient_quota", "code": "insufficient_quota"}, errors.QuotaExhausted),
        (
            400,
            {"type": "invalid_request_error", "code": "unknown_parameter"},
            errors.RequestRejected,
        ),
        (500, {"type": "server_error", "code": None}, errors.ServerError),
    ],
)
def test_http_errors_map_as_openai(
    status: int, error: dict[str, Any], kind: type[errors.ProviderError]
) -> None:
    """Non-200 replies use OpenAI's error mapping (§4), shared with the Chat adapter."""
    body = orjson.dumps({"error": {"message": f"echo {KEY}", "param": None, **error}})
    with pytest.raises(kind) as caught:
        ADAPTER.parse(status, {"retry-after-ms": "250"}, body)
    assert type(caught.value) is kind and "secret" not in str(caught.value)


def test_rate_limit_headers_are_openai_headers() -> None:
    """x-ratelimit-* are read as for Chat Completions."""
    info = ADAPTER.rate_limits(
        {"x-ratelimit-limit-tokens": "150000", "x-ratelimit-reset-tokens": "6m0s"}
    )
    assert (info.limit_tokens, info.reset_tokens_s) == (150000, 360.0)


def test_registry_builds_the_adapter_with_its_key_variable() -> None:
    """provider = "openai-responses" makes this adapter and reads OPENAI_API_KEY by default."""
    assert isinstance(make_adapter("openai-responses", None, "k"), OpenAIResponses)
    assert DEFAULT_KEY_ENV["openai-responses"] == "OPENAI_API_KEY"


def test_stream_false_is_sent_unless_the_params_say_otherwise() -> None:
    """The Responses body says "stream": false: transformers serve streams when it is absent."""
    assert _sent(_request({}))["stream"] is False
    assert _sent(_request({"stream": True}))["stream"] is True


def test_a_function_call_instead_of_a_message_fails_the_row_with_its_usage() -> None:
    """Output with a function_call and no message: unexpected_tool_call, not retried, paid."""
    call = {"type": "function_call", "name": "lookup", "arguments": "{}", "call_id": "c1"}
    with pytest.raises(errors.BadReply, match=r"called a tool \(lookup\)") as caught:
        ADAPTER.parse(200, {}, _reply(output=[call]))
    assert (caught.value.kind, caught.value.retryable) == ("unexpected_tool_call", False)
    assert caught.value.usage is not None and caught.value.usage.input_tokens == 2036
    with pytest.raises(errors.BadReply, match="no content") as empty:
        ADAPTER.parse(200, {}, _reply(output=[]))
    assert empty.value.retryable


async def test_a_server_that_streams_by_default_answers_every_row(
    tmp_path: Path, start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a server that streams unless told not to, every row comes back ok."""
    monkeypatch.setenv(DEFAULT_KEY_ENV["openai-responses"], KEY)
    sim = await start(streams_by_default=True)
    write_csv(tmp_path / "input.csv", ticket_rows(12))
    data = job_data(sim.url, model={"provider": "openai-responses"})
    job = batchllm.load_job(write_job(tmp_path, data))
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (12, 0)
