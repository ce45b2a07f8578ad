"""The Azure OpenAI adapter on real reply shapes (providers.md §11): no network."""

from __future__ import annotations

import orjson
import pytest

from batchllm import errors
from batchllm.providers import DEFAULT_KEY_ENV, make_adapter
from batchllm.providers.azure import AzureOpenAI, completions_url
from batchllm.render import Request

KEY = "0123456789abcdef-secret-key"
DEPLOYMENT = "https://res.openai.azure.com/openai/deployments/mini"
ADAPTER = AzureOpenAI(DEPLOYMENT, KEY)


def _azure_error(status: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": status, "message": message}})


def test_build_posts_chat_to_the_deployment_with_api_version_and_api_key() -> None:
    """The URL is the deployment's chat/completions with api-version; the key is api-key."""
    request = Request("r", "k", "gpt-4o-mini", (("user", "U"),), {"max_tokens": 5}, 9, 5)
    call = ADAPTER.build(request)
    assert call.url == f"{DEPLOYMENT}/chat/completions?api-version=2024-10-21"
    assert call.headers["api-key"] == KEY
    assert "Authorization" not in call.headers
    assert orjson.loads(call.body) == {
        "max_tokens": 5,
        "model": "gpt-4o-mini",
        "stream": False,
        "messages": [{"role": "user", "content": "U"}],
    }


@pytest.mark.parametrize(
    ("base_url", "url"),
    [
        (f"{DEPLOYMENT}/", f"{DEPLOYMENT}/chat/completions?api-version=2024-10-21"),
        (
            f"{DEPLOYMENT}?api-version=2025-01-01-preview",
            f"{DEPLOYMENT}/chat/completions?api-version=2025-01-01-preview",
        ),
        (
            f"{DEPLOYMENT}/chat/completions?api-version=2024-06-01",
            f"{DEPLOYMENT}/chat/completions?api-version=2024-06-01",
        ),
    ],
)
def test_the_deployment_url_may_carry_its_api_version(base_url: str, url: str) -> None:
    """An api-version in base_url wins over the default; a trailing slash or path is tolerated."""
    assert completions_url(base_url) == url


def test_a_deployment_url_is_required() -> None:
    """Without base_url there is no deployment to call."""
    with pytest.raises(ValueError, match="deployment URL"):
        AzureOpenAI(None, KEY)


def test_content_filter_finish_reason_passes_through() -> None:
    """A filtered completion keeps finish_reason content_filter, with its usage."""
    reply = {
        "id": "chatcmpl-1",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {"index": 0, "finish_reason": "content_filter", "message": {"role": "assistant"}}
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 0, "total_tokens": 12},
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
    }
    done = ADAPTER.parse(200, {"apim-request-id": "a"}, orjson.dumps(reply))
    assert (done.text, done.finish_reason, done.usage.input_tokens) == ("", "content_filter", 12)


def test_azure_429_says_when_in_words() -> None:
    """A 429 with a string code and no retry headers waits as its message says."""
    message = (
        "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
        "2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. "
        "Please retry after 37 seconds."
    )
    with pytest.raises(errors.RateLimited) as caught:
        ADAPTER.parse(429, {}, _azure_error("429", message))
    assert caught.value.retry_after_s == 37.0
    with pytest.raises(errors.RateLimited) as headed:
        ADAPTER.parse(429, {"retry-after-ms": "1500"}, _azure_error("429", message))
    assert headed.value.retry_after_s == 1.5
    with pytest.raises(errors.RateLimited) as bare:
        ADAPTER.parse(429, {}, _azure_error("429", "Too many requests"))
    assert bare.value.retry_after_s is None


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            401,
            _azure_error("401", "Access denied due to invalid subscription key"),
            errors.AuthFailed,
        ),
        (
            400,
            orjson.dumps(
                {"error": {"code": "content_filter", "message": "filtered", "param": "prompt"}}
            ),
            errors.RequestRejected,
        ),
        (404, _azure_error("404", "Resource not found"), errors.RequestRejected),
        (500, _azure_error("500", "The server had an error"), errors.ServerError),
        (503, _azure_error("503", "Service unavailable"), errors.ServerError),
    ],
)
def test_string_codes_without_type_still_map(
    status: int, body: bytes, kind: type[errors.ProviderError]
) -> None:
    """Azure's code is a string status and type is missing; the status decides."""
    with pytest.raises(kind) as caught:
        ADAPTER.parse(status, {}, body)
    assert type(caught.value) is kind


def test_the_key_is_redacted_from_error_messages() -> None:
    """A message that echoes the api-key never carries it into our error."""
    with pytest.raises(errors.AuthFailed) as caught:
        ADAPTER.parse(401, {}, _azure_error("401", f"bad key {KEY}"))
    assert "secret" not in str(caught.value)


def test_only_remaining_headers_are_known() -> None:
    """Azure sends x-ratelimit-remaining-* without limits; limits stay unknown."""
    info = ADAPTER.rate_limits(
        {"x-ratelimit-remaining-requests": "99", "x-ratelimit-remaining-tokens": "9000"}
    )
    assert (info.remaining_requests, info.remaining_tokens) == (99, 9000)
    assert (info.limit_requests, info.limit_tokens) == (None, None)


def test_registry_builds_the_adapter_with_its_key_variable() -> None:
    """provider = "azure-openai" makes this adapter and reads AZURE_OPENAI_API_KEY by default."""
    assert isinstance(make_adapter("azure-openai", DEPLOYMENT, "k"), AzureOpenAI)
    assert DEFAULT_KEY_ENV["azure-openai"] == "AZURE_OPENAI_API_KEY"
