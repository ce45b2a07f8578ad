"""Rate-limit and wait headers as real servers and proxies send them, read by every adapter."""

from __future__ import annotations

import time

import pytest
from multidict import CIMultiDict

from batchllm.errors import RateLimited
from batchllm.providers import ratelimits
from batchllm.providers.anthropic import AnthropicMessages
from batchllm.providers.azure import AzureOpenAI
from batchllm.providers.base import RateLimitInfo
from batchllm.providers.openai import OpenAIChat
from batchllm.providers.openai_responses import OpenAIResponses
from batchllm.providers.wire import parse_duration, retry_after

#: a LiteLLM proxy key limited to 120 RPM / 50,000 TPM in front of OpenAI (its own pass-through
#: of the backend's headers beside the key's)
LITELLM = {
    "x-litellm-call-id": "7b0f6c0e-5c1a-4f0e-9a36-0c8a1c7f2d11",
    "x-litellm-model-api-base": "https://api.openai.com",
    "x-ratelimit-api_key-limit-requests": "120",
    "x-ratelimit-api_key-remaining-requests": "117",
    "x-ratelimit-api_key-limit-tokens": "50000",
    "x-ratelimit-api_key-remaining-tokens": "49213",
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-limit-tokens": "2000000",
    "x-ratelimit-remaining-tokens": "1999847",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-reset-tokens": "4ms",
}
#: LiteLLM with model-, team- and user-scoped limits only
LITELLM_SCOPES = {
    "x-ratelimit-model-limit-requests": "300",
    "x-ratelimit-model-remaining-requests": "298",
    "x-ratelimit-team-limit-tokens": "90000",
    "x-ratelimit-team-remaining-tokens": "88000",
    "x-ratelimit-user-limit-requests": "200",
    "x-ratelimit-user-remaining-requests": "150",
}
OPENAI = {
    "x-request-id": "req_4a1c9d5e0b7f",
    "openai-processing-ms": "412",
    "x-ratelimit-limit-requests": "5000",
    "x-ratelimit-limit-tokens": "160000",
    "x-ratelimit-limit-tokens_usage_based": "160000",
    "x-ratelimit-remaining-requests": "4999",
    "x-ratelimit-remaining-tokens": "159976",
    "x-ratelimit-reset-requests": "12ms",
    "x-ratelimit-reset-tokens": "6m0s",
}
ANTHROPIC = {
    "request-id": "req_011CSHoEeqs5C35K2UUqR7Fy",
    "anthropic-ratelimit-requests-limit": "1000",
    "anthropic-ratelimit-requests-remaining": "999",
    "anthropic-ratelimit-requests-reset": "2025-08-21T12:40:59Z",
    "anthropic-ratelimit-input-tokens-limit": "80000",
    "anthropic-ratelimit-input-tokens-remaining": "80000",
    "anthropic-ratelimit-output-tokens-limit": "16000",
    "anthropic-ratelimit-output-tokens-remaining": "16000",
    "anthropic-ratelimit-tokens-limit": "96000",
    "anthropic-ratelimit-tokens-remaining": "96000",
}
#: Azure OpenAI: only remaining counts; the Responses API has sent -1 and 0
AZURE = {
    "apim-request-id": "c5b5e8a3-2f61-4a52-8d0f-8f2a6a0f1e44",
    "x-ms-region": "Sweden Central",
    "x-ratelimit-remaining-requests": "79",
    "x-ratelimit-remaining-tokens": "79360",
    "x-ms-ratelimit-remaining-requests": "70",
}
AZURE_RESPONSES = {"x-ratelimit-limit-requests": "0", "x-ratelimit-remaining-requests": "-1"}
#: OpenRouter / a vLLM gateway: requests over an unnamed window, reset as epoch milliseconds
OPENROUTER = {
    "x-ratelimit-limit": "200",
    "x-ratelimit-remaining": "3",
    "x-ratelimit-reset": "1764849600000",
}
#: IETF RateLimit fields, the older separate ones and the newer structured pair
IETF = {"ratelimit-limit": "100", "ratelimit-remaining": "40", "ratelimit-reset": "30"}
IETF_POLICY = {**IETF, "ratelimit-policy": "100;w=60"}
IETF_STRUCTURED = {
    "ratelimit-policy": '"default";q=600;w=300',
    "ratelimit": '"default";r=25;t=12',
}


def test_litellm_key_limits_are_learned_over_the_backends() -> None:
    """A LiteLLM key's 120 RPM and 50,000 TPM win over the backend's larger limits."""
    info = OpenAIChat(None, None).rate_limits(CIMultiDict(LITELLM))
    assert (info.limit_requests, info.remaining_requests) == (120, 117)
    assert (info.limit_tokens, info.remaining_tokens) == (50_000, 49_213)


def test_litellm_model_team_and_user_scopes_are_read() -> None:
    """Model, team and user scoped limits count too; the lowest one wins."""
    info = ratelimits.read(LITELLM_SCOPES)
    assert (info.limit_requests, info.remaining_requests) == (200, 150)
    assert (info.limit_tokens, info.remaining_tokens) == (90_000, 88_000)


