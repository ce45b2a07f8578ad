"""The OpenAI Chat Completions adapter on real reply shapes: no network, no server."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from batchllm import errors
from batchllm.providers.openai import OpenAIChat
from batchllm.providers.wire import parse_duration, retry_after
from batchllm.render import Request

ADAPTER = OpenAIChat("http://127.0.0.1:1/v1", "sk-test-secret-key-0001")


def _body(error_type: str | None, code: str | None, message: str) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    )


def test_build_sends_the_request_as_the_chat_format() -> None:
    """build() gives a POST to /chat/completions with the bearer key, model, messages, params."""
    request = Request(
        "r", "k", "gpt-4o-mini", (("system", "S"), ("user", "U")), {"max_tokens": 5}, 9, 5
    )
    call = ADAPTER.build(request)
    assert (call.method, call.url) == ("POST", "http://127.0.0.1:1/v1/chat/completions")
    assert call.headers["Authorization"] == "Bearer sk-test-secret-key-0001"
    assert orjson.loads(call.body) == {
        "max_tokens": 5,
        "model": "gpt-4o-mini",
        "stream": False,
        "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
    }


def test_parse_reads_text_finish_reason_and_usage_details() -> None:
    """Cached and reasoning tokens are read from the usage details block."""
    reply = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "bug"},
                "finish_reason": "length",
            }
        ],
        "usage": {
            "prompt_tokens": 1117,
            "completion_tokens": 46,
            "total_tokens": 1163,
            "prompt_tokens_details": {"cached_tokens": 1024},
            "completion_tokens_details": {"reasoning_tokens": 12},
        },
    }
    done = ADAPTER.parse(200, {"x-request-id": "req_9"}, orjson.dumps(reply))
    assert (done.text, done.finish_reason, done.request_id) == ("bug", "length", "req_9")
    usage = done.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens) == (1117, 46, 1024)
    assert (usage.reasoning_tokens, usage.estimated) == (12, False)


def test_missing_usage_is_estimated_and_flagged() -> None:
    """A server that sends no usage block gets an estimate, marked as such."""
    reply = {"choices": [{"message": {"content": "a fairly short reply"}, "finish_reason": "stop"}]}
    usage = ADAPTER.parse(200, {}, orjson.dumps(reply)).usage
    assert usage.estimated and usage.output_tokens > 0


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            400,
            _body("invalid_request_error", "context_length_exceeded", "too long"),
            errors.RequestRejected,
        ),
        (401, _body("invalid_request_error", "invalid_api_key", "bad key"), errors.AuthFailed),
        (403, _body(None, None, "Country, region, or territory not supported"), errors.AuthFailed),
        (
            404,
            _body("invalid_request_error", "model_not_found", "no model"),
            errors.RequestRejected,
        ),
        (408, b"", errors.ServerError),
        (409, _body(None, None, "lock timeout"), errors.ServerError),
        (422, _body(None, None, "unprocessable"), errors.RequestRejected),
        (429, _body("requests", "rate_limit_exceeded", "Rate limit reached"), errors.RateLimited),
        (429, _body("insufficient_quota", "insufficient_quota", "quota"), errors.QuotaExhausted),
        (
            429,
            _body("tokens", "rate_limit_exceeded", "Request too large for gpt-4o"),
            errors.RequestTooLarge,
        ),
        (500, _body("server_error", None, "The server had an error"), errors.ServerError),
        (502, b"<html><head><title>502 Bad Gateway</title></head></html>", errors.ServerError),
        (503, _body("server_error", "server_is_overloaded", "overloaded"), errors.ServerError),
        (529, _body(None, None, "Overloaded"), errors.ServerError),
        (200, b"not json", errors.BadReply),
    ],
)
def test_errors_map_to_types_that_say_whether_to_retry(
    status: int, body: bytes, kind: type
) -> None:
    """Each status and error body becomes the error type that decides retry or stop."""
    with pytest.raises(kind) as caught:
        ADAPTER.parse(status, {}, body)
    retryable = (
        status in (408, 409, 429, 500, 502, 503, 529, 200) and kind is not errors.QuotaExhausted
    )
    retryable = retryable and kind is not errors.RequestTooLarge
    assert caught.value.retryable is retryable
    assert caught.value.fatal is (kind in (errors.AuthFailed, errors.QuotaExhausted))


def test_html_error_pages_become_their_title() -> None:
    """A gateway's HTML page is summarised by its title, not dumped whole."""
    body = b"<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"
    with pytest.raises(errors.ServerError, match=r"^HTTP 502: 502 Bad Gateway$"):
        ADAPTER.parse(502, {}, body)


def test_keys_echoed_in_error_messages_are_redacted() -> None:
    """A 401 that echoes the key (whole or masked) never carries it into our error."""
    message = "Incorrect API key provided: sk-test-secret-key-0001 and sk-abc***wxyz."
    with pytest.raises(errors.AuthFailed) as caught:
        ADAPTER.parse(401, {}, _body("invalid_request_error", "invalid_api_key", message))
    assert "secret" not in str(caught.value) and "wxyz" not in str(caught.value)


