"""The simulated provider's Responses, Anthropic, Gemini and Azure formats over loopback HTTP."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDictProxy

from batchllm import errors
from batchllm.providers import make_adapter
from batchllm.providers.anthropic import seconds_until
from batchllm.render import Request
from batchllm.simulate import Fault, SimServer
from batchllm.simulate.content import count_tokens
from conftest import Start

Reply = tuple[int, CIMultiDictProxy[str], bytes]

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["billing", "bug", "other"]},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["label", "score"],
    "additionalProperties": False,
}
SYSTEM = "You triage support tickets for ACME. Answer briefly."
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


async def post(
    session: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None
) -> Reply:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    sent = {"Content-Type": "application/json", **(headers or {})}
    async with session.post(url, data=data, headers=sent) as resp:
        return resp.status, resp.headers, await resp.read()


def messages_body(text: str, cached: bool = True, **extra: Any) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": SYSTEM}
    if cached:
        block["cache_control"] = {"type": "ephemeral"}
    messages = [{"role": "user", "content": text}]
    return {"model": "claude-haiku-4-5", "max_tokens": 200, "system": [block]} | {
        "messages": messages,
        **extra,
    }


def gemini_body(text: str, **config: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "systemInstruction": {"parts": [{"text": SYSTEM}]},
        "contents": [{"role": "user", "parts": [{"text": text}]}],
    }
    if config:
        body["generationConfig"] = config
    return body


def gemini_url(server: SimServer, model: str = "gemini-2.5-flash") -> str:
    return f"{server.root}/v1beta/models/{model}:generateContent"


def azure_url(server: SimServer, version: str | None = "2024-10-21") -> str:
    query = f"?api-version={version}" if version else ""
    return f"{server.root}/openai/deployments/mini/chat/completions{query}"


async def test_responses_reply_has_the_response_object_shape(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """A Responses 200 carries a message item with output_text and the Responses usage block."""
    server = await start(rpm=600)
    body = {"model": "gpt-4o-mini", "instructions": SYSTEM, "input": "Explain rate limits."}
    status, headers, raw = await post(session, f"{server.url}/responses", body | {"store": False})
    reply = orjson.loads(raw)
    assert status == 200
    assert (reply["object"], reply["status"], reply["store"]) == ("response", "completed", False)
    [item] = reply["output"]
    assert (item["type"], item["role"]) == ("message", "assistant")
    [part] = item["content"]
    assert part["type"] == "output_text" and part["text"]
    usage = reply["usage"]
    prompt = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "x"}]
    assert usage["input_tokens"] > sum(count_tokens(m["content"]) for m in prompt)
    assert usage["output_tokens"] == count_tokens(part["text"])
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}
    assert re.fullmatch(r"req_[0-9a-f]{32}", headers["x-request-id"])
    assert headers["x-ratelimit-limit-requests"] == "600"


async def test_responses_enforce_the_output_cap_and_report_it_incomplete(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """max_output_tokens under 16 is a 400; a reply cut at the cap is status incomplete."""
    server = await start()
    url = f"{server.url}/responses"
    too_small = await post(session, url, {"model": "m", "input": "hi", "max_output_tokens": 4})
    assert too_small[0] == 400
    assert orjson.loads(too_small[2])["error"]["param"] == "max_output_tokens"
    prompt = "Write at length about caching layers in web stacks."
    reply = orjson.loads(
        (await post(session, url, {"model": "m", "input": prompt, "max_output_tokens": 16}))[2]
    )
    assert reply["status"] == "incomplete"
    assert reply["incomplete_details"] == {"reason": "max_output_tokens"}
    assert reply["usage"]["output_tokens"] <= 16


async def test_responses_structured_output_needs_a_name_and_follows_the_schema(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """text.format json_schema is flat: without a name it is a 400; with one the reply fits."""
    server = await start()
    fmt = {"type": "json_schema", "schema": SCHEMA, "strict": True}
    body = {"model": "m", "input": "Ticket: refund please", "text": {"format": fmt}}
    unnamed = await post(session, f"{server.url}/responses", body)
    assert orjson.loads(unnamed[2])["error"]["param"] == "text.format.name"
    named = body | {"text": {"format": fmt | {"name": "result"}}}
    reply = orjson.loads((await post(session, f"{server.url}/responses", named))[2])
    value = orjson.loads(reply["output"][0]["content"][0]["text"])
    assert value["label"] in {"billing", "bug", "other"} and 1 <= value["score"] <= 5


async def test_anthropic_reply_has_the_message_shape_and_usage(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """A Messages 200 has text content, end_turn, a request-id and Anthropic's usage block."""
    server = await start()
    url = f"{server.root}/v1/messages"
    status, headers, raw = await post(
        session, url, messages_body("hi", cached=False), ANTHROPIC_HEADERS
    )
    reply = orjson.loads(raw)
    assert status == 200
    assert (reply["type"], reply["role"], reply["stop_reason"]) == (
        "message",
        "assistant",
        "end_turn",
    )
    [block] = reply["content"]
    assert block["type"] == "text" and block["text"]
    usage = reply["usage"]
    assert usage["cache_creation_input_tokens"] == usage["cache_read_input_tokens"] == 0
    assert usage["input_tokens"] > count_tokens(SYSTEM)
    assert usage["output_tokens"] == count_tokens(block["text"])
    assert headers["request-id"].startswith("req_")
    assert "x-ratelimit-limit-requests" not in headers