def test_openai_headers_with_go_durations() -> None:
    """OpenAI's own family, resets as Go durations."""
    info = OpenAIResponses(None, None).rate_limits(OPENAI)
    assert info == RateLimitInfo(5000, 4999, 0.012, 160_000, 159_976, 360.0)


def test_anthropic_prefers_the_most_restrictive_token_family() -> None:
    """anthropic-ratelimit-tokens-* is read before input-tokens-*; resets in the past read 0."""
    info = AnthropicMessages(None, None).rate_limits(ANTHROPIC)
    assert info == RateLimitInfo(1000, 999, 0.0, 96_000, 96_000, None)


def test_azure_remaining_counts_and_bogus_zero_limits() -> None:
    """Azure gives remaining counts only (the lowest wins); a 0 limit says nothing."""
    adapter = AzureOpenAI("https://r.openai.azure.com/openai/deployments/d", None)
    info = adapter.rate_limits(AZURE)
    assert (info.limit_requests, info.remaining_requests, info.remaining_tokens) == (
        None,
        70,
        79_360,
    )
    assert adapter.rate_limits(AZURE_RESPONSES) == RateLimitInfo()


def test_gateway_reset_as_epoch_milliseconds_or_seconds() -> None:
    """x-ratelimit-reset as epoch ms or s reads as seconds from now; the unnamed window's limit
    is not taken for a per-minute one."""
    soon = str(int((time.time() + 8) * 1000))
    info = ratelimits.read({**OPENROUTER, "x-ratelimit-reset": soon})
    assert info.limit_requests is None and info.remaining_requests == 3
    assert info.reset_requests_s == pytest.approx(8, abs=1.5)
    in_seconds = ratelimits.read({"x-ratelimit-reset": str(int(time.time() + 20))})
    assert in_seconds.reset_requests_s == pytest.approx(20, abs=1.5)


def test_ietf_fields_and_policies() -> None:
    """IETF RateLimit fields: a limit is learned per minute only with a policy's window."""
    assert ratelimits.read(IETF).limit_requests is None
    assert ratelimits.read(IETF).remaining_requests == 40
    assert ratelimits.read(IETF_POLICY) == RateLimitInfo(100, 40, 30.0)
    assert ratelimits.read(IETF_STRUCTURED) == RateLimitInfo(120, 25, 12.0)
    bytes_quota = {"ratelimit-policy": '"b";q=1000;w=1;qu="content-bytes"', "ratelimit": "r=5"}
    assert ratelimits.read(bytes_quota) == RateLimitInfo()


HOSTILE = ["nan", "NaN", "inf", "-inf", "1e999", "-5", "garbage", "", "  ", "1e400", "0x10"]


@pytest.mark.parametrize("value", HOSTILE)
def test_no_header_value_raises_or_is_read_as_a_number(value: str) -> None:
    """Any value in any rate-limit header reads as nothing, never raises."""
    names = [*LITELLM, *OPENAI, *ANTHROPIC, *AZURE, *OPENROUTER, *IETF_POLICY, *IETF_STRUCTURED]
    headers = dict.fromkeys(names, value)
    for adapter in (OpenAIChat(None, None), AnthropicMessages(None, None)):
        assert adapter.rate_limits(headers) == RateLimitInfo()


@pytest.mark.parametrize("value", [*HOSTILE, "1e12", "Wed, 21 Oct 99999 07:28:00 GMT"])
def test_unreadable_retry_after_is_no_wait(value: str) -> None:
    """Retry-After that is not a finite, non-negative wait of at most a year is ignored."""
    assert retry_after({"retry-after": value}) is None
    assert retry_after({"retry-after-ms": value}) is None
    assert parse_duration(value) is None or value in ("",)


def test_readable_waits() -> None:
    """Seconds, milliseconds (also Azure's x-ms- spelling) and HTTP dates are read."""
    assert retry_after({"retry-after": "86400"}) == 86400.0
    assert retry_after({"x-ms-retry-after-ms": "1500"}) == 1.5
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0


def test_a_wait_written_in_a_message_is_read_sanely() -> None:
    """Waits in 429 messages (OpenAI "try again in", Azure "retry after") obey the same bounds."""
    huge = "9" * 400
    openai = OpenAIChat(None, None)
    body = b'{"error": {"message": "Please try again in %s s.", "type": "requests"}}'
    with pytest.raises(RateLimited) as caught:
        openai.parse(429, {}, body % huge.encode())
    assert caught.value.retry_after_s is None
    azure = AzureOpenAI("https://r.openai.azure.com/openai/deployments/d", None)
    azure_body = b'{"error": {"code": "429", "message": "Please retry after %s seconds."}}'
    with pytest.raises(RateLimited) as said:
        azure.parse(429, {}, azure_body % huge.encode())
    assert said.value.retry_after_s is None
    with pytest.raises(RateLimited) as fine:
        azure.parse(429, {}, azure_body % b"37")
    assert fine.value.retry_after_s == 37.0
