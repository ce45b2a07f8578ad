"""An endpoint pool: one job's requests spread over several servers of one model.

``EndpointPool`` is an aiohttp client middleware: each request goes to the endpoint with the
fewest requests outstanding that has a free slot (its own ``concurrency``), waiting in turn for
a slot when all are full. An endpoint that fails ``SET_ASIDE_AFTER`` times in a row (no
connection, or a 5xx) is set aside and tried again after a cool-down that doubles up to
``MAX_ASIDE_S``; the request that failed is retried by the dispatcher as usual and lands
elsewhere. The adapter builds every call for the first endpoint; the pool moves it. It does
not retry, limit rates or parse.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
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
        #: requests waiting for a slot, first come first served
        self._waiting: deque[asyncio.Future[_Endpoint]] = deque()
        self._wake: asyncio.TimerHandle | None = None

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
            self._hand_out()

    async def _take(self) -> _Endpoint:
        """A slot: at once if nobody waits and one is free, else in turn (a newcomer never
        overtakes a waiting request, or a waiter could wait out the run and count as hung)."""
        if not self._waiting and (endpoint := self._choice()) is not None:
            return _claim(endpoint)
        turn: asyncio.Future[_Endpoint] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        self._hand_out()
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                turn.result().outstanding -= 1  # handed a slot as it was cancelled
                self._hand_out()
            raise

    def _hand_out(self) -> None:
        """Give free slots to waiters in turn; come back when a set-aside endpoint does."""
        while self._waiting and (endpoint := self._choice()) is not None:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(_claim(endpoint))
        back_s = self._next_back_s()
        if self._waiting and back_s is not None and self._wake is None:
            self._wake = asyncio.get_running_loop().call_later(back_s, self._woken)

    def _woken(self) -> None:
        self._wake = None
        self._hand_out()

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


def _claim(endpoint: _Endpoint) -> _Endpoint:
    endpoint.outstanding += 1
    endpoint.sent += 1
    return endpoint


def _move(request: aiohttp.ClientRequest, primary: str, target: str) -> None:
    if target == primary:
        return
    url = str(request.url)
    if url.startswith(primary):
        moved = URL(target + url[len(primary) :])
        request.url = moved
        request.headers["Host"] = moved.host_port_subcomponent or ""