async def test_anthropic_caches_a_marked_system_block_once_then_reads_it(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """First sight of a cache_control system text writes it; later requests read it."""
    server = await start()
    url = f"{server.root}/v1/messages"
    usages = []
    for text in ("ticket one", "ticket two", "ticket six"):
        reply = (await post(session, url, messages_body(text), ANTHROPIC_HEADERS))[2]
        usages.append(orjson.loads(reply)["usage"])
    system = count_tokens(SYSTEM)
    assert [u["cache_creation_input_tokens"] for u in usages] == [system, 0, 0]
    assert [u["cache_read_input_tokens"] for u in usages] == [0, system, system]
    assert usages[0]["cache_creation"]["ephemeral_5m_input_tokens"] == system
    assert len({u["input_tokens"] for u in usages}) == 1
    unmarked = (await post(session, url, messages_body("x", cached=False), ANTHROPIC_HEADERS))[2]
    assert orjson.loads(unmarked)["usage"]["cache_read_input_tokens"] == 0
    stats = server.stats()
    total = sum(
        u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"]
        for u in usages
    )
    assert stats["prompt_tokens"] - orjson.loads(unmarked)["usage"]["input_tokens"] == total


async def test_anthropic_checks_key_version_and_max_tokens(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """x-api-key is enforced; a missing anthropic-version or max_tokens is a 400."""
    server = await start(api_key="sk-ant-right")
    url = f"{server.root}/v1/messages"
    wrong = await post(session, url, messages_body("hi"), {**ANTHROPIC_HEADERS, "x-api-key": "no"})
    error = orjson.loads(wrong[2])
    assert (wrong[0], error["type"], error["error"]["type"]) == (
        401,
        "error",
        "authentication_error",
    )
    assert error["request_id"] == wrong[1]["request-id"]
    right = {**ANTHROPIC_HEADERS, "x-api-key": "sk-ant-right"}
    unversioned = await post(session, url, messages_body("hi"), {"x-api-key": "sk-ant-right"})
    assert b"anthropic-version" in unversioned[2] and unversioned[0] == 400
    uncapped = {k: v for k, v in messages_body("hi").items() if k != "max_tokens"}
    missing = await post(session, url, uncapped, right)
    assert (missing[0], orjson.loads(missing[2])["error"]["message"]) == (
        400,
        "max_tokens: Field required",
    )
    assert (await post(session, url, messages_body("hi"), right))[0] == 200


async def test_anthropic_rate_limits_use_its_headers_and_retry_after(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """anthropic-ratelimit-* headers with RFC 3339 resets; a 429 has whole-second retry-after."""
    server = await start(rpm=120, tpm=100_000)
    url = f"{server.root}/v1/messages"
    replies = await asyncio.gather(
        *(post(session, url, messages_body(f"b{i}"), ANTHROPIC_HEADERS) for i in range(6))
    )
    ok = [headers for status, headers, _ in replies if status == 200]
    limited = [(headers, raw) for status, headers, raw in replies if status == 429]
    assert ok and limited
    first = ok[0]
    assert first["anthropic-ratelimit-requests-limit"] == "120"
    assert first["anthropic-ratelimit-tokens-limit"] == "100000"
    reset = seconds_until(first["anthropic-ratelimit-tokens-reset"])
    assert reset is not None and 0 <= reset <= 61
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["anthropic-ratelimit-requests-reset"]
    )
    for headers, raw in limited:
        assert headers["retry-after"] == "1"
        assert orjson.loads(raw)["error"]["type"] == "rate_limit_error"


async def test_anthropic_structured_output_follows_output_config_format(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """output_config.format json_schema yields a text block that is the JSON value."""
    server = await start()
    config = {"format": {"type": "json_schema", "schema": SCHEMA}}
    body = messages_body("Ticket: the app crashes", output_config=config)
    reply = orjson.loads(
        (await post(session, f"{server.root}/v1/messages", body, ANTHROPIC_HEADERS))[2]
    )
    value = orjson.loads(reply["content"][0]["text"])
    assert value["label"] in {"billing", "bug", "other"} and 1 <= value["score"] <= 5


async def test_gemini_reply_has_candidates_and_usage_metadata(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """A generateContent 200 has one candidate and usageMetadata with thoughtsTokenCount 0."""
    server = await start(rpm=600)
    status, headers, raw = await post(session, gemini_url(server), gemini_body("hello there"))
    reply = orjson.loads(raw)
    assert status == 200
    [candidate] = reply["candidates"]
    assert (candidate["finishReason"], candidate["content"]["role"]) == ("STOP", "model")
    text = candidate["content"]["parts"][0]["text"]
    usage = reply["usageMetadata"]
    assert usage["candidatesTokenCount"] == count_tokens(text)
    assert usage["thoughtsTokenCount"] == 0
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    assert reply["modelVersion"] == "gemini-2.5-flash" and reply["responseId"]
    assert not [name for name in headers if "ratelimit" in name.lower()]


async def test_gemini_cap_and_schema_use_generation_config(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """maxOutputTokens cuts with MAX_TOKENS; responseJsonSchema shapes the JSON reply."""
    server = await start()
    cut = orjson.loads(
        (
            await post(
                session,
                gemini_url(server),
                gemini_body("Write a lot about caches.", maxOutputTokens=3),
            )
        )[2]
    )
    assert cut["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert cut["usageMetadata"]["candidatesTokenCount"] <= 3
    config = {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA}
    shaped = orjson.loads(
        (await post(session, gemini_url(server), gemini_body("Ticket: refund", **config)))[2]
    )
    value = orjson.loads(shaped["candidates"][0]["content"]["parts"][0]["text"])
    assert value["label"] in {"billing", "bug", "other"}


async def test_gemini_takes_the_key_from_header_or_query(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """x-goog-api-key or ?key= pass; a wrong key is a 400 API_KEY_INVALID, none a 403."""
    server = await start(api_key="AIza-right")
    url = gemini_url(server)
    assert (await post(session, url, gemini_body("hi"), {"x-goog-api-key": "AIza-right"}))[0] == 200
    assert (await post(session, f"{url}?key=AIza-right", gemini_body("hi")))[0] == 200
    wrong = await post(session, url, gemini_body("hi"), {"x-goog-api-key": "AIza-wrong"})
    error = orjson.loads(wrong[2])["error"]
    assert (wrong[0], error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["details"][0]["reason"] == "API_KEY_INVALID"
    assert (await post(session, url, gemini_body("hi")))[0] == 403


async def test_gemini_429_is_resource_exhausted_with_retry_info(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """A rate-limited request gets RESOURCE_EXHAUSTED, a QuotaFailure and a RetryInfo delay."""
    server = await start(rpm=60)
    url = gemini_url(server)
    assert (await post(session, url, gemini_body("a")))[0] == 200
    status, _, raw = await post(session, url, gemini_body("b"))
    error = orjson.loads(raw)["error"]
    assert (status, error["code"], error["status"]) == (429, 429, "RESOURCE_EXHAUSTED")
    kinds = {d["@type"].rsplit(".", 1)[1]: d for d in error["details"]}
    assert kinds["QuotaFailure"]["violations"][0]["quotaId"].endswith("PerMinutePerProjectPerModel")
    assert re.fullmatch(r"\d+(\.\d+)?s", kinds["RetryInfo"]["retryDelay"])
    quiet = await start(rpm=60, retry_after=False)
    await post(session, gemini_url(quiet), gemini_body("a"))
    details = orjson.loads((await post(session, gemini_url(quiet), gemini_body("b")))[2])
    assert "RetryInfo" not in str(details)


async def test_azure_needs_api_version_and_api_key(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """No api-version is a 400; the key is the api-key header; the code is a string status."""
    server = await start(api_key="azure-right")
    body = {"messages": [{"role": "user", "content": "hi"}]}
    unversioned = await post(session, azure_url(server, None), body, {"api-key": "azure-right"})
    assert unversioned[0] == 400
    denied = await post(session, azure_url(server), body, {"api-key": "azure-wrong"})
    assert denied[0] == 401
    assert orjson.loads(denied[2])["error"]["code"] == "401"
    assert "type" not in orjson.loads(denied[2])["error"]
    status, headers, raw = await post(session, azure_url(server), body, {"api-key": "azure-right"})
    reply = orjson.loads(raw)
    assert status == 200 and reply["model"] == "mini"
    assert reply["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"] is False
    assert "content_filter_results" in reply["choices"][0]
    assert headers["apim-request-id"]


async def test_azure_429_names_the_wait_and_sends_only_remaining_headers(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """Azure's 429 says "Please retry after N seconds"; only x-ratelimit-remaining-* are sent."""
    server = await start(rpm=60)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    _, headers, _ = await post(session, azure_url(server), body)
    assert headers["x-ratelimit-remaining-requests"] == "59"
    assert "x-ratelimit-limit-requests" not in headers
    status, headers, raw = await post(session, azure_url(server), body)
    error = orjson.loads(raw)["error"]
    assert (status, error["code"]) == (429, "429")
    assert re.search(r"Please retry after 1 second\.", error["message"])
    assert headers["retry-after"] == "1"


PROVIDERS = {
    "openai-responses": (lambda s: s.url, "gpt-4o-mini"),
    "anthropic": (lambda s: s.root, "claude-haiku-4-5"),
    "gemini": (lambda s: f"{s.root}/v1beta", "gemini-2.5-flash"),
    "azure-openai": (lambda s: f"{s.root}/openai/deployments/mini", "gpt-4o-mini"),
}
FAULT_TYPES = {
    "429": errors.RateLimited,
    "500": errors.ServerError,
    "502": errors.ServerError,
    "503": errors.ServerError,
    "529": errors.ServerError,
    "400": errors.RequestRejected,
    "401": errors.AuthFailed,
    "403": errors.AuthFailed,
    "insufficient_quota": errors.QuotaExhausted,
}


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_each_format_fault_reads_as_the_same_error_through_its_adapter(
    start: Start, session: aiohttp.ClientSession, provider: str
) -> None:
    """Every scripted fault, in each format's own envelope, parses to the same error type."""
    server = await start(api_key="sim-key-000001")
    base_url, model = PROVIDERS[provider]
    adapter = make_adapter(provider, base_url(server), "sim-key-000001")
    request = Request("r", "k", model, (("system", SYSTEM), ("user", "hi")), {}, 9, 50)
    call = adapter.build(request)
    server.script([Fault(kind) for kind in FAULT_TYPES])
    got: dict[str, type[errors.ProviderError]] = {}
    for kind in FAULT_TYPES:
        async with session.post(call.url, data=call.body, headers=call.headers) as resp:
            status, headers, body = resp.status, resp.headers, await resp.read()
        with pytest.raises(errors.ProviderError) as caught:
            adapter.parse(status, headers, body)
        got[kind] = type(caught.value)
    assert got == FAULT_TYPES
    async with session.post(call.url, data=call.body, headers=call.headers) as resp:
        done = adapter.parse(resp.status, resp.headers, await resp.read())
    assert done.text and done.usage.input_tokens > 0 and not done.usage.estimated
