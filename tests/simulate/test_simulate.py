"""The simulated provider over real loopback HTTP, plus its rate limiter on a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDictProxy

from batchllm.simulate import Fault, SimConfig, SimServer
from batchllm.simulate.content import count_tokens
from batchllm.simulate.limits import RateLimiter, TokenBucket, go_duration
from conftest import Start

Reply = tuple[int, CIMultiDictProxy[str], bytes]

GO_DURATION = re.compile(r"^(?:\d+h)?(?:\d+m(?!s))?(?:\d+(?:\.\d+)?(?:ms|s))?$")
TICKET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["billing", "bug", "other"]},
        "priority": {"type": "integer", "minimum": 1, "maximum": 5},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "urgent": {"type": "boolean"},
        "summary": {"type": "string", "minLength": 10, "maxLength": 40},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "assignee": {"type": ["string", "null"]},
        "source": {"const": "email"},
        "customer": {"$ref": "#/$defs/customer"},
        "channel": {"anyOf": [{"type": "string", "enum": ["web", "phone"]}, {"type": "null"}]},
        "score": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
    },
    "required": [
        "label",
        "priority",
        "confidence",
        "urgent",
        "summary",
        "tags",
        "assignee",
        "source",
    ],
    "additionalProperties": False,
    "$defs": {
        "customer": {
            "type": "object",
            "properties": {
                "id": {"type": "integer", "exclusiveMinimum": 0},
                "email": {"type": "string", "format": "email"},
            },
            "required": ["id"],
            "additionalProperties": False,
        }
    },
}


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def ask_schema(text: str, schema: dict[str, Any] = TICKET_SCHEMA) -> dict[str, Any]:
    spec = {"name": "ticket", "schema": schema, "strict": False}
    return ask(text, response_format={"type": "json_schema", "json_schema": spec})


async def chat(
    session: aiohttp.ClientSession,
    server: SimServer,
    body: dict[str, Any] | bytes,
    headers: dict[str, str] | None = None,
) -> Reply:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    sent = {"Content-Type": "application/json", **(headers or {})}
    async with session.post(f"{server.url}/chat/completions", data=data, headers=sent) as resp:
        return resp.status, resp.headers, await resp.read()


async def ok_reply(session: aiohttp.ClientSession, server: SimServer, body: dict[str, Any]) -> Any:
    status, _, raw = await chat(session, server, body)
    assert status == 200, raw
    return orjson.loads(raw)


def error_of(raw: bytes) -> dict[str, Any]:
    error = orjson.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


def violations(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> list[str]:
    """A minimal JSON Schema checker for the keywords TICKET_SCHEMA uses."""
    if "$ref" in schema:
        return violations(value, root["$defs"][schema["$ref"].rsplit("/", 1)[1]], root)
    if "anyOf" in schema:
        fits = any(not violations(value, branch, root) for branch in schema["anyOf"])
        return [] if fits else [f"{value!r} matches no anyOf branch"]
    if "const" in schema and value != schema["const"]:
        return [f"{value!r} != const"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{value!r} not in enum"]
    kinds = schema.get("type")
    if kinds is not None and not any(
        is_type(value, k) for k in ([kinds] if isinstance(kinds, str) else kinds)
    ):
        return [f"{value!r} is not {kinds}"]
    return bound_violations(value, schema) + nested_violations(value, schema, root)


def is_type(value: Any, kind: str) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    checks = {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": number,
        "boolean": isinstance(value, bool),
        "null": value is None,
    }
    return checks[kind]


def bound_violations(value: Any, schema: dict[str, Any]) -> list[str]:
    found = []
    if isinstance(value, str) and not schema.get("minLength", 0) <= len(value) <= schema.get(
        "maxLength", 10**9
    ):
        found.append(f"length of {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < schema.get("minimum", -math.inf) or value > schema.get("maximum", math.inf):
            found.append(f"{value} outside minimum/maximum")
        if value <= schema.get("exclusiveMinimum", -math.inf) or value >= schema.get(
            "exclusiveMaximum", math.inf
        ):
            found.append(f"{value} outside exclusive bounds")
    if isinstance(value, list) and not schema.get("minItems", 0) <= len(value) <= schema.get(
        "maxItems", 10**9
    ):
        found.append(f"{len(value)} items")
    return found


def nested_violations(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> list[str]:
    found = []
    if isinstance(value, list):
        for item in value:
            found += violations(item, schema.get("items", {}), root)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        found += [f"missing {name}" for name in schema.get("required", []) if name not in value]
        if schema.get("additionalProperties") is False:
            found += [f"extra {name}" for name in value if name not in props]
        for name, item in value.items():
            found += violations(item, props.get(name, {}), root)
    return found


def malformed_kind(content: str, finish: str) -> str:
    """Which of the five documented ways a TICKET_SCHEMA reply is broken, or "valid"."""
    if finish == "length":
        return "truncated"
    if content.startswith("```json\n") and content.endswith("\n```"):
        return "fence"
    try:
        value = json.loads(content)
    except ValueError:
        return "prose"
    if any(name not in value for name in TICKET_SCHEMA["required"]):
        return "missing"
    if not violations(value, TICKET_SCHEMA, TICKET_SCHEMA):
        return "valid"
    return "enum" if value["label"] not in TICKET_SCHEMA["properties"]["label"]["enum"] else "?"


async def test_reply_has_chat_completion_shape_and_usage(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """A 200 reply carries every chat.completion field, consistent usage and OpenAI headers."""
    server = await start()
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Explain token buckets for rate limiting."},
    ]
    body = {"model": "gpt-4o-mini-2024-07-18", "messages": messages}
    status, headers, raw = await chat(session, server, body)
    reply = orjson.loads(raw)
    assert status == 200
    assert reply["id"].startswith("chatcmpl-sim-")
    assert reply["object"] == "chat.completion"
    assert isinstance(reply["created"], int)
    assert reply["model"] == "gpt-4o-mini-2024-07-18"
    assert reply["system_fingerprint"]
    [choice] = reply["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    usage = reply["usage"]
    assert usage["prompt_tokens"] == sum(count_tokens(m["content"]) + 4 for m in messages) + 3
    assert usage["completion_tokens"] == count_tokens(content) > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0
    assert re.fullmatch(r"req_[0-9a-f]{32}", headers["x-request-id"])
    assert int(headers["openai-processing-ms"]) >= 0
    assert headers["Content-Type"].startswith("application/json")


async def test_same_body_and_seed_give_same_reply(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """Content is a function of (seed, body): same seed agrees across servers, another differs."""
    first, second, other = await start(seed=7), await start(seed=7), await start(seed=8)
    bodies = [ask(f"Describe caching layer number {i} in a web stack.") for i in range(5)]
    contents = {}
    for name, server in (("first", first), ("second", second), ("other", other)):
        replies = [await ok_reply(session, server, body) for body in bodies]
        contents[name] = [r["choices"][0]["message"]["content"] for r in replies]
    assert contents["first"] == contents["second"]
    assert contents["first"] != contents["other"]


async def test_text_length_varies_between_requests(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """Plain replies vary in length, within about the documented 5-120 token range."""
    server = await start()
    lengths = set()
    for i in range(20):
        reply = await ok_reply(session, server, ask(f"Tell me about database indexes, part {i}."))
        lengths.add(reply["usage"]["completion_tokens"])
    assert len(lengths) > 5
    assert min(lengths) >= 3
    assert max(lengths) <= 140


@pytest.mark.parametrize("cap_field", ["max_tokens", "max_completion_tokens"])
async def test_output_cap_truncates_with_length(
    start: Start, session: aiohttp.ClientSession, cap_field: str
) -> None:
    """A reply longer than the output cap is cut at the cap, with finish_reason length."""
    server = await start()
    reply = await ok_reply(
        session, server, ask("Summarize: " + "The quick brown fox jumps. " * 5, **{cap_field: 3})
    )
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] <= 3


async def test_classification_prompt_picks_a_listed_category(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """A prompt offering "one of: a, b, c" is answered with exactly one of those labels."""
    server = await start()
    picked = set()
    for i in range(12):
        text = (
            f"Classify ticket {i} into one of: billing, bug, other.\nTicket: I was charged twice."
        )
        reply = await ok_reply(session, server, ask(text))
        picked.add(reply["choices"][0]["message"]["content"])
    assert picked <= {"billing", "bug", "other"}
    assert len(picked) > 1


async def test_summary_prompt_gets_one_to_three_sentences(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """A "summarize" prompt is answered with one to three sentences drawn from the text."""
    server = await start()
    article = (
        "The council voted to expand bike lanes downtown. Safety data showed fewer crashes on "
        "protected routes. Commuter numbers rose for the third year. Shop owners worried about "
        "parking. Work starts in spring."
    )
    for i in range(6):
        reply = await ok_reply(session, server, ask(f"Summarize this (v{i}):\n{article}"))
        content = reply["choices"][0]["message"]["content"]
        assert 1 <= content.count(".") <= 3
        assert content.split()[0] in article


async def test_schema_replies_validate_against_schema(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """json_schema replies are JSON objects valid against the schema; optional keys come and go."""
    server = await start()
    seen_optional: dict[str, set[bool]] = {"customer": set(), "channel": set(), "score": set()}
    for i in range(30):
        reply = await ok_reply(session, server, ask_schema(f"Ticket {i}: app crashes on login."))
        assert reply["choices"][0]["finish_reason"] == "stop"
        value = json.loads(reply["choices"][0]["message"]["content"])
        assert violations(value, TICKET_SCHEMA, TICKET_SCHEMA) == []
        for name, seen in seen_optional.items():
            seen.add(name in value)
    assert all(seen == {True, False} for seen in seen_optional.values())


async def test_json_object_mode_returns_an_object(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """response_format json_object yields a parseable JSON object."""
    server = await start()
    reply = await ok_reply(
        session, server, ask("Reply in JSON please.", response_format={"type": "json_object"})
    )
    assert isinstance(json.loads(reply["choices"][0]["message"]["content"]), dict)


async def test_malformed_rate_breaks_schema_replies_all_five_ways(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """With malformed_rate=1 every schema reply is broken, and all five documented ways occur."""
    server = await start(malformed_rate=1.0)
    kinds = set()
    for i in range(40):
        reply = await ok_reply(session, server, ask_schema(f"Ticket {i}: refund please."))
        choice = reply["choices"][0]
        kinds.add(malformed_kind(choice["message"]["content"], choice["finish_reason"]))
    assert kinds == {"fence", "prose", "truncated", "enum", "missing"}


async def test_malformed_rate_leaves_text_replies_alone(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """malformed_rate applies to JSON replies only; plain text still ends with stop."""
    server = await start(malformed_rate=1.0)
    for i in range(5):
        reply = await ok_reply(session, server, ask(f"Say something about queues {i}."))
        assert reply["choices"][0]["finish_reason"] == "stop"


async def test_scripted_malformed_breaks_only_the_next_reply(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """A scripted "malformed" fault breaks the next schema reply and is then used up."""
    server = await start()
    server.script([Fault("malformed")])
    first = (await ok_reply(session, server, ask_schema("Ticket: slow app.")))["choices"][0]
    second = (await ok_reply(session, server, ask_schema("Ticket: slow app.")))["choices"][0]
    assert malformed_kind(first["message"]["content"], first["finish_reason"]) != "valid"
    assert malformed_kind(second["message"]["content"], second["finish_reason"]) == "valid"


@pytest.mark.parametrize(
    ("kind", "status", "error_type", "code"),
    [
        ("500", 500, "server_error", None),
        ("503", 503, "server_error", "server_is_overloaded"),
        ("529", 529, "overloaded_error", None),
        ("400", 400, "invalid_request_error", "context_length_exceeded"),
        ("401", 401, "invalid_request_error", "invalid_api_key"),
        ("403", 403, "request_forbidden", "unsupported_country_region_territory"),
        ("insufficient_quota", 429, "insufficient_quota", "insufficient_quota"),
    ],
)
async def test_scripted_error_kinds_send_openai_envelopes(
    start: Start,
    session: aiohttp.ClientSession,
    kind: str,
    status: int,
    error_type: str,
    code: str | None,
) -> None:
    """Each scripted error kind answers once with OpenAI's status, type and code, then clears."""
    server = await start()
    server.script([Fault(kind)])
    got, _, raw = await chat(session, server, ask("hello"))
    error = error_of(raw)
    assert (got, error["type"], error["code"]) == (status, error_type, code)
    assert (await chat(session, server, ask("hello")))[0] == 200
    assert server.stats()["errors"] == 1


