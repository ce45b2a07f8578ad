"""OpenAI's service tiers as the simulated provider serves them (Chat and Responses only).

Owns the gate in front of those two handlers: a request that asks for a ``service_tier`` has
the tier it was served at echoed in its reply (``service_tier``: ``flex`` for flex, ``priority``
for priority or fast, ``default`` otherwise, as OpenAI reports it); a flex request is refused
with 429 "resource unavailable" (OpenAI's error envelope, code ``resource_unavailable``, no
rate-limit wording) for ``flex_refuse_rate`` of them, drawn per (seed, flex request number), and
a flex reply comes ``flex_latency_ms`` later than a standard one. A request without a tier is
answered exactly as before. Everything else about a request (auth, limits, faults, content) is
``batchllm.simulate.flow``'s.

Statistics: a refusal counts in ``requests`` and ``flex_refused`` (not in ``rate_limited``: it
says nothing of the account's limits); a 200 served at flex counts in ``flex_ok`` as well as
``ok``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from batchllm.simulate.config import unit
from batchllm.simulate.responses import ResponsesFormat
from batchllm.simulate.wire import ChatFormat, envelope

if TYPE_CHECKING:
    from batchllm.simulate.flow import Provider

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REFUSAL = (
    "Resource unavailable: there is not enough flex processing capacity for this request right "
    "now. Please retry later, or send it with service_tier 'default'."
)
#: the tier a reply says it was served at, for each tier a request may ask for
SERVED = {"flex": "flex", "priority": "priority", "fast": "priority"}
_SALT = 11


def flex_gate(provider: Provider, fmt: object, handler: Handler) -> Handler:
    """``handler`` behind the service-tier gate (Chat and Responses; others as they are)."""
    if type(fmt) not in (ChatFormat, ResponsesFormat):
        return handler

    async def handle(request: web.Request) -> web.StreamResponse:
        tier = _asked(await request.read())
        if tier is None:
            return await handler(request)
        config, counts = provider.config, provider.counts
        if tier == "flex":  # counted with the others, so that /_sim/reset starts it again
            counts["flex_requests"] = asked = counts.get("flex_requests", 0) + 1
            if unit(config.seed, asked, _SALT) < config.flex_refuse_rate:
                counts["requests"] += 1
                counts["flex_refused"] = counts.get("flex_refused", 0) + 1
                return _refusal()
            if config.flex_latency_ms > 0:
                await asyncio.sleep(config.flex_latency_ms / 1000)
        response = await handler(request)
        served = SERVED.get(tier, "default")
        if served == "flex" and response.status == 200:
            counts["flex_ok"] = counts.get("flex_ok", 0) + 1
        return _echo(response, served)

    return handle


def _asked(body: bytes) -> str | None:
    """The ``service_tier`` a request body asks for, if any."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    tier = data.get("service_tier") if isinstance(data, dict) else None
    return tier if isinstance(tier, str) else None


def _refusal() -> web.Response:
    body = envelope(REFUSAL, "resource_unavailable", "resource_unavailable")
    return web.Response(status=429, body=body, content_type="application/json")


def _echo(response: web.StreamResponse, served: str) -> web.StreamResponse:
    """The reply with the tier it was served at, when it is a JSON reply object."""
    if not isinstance(response, web.Response) or response.status != 200:
        return response
    if response.content_type != "application/json" or not isinstance(response.body, bytes):
        return response
    data = orjson.loads(response.body)
    if isinstance(data, dict):
        data["service_tier"] = served
        response.body = orjson.dumps(data)
    return response
