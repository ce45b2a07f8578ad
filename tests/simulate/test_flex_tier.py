"""The simulated provider's service tiers over loopback: the tier echoed, flex refused in
OpenAI's 429 "resource unavailable" shape, and requests without a tier answered as before."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from conftest import Start


def _ask(**extra: Any) -> bytes:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **extra}
    return orjson.dumps(body)


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, Any]:
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
        return r.status, orjson.loads(await r.read())


async def test_the_tier_served_is_echoed_as_openai_reports_it(start: Start) -> None:
    """flex is served as flex, auto and default as default, priority as priority; a request
    with no tier is answered as before (Chat says default, as OpenAI does)."""
    server = await start()
    url = f"{server.url}/chat/completions"
    async with aiohttp.ClientSession() as session:
        for asked, served in (("flex", "flex"), ("auto", "default"), ("default", "default"),
                              ("priority", "priority")):  # fmt: skip
            status, reply = await _post(session, url, _ask(service_tier=asked))
            assert (status, reply["service_tier"]) == (200, served)
        status, reply = await _post(session, url, _ask())
        assert (status, reply["service_tier"]) == (200, "default")
        responses = {"model": "gpt-4o-mini", "input": "hi", "service_tier": "flex"}
        status, reply = await _post(session, f"{server.url}/responses", orjson.dumps(responses))
        assert (status, reply["service_tier"]) == (200, "flex")
    assert server.stats()["flex_ok"] == 2


async def test_refused_flex_requests_get_a_resource_unavailable_429(start: Start) -> None:
    """Every flex request refused: 429 in OpenAI's envelope with code resource_unavailable and
    no rate-limit wording; standard requests still answered; refusals are not rate limits."""
    server = await start(flex_refuse_rate=1.0)
    url = f"{server.url}/chat/completions"
    async with aiohttp.ClientSession() as session:
        status, reply = await _post(session, url, _ask(service_tier="flex"))
        assert status == 429
        error = reply["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "resource_unavailable"
        assert error["message"].startswith("Resource unavailable")
        assert "rate limit" not in error["message"].lower()
        status, _ = await _post(session, url, _ask(service_tier="default"))
        assert status == 200
    stats = server.stats()
    assert (stats["flex_refused"], stats["rate_limited"], stats["requests"]) == (1, 0, 2)


async def test_a_reset_simulator_refuses_the_same_flex_requests_again(start: Start) -> None:
    """With half of flex refused, the run of refusals after /_sim/reset is the one before it
    (the draw follows the flex requests counted since the reset)."""
    server = await start(flex_refuse_rate=0.5, seed=5)
    url = f"{server.url}/chat/completions"
    async with aiohttp.ClientSession() as session:
        runs = []
        for _ in range(2):
            statuses = [(await _post(session, url, _ask(service_tier="flex")))[0]
                        for _ in range(12)]  # fmt: skip
            runs.append(statuses)
            async with session.post(f"{server.root}/_sim/reset") as reply:
                assert reply.status == 200
    assert runs[0] == runs[1] and {200, 429} <= set(runs[0])