async def test_scripted_401_and_quota_messages(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """Scripted 401 and insufficient_quota carry OpenAI's wording."""
    server = await start()
    server.script([Fault("401"), Fault("insufficient_quota")])
    auth = error_of((await chat(session, server, ask("hi")))[2])
    quota = error_of((await chat(session, server, ask("hi")))[2])
    assert auth["message"].startswith("Incorrect API key provided: sk-sim***abcd.")
    assert (
        quota["message"]
        == "You exceeded your current quota, please check your plan and billing details."
    )


async def test_scripted_502_is_an_html_page(start: Start, session: aiohttp.ClientSession) -> None:
    """A scripted 502 answers with a gateway HTML page, not JSON."""
    server = await start()
    server.script([Fault("502")])
    status, headers, raw = await chat(session, server, ask("hi"))
    assert status == 502
    assert headers["Content-Type"].startswith("text/html")
    assert raw.startswith(b"<html>")
    assert b"<title>502 Bad Gateway</title>" in raw


async def test_scripted_429_carries_the_given_retry_after(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """A scripted 429 with retry_after_s sends retry-after(-ms) and a rate-limit envelope."""
    server = await start()
    server.script([Fault("429", retry_after_s=1.5)])
    status, headers, raw = await chat(session, server, ask("hi"))
    error = error_of(raw)
    assert status == 429
    assert float(headers["retry-after-ms"]) == 1500.0
    assert headers["retry-after"] == "2"
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert "Please try again in 1.5s." in error["message"]
    assert server.stats()["rate_limited"] == 1


async def test_scripted_429_without_wait_has_no_retry_headers(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """A scripted 429 without retry_after_s leaves the client only the message to parse."""
    server = await start()
    server.script([Fault("429")])
    status, headers, raw = await chat(session, server, ask("hi"))
    assert status == 429
    assert "retry-after" not in headers
    assert "retry-after-ms" not in headers
    assert "Please try again in" in error_of(raw)["message"]


async def test_scripted_faults_apply_in_fifo_order_with_counts(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """Scripted faults serve the next requests in order, each ``count`` times."""
    server = await start()
    server.script([Fault("500", count=2), Fault("503")])
    statuses = [(await chat(session, server, ask("hi")))[0] for _ in range(4)]
    assert statuses == [500, 500, 503, 200]


async def test_reset_drops_the_connection_without_a_reply(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """A "reset" fault closes the socket: aiohttp sees a disconnect; the server keeps serving."""
    server = await start()
    server.script([Fault("reset")])
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await chat(session, server, ask("hi"))
    assert (await chat(session, server, ask("hi")))[0] == 200
    assert server.stats()["resets"] == 1


async def wait_for_stat(server: SimServer, key: str, value: int) -> None:
    """Bounded wait for the server to reach a handler state the client cannot observe."""
    async with asyncio.timeout(5):
        # The simulator exposes no event for "a handler is parked"; adding public API only for
        # this one test is worse than a short bounded poll here.
        while server.stats()[key] < value:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_hang_does_not_block_close(start: Start, session: aiohttp.ClientSession) -> None:
    """close() returns promptly while a request hangs, and the hung client sees a disconnect."""
    server = await start()
    server.script([Fault("hang")])
    pending = asyncio.create_task(chat(session, server, ask("hi")))
    await wait_for_stat(server, "hangs", 1)
    async with asyncio.timeout(1.5):
        await server.close()
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await pending


async def test_random_faults_follow_the_seed(start: Start, session: aiohttp.ClientSession) -> None:
    """Random errors are drawn per request number from the seed: the same seed repeats them."""
    runs = []
    for _ in range(2):
        server = await start(error_rate=0.5, seed=3)
        runs.append([(await chat(session, server, ask(f"q{i}")))[0] for i in range(24)])
    assert runs[0] == runs[1]
    assert set(runs[0]) <= {200, 500, 502, 503}
    assert 200 in runs[0]
    assert len(set(runs[0])) > 2


async def test_api_key_is_enforced_with_a_masked_echo(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """With api_key set, a wrong or missing key gets 401 invalid_api_key; the right key passes."""
    server = await start(api_key="sk-sim-right-key-0000")
    wrong_status, _, wrong = await chat(
        session, server, ask("hi"), {"Authorization": "Bearer sk-wrong-key-abcd"}
    )
    missing_status, _, missing = await chat(session, server, ask("hi"))
    right = await chat(
        session, server, ask("hi"), {"Authorization": "Bearer sk-sim-right-key-0000"}
    )
    assert (wrong_status, missing_status, right[0]) == (401, 401, 200)
    assert error_of(wrong)["code"] == "invalid_api_key"
    assert "sk-***abcd" in error_of(wrong)["message"]
    assert "sk-wrong-key-abcd" not in error_of(wrong)["message"]
    assert error_of(missing)["code"] == "invalid_api_key"


async def test_duplicates_count_bodies_answered_twice(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """duplicates counts 200s to a body already answered 200; failed attempts do not count."""
    server = await start()
    server.script([Fault("500")])
    for text in ("a", "a", "b", "a"):
        await chat(session, server, ask(text))
    stats = server.stats()
    assert (stats["ok"], stats["errors"], stats["duplicates"]) == (3, 1, 1)


async def test_stats_partition_every_request(start: Start, session: aiohttp.ClientSession) -> None:
    """Each chat request lands in exactly one outcome counter; token sums cover 200s only."""
    server = await start()
    server.script([Fault("429"), Fault("500"), Fault("reset")])
    for i in range(6):
        with contextlib.suppress(aiohttp.ClientConnectionError):
            await chat(session, server, ask(f"hi {i}"))
    stats = server.stats()
    outcomes = ("ok", "rate_limited", "errors", "hangs", "resets")
    assert stats["requests"] == sum(stats[k] for k in outcomes) == 6
    assert (stats["ok"], stats["rate_limited"], stats["errors"], stats["resets"]) == (3, 1, 1, 1)
    assert stats["prompt_tokens"] > 0
    assert stats["completion_tokens"] > 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (orjson.dumps({"messages": [{"role": "user", "content": "x"}]}), "model"),
        (orjson.dumps({"model": "m"}), "messages"),
        (orjson.dumps(ask("x", max_tokens=0)), "max_tokens"),
    ],
)
async def test_bad_request_bodies_get_400_envelopes(
    start: Start, session: aiohttp.ClientSession, body: bytes, param: str | None
) -> None:
    """Unparseable JSON, a missing model/messages or a bad cap answer 400 invalid_request_error."""
    server = await start()
    status, _, raw = await chat(session, server, body)
    error = error_of(raw)
    assert (status, error["type"], error["param"]) == (400, "invalid_request_error", param)


async def test_control_endpoints_script_report_and_reset(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """/_sim/faults queues faults, /_sim/stats reports counters, /_sim/reset clears both."""
    server = await start()
    base = server.url.removesuffix("/v1")
    faults = [{"kind": "503", "count": 1}, {"kind": "429", "retry_after_s": 0.25}]
    async with session.post(f"{base}/_sim/faults", json=faults) as resp:
        assert resp.status == 200
    assert (await chat(session, server, ask("hi")))[0] == 503
    async with session.get(f"{base}/_sim/stats") as resp:
        assert (await resp.json())["errors"] == 1
    async with session.post(f"{base}/_sim/reset") as resp:
        assert resp.status == 200
    assert (await chat(session, server, ask("hi")))[0] == 200
    assert server.stats()["requests"] == 1
    async with session.post(f"{base}/_sim/faults", json=[{"kind": "explode"}]) as resp:
        assert resp.status == 400


async def test_burst_above_the_second_quantum_gets_429s(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """rpm=120 allows 2 requests per second: a burst of 10 gets 429s with retry-after headers."""
    server = await start(rpm=120)
    replies = await asyncio.gather(*(chat(session, server, ask(f"b{i}")) for i in range(10)))
    limited = [(headers, raw) for status, headers, raw in replies if status == 429]
    assert 1 <= len(limited) <= 8
    for headers, raw in limited:
        wait_ms = float(headers["retry-after-ms"])
        assert 0 < wait_ms <= 1000
        assert int(headers["retry-after"]) == math.ceil(wait_ms / 1000)
        error = error_of(raw)
        assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
        assert "on requests per min (RPM): Limit 120" in error["message"]
    assert server.stats()["rate_limited"] == len(limited)


async def test_token_limit_429_without_retry_headers_when_disabled(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """A TPM rejection is a "tokens" 429; retry_after=False leaves only the message's wait."""
    server = await start(tpm=600, retry_after=False)
    assert (await chat(session, server, ask("first", max_tokens=500)))[0] == 200
    status, headers, raw = await chat(session, server, ask("second", max_tokens=500))
    error = error_of(raw)
    assert status == 429
    assert (error["type"], error["code"]) == ("tokens", "rate_limit_exceeded")
    assert "on tokens per min (TPM): Limit 600," in error["message"]
    assert re.search(r"Please try again in \d+(\.\d+)?(ms|s)\.", error["message"])
    assert "retry-after" not in headers
    assert "retry-after-ms" not in headers


async def test_rate_limit_headers_are_present_and_parseable(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """With rpm/tpm set, every reply has x-ratelimit-* limit, remaining and Go-duration reset."""
    server = await start(rpm=600, tpm=100_000)
    _, headers, _ = await chat(session, server, ask("hi", max_tokens=50))
    assert headers["x-ratelimit-limit-requests"] == "600"
    assert headers["x-ratelimit-limit-tokens"] == "100000"
    assert int(headers["x-ratelimit-remaining-requests"]) == 599
    assert 0 < int(headers["x-ratelimit-remaining-tokens"]) < 100_000
    for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
        assert GO_DURATION.match(headers[name]), headers[name]


async def test_no_rate_limit_headers_without_limits(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """Without rpm/tpm the server sends no x-ratelimit-* headers."""
    server = await start()
    _, headers, _ = await chat(session, server, ask("hi"))
    assert not [name for name in headers if name.lower().startswith("x-ratelimit")]


async def test_request_larger_than_tpm_is_too_large(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """A request whose reservation exceeds the whole TPM gets the "Request too large" 429."""
    server = await start(tpm=100)
    status, headers, raw = await chat(session, server, ask("hi", max_tokens=500))
    error = error_of(raw)
    assert status == 429
    assert (error["type"], error["code"]) == ("tokens", "rate_limit_exceeded")
    assert error["message"].startswith("Request too large for gpt-4o-mini in organization org-sim")
    assert "retry-after" not in headers


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_refills_continuously_up_to_capacity() -> None:
    """A bucket refills at its rate from any level, including below zero, and caps at capacity."""
    clock = FakeClock()
    bucket = TokenBucket(10, 2, clock)
    bucket.add(-14)
    assert bucket.level() == -4
    assert bucket.wait_s(3) == pytest.approx(3.5)
    clock.now += 3.5
    assert bucket.level() == pytest.approx(3)
    assert bucket.full_in_s() == pytest.approx(3.5)
    clock.now += 100
    assert bucket.level() == 10


def test_limiter_enforces_the_per_second_quantum() -> None:
    """rpm=60 admits one request per second: the second is rejected with the exact wait."""
    clock = FakeClock()
    limiter = RateLimiter(60, None, clock)
    assert limiter.admit(0) is None
    rejection = limiter.admit(0)
    assert rejection is not None
    assert (rejection.dimension, rejection.limit) == ("requests", 60)
    assert rejection.wait_s == pytest.approx(1.0)
    clock.now += 0.999
    assert limiter.admit(0) is not None
    clock.now += 0.001
    assert limiter.admit(0) is None


def test_limiter_admits_a_large_request_when_buckets_are_full() -> None:
    """A token cost above the per-second quantum passes when full, then the debt must refill."""
    clock = FakeClock()
    limiter = RateLimiter(None, 600, clock)
    assert limiter.admit(100) is None
    rejection = limiter.admit(1)
    assert rejection is not None
    assert rejection.dimension == "tokens"
    assert rejection.wait_s == pytest.approx(9.1)


def test_limiter_rejects_requests_larger_than_tpm_without_debit() -> None:
    """A cost above the whole TPM is "too large"; rejections never debit the buckets."""
    clock = FakeClock()
    limiter = RateLimiter(60, 600, clock)
    rejection = limiter.admit(601)
    assert rejection is not None
    assert rejection.too_large
    assert limiter.headers()["x-ratelimit-remaining-requests"] == "60"
    assert limiter.headers()["x-ratelimit-remaining-tokens"] == "600"


def test_limiter_refund_and_headers() -> None:
    """Refunds return reserved tokens; headers show floor(remaining) and time until full."""
    clock = FakeClock()
    limiter = RateLimiter(60, 6000, clock)
    assert limiter.admit(1000) is None
    limiter.refund(400)
    headers = limiter.headers()
    assert headers["x-ratelimit-remaining-requests"] == "59"
    assert headers["x-ratelimit-reset-requests"] == "1s"
    assert headers["x-ratelimit-remaining-tokens"] == "5400"
    assert headers["x-ratelimit-reset-tokens"] == "6s"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.012, "12ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (60, "1m0s"),
        (252.172, "4m12.172s"),
        (3600, "1h0m0s"),
    ],
)
def test_go_duration_matches_openai_reset_format(seconds: float, text: str) -> None:
    """Reset headers use Go's duration format, as OpenAI's do."""
    assert go_duration(seconds) == text


def test_count_tokens_approximates_bpe() -> None:
    """English runs about 4 characters per token; non-ASCII costs more; empty is zero."""
    english = (
        "Rate limits protect the service from abuse and keep capacity fair for every user. " * 4
    )
    assert count_tokens("") == 0
    assert 3.0 <= len(english) / count_tokens(english) <= 5.0
    assert count_tokens("日本語のテキスト") > len("日本語のテキスト") / 4


def test_config_and_fault_validation() -> None:
    """Impossible rates and unknown fault kinds are rejected at construction."""
    with pytest.raises(ValueError, match="rates"):
        SimConfig(error_rate=1.5)
    with pytest.raises(ValueError, match="exceed"):
        SimConfig(error_rate=0.6, reset_rate=0.6)
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("explode")


def test_serve_forever_prints_url_and_stops_on_sigterm() -> None:
    """serve_forever prints its URL, serves, and exits 0 on SIGTERM."""
    code = (
        "from batchllm.simulate import SimConfig, serve_forever\n"
        "serve_forever(SimConfig(), '127.0.0.1', 0)"
    )
    repo = Path(__file__).resolve().parents[2]
    with subprocess.Popen(
        [sys.executable, "-c", code], cwd=repo, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        match = re.fullmatch(r"simulated provider listening on (http://127\.0\.0\.1:\d+)/v1", line)
        assert match, line
        with urllib.request.urlopen(f"{match.group(1)}/_sim/stats", timeout=5) as resp:
            assert json.load(resp)["requests"] == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


async def test_a_scripted_fault_can_wait_for_requests_to_pass(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """A fault with "after": N lets N requests through untouched, then serves its count."""
    server = await start()
    faults = [{"kind": "500", "count": 2, "after": 2}, {"kind": "503", "after": 1}]
    async with session.post(f"{server.url.removesuffix('/v1')}/_sim/faults", json=faults) as resp:
        assert resp.status == 200
    statuses = [(await chat(session, server, ask(f"q{i}")))[0] for i in range(7)]
    assert statuses == [200, 200, 500, 500, 200, 503, 200]


def test_simulate_options_come_from_the_settings_and_map_back() -> None:
    """Every simulator setting has a `batchllm simulate` option with its default, and ``flags``
    gives the options that rebuild the same settings."""
    from batchllm.simulate.command import flags, simulate

    def parsed(args: list[str]) -> SimConfig:
        given = simulate.make_context("simulate", args).params
        server = ("host", "port", "api_key_env")
        return SimConfig(**{k: v for k, v in given.items() if k not in server})

    settings = SimConfig(rpm=600, error_rate=0.25, native_schema=False, batch_delay_s=0.5)
    assert parsed(flags(settings)) == settings
    assert parsed([]) == SimConfig()


@pytest.mark.parametrize("refund", [True, False])
async def test_unused_max_tokens_come_back_only_when_the_provider_refunds(
    start: Start, session: aiohttp.ClientSession, refund: bool
) -> None:
    """refund_unused=False keeps a reply's whole max_tokens charged until the minute passes."""
    server = await start(tpm=60_000, refund_unused=refund)
    _, headers, raw = await chat(session, server, ask("hi", max_tokens=5000))
    used = orjson.loads(raw)["usage"]["total_tokens"]
    _, headers, _ = await chat(session, server, ask("again", max_tokens=10))
    remaining = int(headers["x-ratelimit-remaining-tokens"])
    charged = 60_000 - remaining
    if refund:
        assert charged < used + 200
    else:
        assert charged >= 5000


async def test_a_server_that_streams_unless_told_not_to(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """streams_by_default answers an event stream unless the body says "stream": false."""
    server = await start(streams_by_default=True)
    status, headers, raw = await chat(session, server, ask("hi"))
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert raw.startswith(b"data: {") and raw.endswith(b"data: [DONE]\n\n")
    _, headers, raw = await chat(session, server, ask("hi", stream=False))
    assert headers["Content-Type"].startswith("application/json")
    assert orjson.loads(raw)["choices"][0]["message"]["content"]


async def test_reply_headers_and_the_empty_fault(
    start: Start, session: aiohttp.ClientSession
) -> None:
    """reply_headers go on every reply; an "empty" fault is a 200 with usage and no content."""
    server = await start(reply_headers=(("x-ratelimit-limit-requests", "nan"),))
    server.script([Fault("empty")])
    status, headers, raw = await chat(session, server, ask("hi"))
    reply = orjson.loads(raw)
    assert status == 200 and headers["x-ratelimit-limit-requests"] == "nan"
    assert reply["choices"][0]["message"]["content"] is None
    assert reply["usage"]["prompt_tokens"] > 0
    assert server.stats()["ok"] == 1
