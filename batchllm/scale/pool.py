"""An endpoint pool: one job's requests spread over several servers of one model.

``EndpointPool`` is an aiohttp client middleware: each request goes to the endpoint with the
fewest requests outstanding that has a free slot (its own ``concurrency``), waiting for a slot
when all are full. An endpoint that fails ``SET_ASIDE_AFTER`` times in a row (no connection, or a
5xx) is set aside and tried again after a cool-down that doubles up to ``MAX_ASIDE_S``; the
request that failed is retried by the dispatcher as usual and lands elsewhere. The adapter builds
every call for the first endpoint; the pool moves it. It does not retry, limit rates or parse.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import structlog
from yarl import URL

from batchllm.job.spec import EndpointSpec

log = structlog.get_logger("batchllm")

SET_ASIDE_AFTER = 3
FIRST_ASIDE_S = 2.0
MAX_ASIDE_S = 60.0

Handler = Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]]


@dataclass(slots=True)
class _Endpoint:
    url: str
    concurrency: int
    outstanding: int = 0
    failures: int = 0
    aside_until: float = 0.0
    aside_s: float = FIRST_ASIDE_S
    sent: int = 0

    def usable(self, now: float) -> bool:
        return self.outstanding < self.concurrency and self.aside_until <= now


class EndpointPool:
    """Least-outstanding-requests choice over endpoints, each with its own concurrency."""

    def __init__(self, endpoints: tuple[EndpointSpec, ...]) -> None:
        self._endpoints = [_Endpoint(e.url.rstrip("/"), e.concurrency) for e in endpoints]
        self._primary = self._endpoints[0].url
        self._freed = asyncio.Condition()

    @property
    def sent(self) -> dict[str, int]:
        """Requests sent to each endpoint so far."""
        return {e.url: e.sent for e in self._endpoints}

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: Handler
    ) -> aiohttp.ClientResponse:
        endpoint = await self._take()
        _move(request, self._primary, endpoint.url)
        try:
            response = await handler(request)
        except (aiohttp.ClientError, TimeoutError):
            self._failed(endpoint)
            raise
        else:
            self._failed(endpoint) if response.status >= 500 else self._answered(endpoint)
            return response
        finally:
            endpoint.outstanding -= 1
            async with self._freed:
                self._freed.notify()

    async def _take(self) -> _Endpoint:
        async with self._freed:
            while (endpoint := self._choice()) is None:
                await asyncio.wait_for(self._freed.wait(), timeout=self._next_back_s())
        endpoint.outstanding += 1
        endpoint.sent += 1
        return endpoint

    def _choice(self) -> _Endpoint | None:
        now = time.monotonic()
        usable = [e for e in self._endpoints if e.usable(now)]
        return min(usable, key=lambda e: e.outstanding / e.concurrency) if usable else None

    def _next_back_s(self) -> float | None:
        """Until the first endpoint set aside comes back (None: none is aside)."""
        now = time.monotonic()
        aside = [e.aside_until - now for e in self._endpoints if e.aside_until > now]
        return max(min(aside), 0.01) if aside else None

    def _failed(self, endpoint: _Endpoint) -> None:
        endpoint.failures += 1
        if endpoint.failures >= SET_ASIDE_AFTER:
            endpoint.aside_until = time.monotonic() + endpoint.aside_s
            log.warning("pool.set_aside", endpoint=endpoint.url, for_s=endpoint.aside_s)
            endpoint.aside_s = min(endpoint.aside_s * 2, MAX_ASIDE_S)
            endpoint.failures = 0

    @staticmethod
    def _answered(endpoint: _Endpoint) -> None:
        endpoint.failures = 0
        endpoint.aside_s = FIRST_ASIDE_S


def _move(request: aiohttp.ClientRequest, primary: str, target: str) -> None:
    if target == primary:
        return
    url = str(request.url)
    if url.startswith(primary):
        moved = URL(target + url[len(primary) :])
        request.url = moved
        request.headers["Host"] = moved.host_port_subcomponent or ""