def test_retry_after_comes_from_headers_then_the_message() -> None:
    """retry-after-ms wins, then retry-after, then 'try again in' in the 429 message."""
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({"retry-after": "120"}) == 120.0
    assert retry_after({}) is None
    with pytest.raises(errors.RateLimited) as caught:
        ADAPTER.parse(429, {}, _body("tokens", "rate_limit_exceeded", "Please try again in 84ms."))
    assert caught.value.retry_after_s == pytest.approx(0.084)


def test_go_durations_parse_to_seconds() -> None:
    """Reset headers like 6m0s, 1.5s and 12ms parse to seconds."""
    assert parse_duration("6m0s") == 360
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("12ms") == pytest.approx(0.012)
    assert parse_duration("23h47m36.648s") == pytest.approx(85656.648)
    assert parse_duration(None) is None


def test_rate_limit_headers_are_read() -> None:
    """x-ratelimit-* headers become the limiter's view of the account."""
    info = ADAPTER.rate_limits(
        {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "59",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-tokens": "149984",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    assert (info.limit_requests, info.remaining_requests, info.reset_requests_s) == (60, 59, 1.0)
    assert (info.limit_tokens, info.remaining_tokens, info.reset_tokens_s) == (
        150000,
        149984,
        360.0,
    )


def test_retry_after_as_an_http_date_counts_down_from_now() -> None:
    """Retry-After may be an HTTP date (RFC 9110): the wait is the time until it, never negative."""
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert retry_after({"retry-after": later}) == pytest.approx(30, abs=2)
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after({"retry-after": "soon"}) is None


def test_a_200_carrying_an_error_body_is_a_retryable_server_error() -> None:
    """Some compatible servers answer 200 with an error object: retried, never taken as a reply."""
    body = orjson.dumps({"choices": [{"message": {}}], "error": {"message": "engine overloaded"}})
    with pytest.raises(errors.ServerError, match="engine overloaded") as caught:
        ADAPTER.parse(200, {}, body)
    assert caught.value.retryable


def test_a_refusal_becomes_the_text_with_finish_reason_refusal() -> None:
    """A structured-output refusal has no content: its refusal text and reason are kept."""
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    reply = {"choices": [{"message": message, "finish_reason": "stop"}], "usage": {}}
    done = ADAPTER.parse(200, {}, orjson.dumps(reply))
    assert (done.text, done.finish_reason) == ("I can't help with that.", "refusal")


def _null_content(message: dict, finish: str | None) -> bytes:
    return orjson.dumps(
        {
            "model": "gpt-4o-mini",
            "choices": [{"message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 7},
        }
    )


def test_null_content_is_read_by_what_explains_it() -> None:
    """content null: a refusal is the text, a cap or filter explains it, else a bad reply."""
    refused = ADAPTER.parse(200, {}, _null_content({"content": None, "refusal": "No."}, "stop"))
    assert (refused.text, refused.finish_reason) == ("No.", "refusal")
    for finish in ("length", "content_filter"):
        cut = ADAPTER.parse(200, {}, _null_content({"content": None}, finish))
        assert (cut.text, cut.finish_reason) == ("", finish)
    with pytest.raises(errors.BadReply, match="no content and no reason") as silent:
        ADAPTER.parse(200, {}, _null_content({"content": None}, "stop"))
    assert silent.value.retryable and silent.value.kind == "bad_reply"
    assert silent.value.usage is not None and silent.value.usage.input_tokens == 30


def test_tool_calls_nobody_asked_for_fail_the_row() -> None:
    """Tool calls instead of content: not retried, named, the usage kept."""
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    ]
    body = _null_content({"content": None, "tool_calls": calls}, "tool_calls")
    with pytest.raises(errors.BadReply, match=r"called a tool \(lookup\)") as caught:
        ADAPTER.parse(200, {}, body)
    assert (caught.value.retryable, caught.value.kind) == (False, "unexpected_tool_call")
    assert caught.value.usage is not None and caught.value.usage.output_tokens == 7


@pytest.mark.parametrize("value", ["nan", "1e999", -4, "lots", True, None, [1]])
def test_usage_values_that_are_not_counts_read_as_zero(value: object) -> None:
    """A usage field that is not a sane count reads 0 instead of failing a paid reply."""
    body = orjson.dumps(
        {
            "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": value, "completion_tokens": 3},
        }
    )
    usage = ADAPTER.parse(200, {}, body).usage
    assert (usage.input_tokens, usage.output_tokens) == (0, 3)


def test_stream_false_is_sent_unless_the_params_say_otherwise() -> None:
    """Chat sends "stream": false (servers may stream by default); a param set by the user wins."""
    plain = Request("r", "k", "m", (("user", "U"),), {}, 9, None)
    assert orjson.loads(ADAPTER.build(plain).body)["stream"] is False
    chosen = Request("r", "k", "m", (("user", "U"),), {"stream": True}, 9, None)
    assert orjson.loads(ADAPTER.build(chosen).body)["stream"] is True
