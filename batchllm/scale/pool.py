"""An endpoint pool: one job's requests spread over several servers of one model.

``EndpointPool`` is an aiohttp client middleware: each request goes to the endpoint with the
fewest requests outstanding that has a free slot (its own ``concurrency``) and, for an endpoint
with its own ``rpm``/``tpm``, room in its buckets for this request, waiting in turn when none
has. An endpoint that fails ``SET_ASIDE_AFTER`` times in a row (no connection, or a 5xx) is set
aside and tried again after a cool-down that doubles up to ``MAX_ASIDE_S``; the request that
failed is retried by the dispatcher as usual and lands elsewhere. The adapter builds every call
for the first endpoint; the pool moves it.

An endpoint's own limits need the request's token reservation and its real usage, which the
dispatcher gives the run's limiter: ``PoolLimiter`` wraps that limiter, hands each request's
reservation to the pool through a context variable (the middleware runs in the request's task)
and gives back what the reply did not use to the endpoint that sent it. The headers and 429s of
an endpoint with its own limits concern that endpoint: it is paused, and the run's limiter does
not follow them. It does not retry or parse.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass

import aiohttp
import structlog
from yarl import URL

from batchllm.bucket import Bucket
from batchllm.job.spec import EndpointSpec
from batchllm.limits import DEFAULT_429_PAUSE_S, Grant, Limiter
from batchllm.providers.base import RateLimitInfo

log = structlog.get_logger("batchllm")

SET_ASIDE_AFTER = 3
FIRST_ASIDE_S = 2.0
MAX_ASIDE_S = 60.0
#: seconds of an endpoint's own rate its buckets hold (as the run's limiter: no minute in a burst)
BURST_S = 0.25

Handler = Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]]


@dataclass(slots=True)
class _Ticket:
    """One attempt's token reservation, and the endpoint that was charged for it."""

    tokens: int
    endpoint: _Endpoint | None = None


#: the reservation of the attempt the current task is making (set by ``PoolLimiter.reserve``)
_TICKET: ContextVar[_Ticket | None] = ContextVar("batchllm_pool_ticket", default=None)


def _bucket(per_minute: int | None) -> Bucket | None:
    if per_minute is None:
        return None
    rate = per_minute / 60.0
    return Bucket(max(rate * BURST_S, 1.0), rate, time.monotonic)


@dataclass(slots=True)
class _Endpoint:
    url: str
    concurrency: int
    requests: Bucket | None = None
    tokens: Bucket | None = None
    outstanding: int = 0
    failures: int = 0
    aside_until: float = 0.0
    aside_s: float = FIRST_ASIDE_S
    paused_until: float = 0.0
    sent: int = 0

    @classmethod
    def of(cls, spec: EndpointSpec) -> _Endpoint:
        return cls(spec.url.rstrip("/"), spec.concurrency, _bucket(spec.rpm), _bucket(spec.tpm))

    @property
    def limited(self) -> bool:
        """Whether the endpoint has limits of its own."""
        return self.requests is not None or self.tokens is not None

    def ready_in(self, now: float, tokens: int) -> float:
        """Seconds until this endpoint may take a request of ``tokens`` (slots aside)."""
        wait = max(self.aside_until - now, self.paused_until - now, 0.0)
        if self.requests is not None:
            wait = max(wait, self.requests.wait_s(1))
        if self.tokens is not None:
            wait = max(wait, self.tokens.wait_s(tokens))
        return wait

    def usable(self, now: float, tokens: int) -> bool:
        return self.outstanding < self.concurrency and self.ready_in(now, tokens) <= 0.0

    def charge(self, tokens: int) -> None:
        self.outstanding += 1
        self.sent += 1
        if self.requests is not None:
            self.requests.add(-1)
        if self.tokens is not None:
            self.tokens.add(-tokens)


class EndpointPool:
    """Least-outstanding-requests choice over endpoints, each with its own concurrency and
    optional rate limits."""

    def __init__(self, endpoints: tuple[EndpointSpec, ...]) -> None:
        self._endpoints = [_Endpoint.of(e) for e in endpoints]
        self._primary = self._endpoints[0].url
        #: requests waiting for an endpoint (and their tokens), first come first served
        self._waiting: deque[tuple[asyncio.Future[_Endpoint], int]] = deque()
        self._wake: asyncio.TimerHandle | None = None
        self._wake_at = 0.0

    @property
    def sent(self) -> dict[str, int]:
        """Requests sent to each endpoint so far."""
        return {e.url: e.sent for e in self._endpoints}

    @property
    def limited(self) -> bool:
        """Whether any endpoint has limits of its own."""
        return any(e.limited for e in self._endpoints)

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: Handler
    ) -> aiohttp.ClientResponse:
        ticket = _TICKET.get()
        endpoint = await self._take(ticket.tokens if ticket is not None else 0)
        if ticket is not None:
            ticket.endpoint = endpoint
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

    def refund(self, endpoint: _Endpoint, unused: int) -> None:
        """Give ``endpoint`` back the tokens a reply did not use."""
        if endpoint.tokens is not None and unused:
            endpoint.tokens.add(unused)
            if unused > 0:
                self._hand_out()

    def pause(self, endpoint: _Endpoint, seconds: float) -> None:
        """The endpoint answered 429: send it nothing for ``seconds``."""
        endpoint.paused_until = max(endpoint.paused_until, time.monotonic() + seconds)
        log.info("pool.paused", endpoint=endpoint.url, for_s=round(seconds, 3))

    async def _take(self, tokens: int) -> _Endpoint:
        """An endpoint: at once if nobody waits and one is free, else in turn (a newcomer never
        overtakes a waiting request, or a waiter could wait out the run and count as hung)."""
        if not self._waiting and (endpoint := self._choice(tokens)) is not None:
            endpoint.charge(tokens)
            return endpoint
        turn: asyncio.Future[_Endpoint] = asyncio.get_running_loop().create_future()
        self._waiting.append((turn, tokens))
        self._hand_out()
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                turn.result().outstanding -= 1  # handed a slot as it was cancelled
                self._hand_out()
            raise

    def _hand_out(self) -> None:
        """Give free endpoints to waiters in turn; come back when the head's could be free."""
        while self._waiting:
            turn, tokens = self._waiting[0]
            if turn.done():
                self._waiting.popleft()
                continue
            endpoint = self._choice(tokens)
            if endpoint is None:
                break
            self._waiting.popleft()
            endpoint.charge(tokens)
            turn.set_result(endpoint)
        if self._waiting:
            self._arm(self._next_ready_s(self._waiting[0][1]))

    def _arm(self, wait_s: float | None) -> None:
        if wait_s is None:
            return
        when = asyncio.get_running_loop().time() + max(wait_s, 0.001)
        if self._wake is not None:
            if self._wake_at <= when:
                return
            self._wake.cancel()
        self._wake_at = when
        self._wake = asyncio.get_running_loop().call_at(when, self._woken)

    def _woken(self) -> None:
        self._wake = None
        self._hand_out()

    def _choice(self, tokens: int) -> _Endpoint | None:
        now = time.monotonic()
        usable = [e for e in self._endpoints if e.usable(now, tokens)]
        return min(usable, key=lambda e: e.outstanding / e.concurrency) if usable else None

    def _next_ready_s(self, tokens: int) -> float | None:
        """Until an endpoint with a free slot could take ``tokens`` (None: a slot must free)."""
        now = time.monotonic()
        waits = [e.ready_in(now, tokens) for e in self._endpoints if e.outstanding < e.concurrency]
        return min(waits) if waits else None

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


class PoolLimiter:
    """The run's limiter, telling the pool each attempt's tokens: the ``Limiter`` of a run whose
    pool has endpoints with limits of their own."""

    def __init__(self, inner: Limiter, pool: EndpointPool) -> None:
        self._inner, self._pool = inner, pool

    @property
    def paused_s(self) -> float:
        return self._inner.paused_s

    @property
    def rate_limited_count(self) -> int:
        return self._inner.rate_limited_count

    async def reserve(self, requests: int, tokens: int) -> Grant:
        grant = await self._inner.reserve(requests, tokens)
        _TICKET.set(_Ticket(tokens))
        return grant

    def settle(self, grant: Grant, used_tokens: int) -> None:
        ticket = _TICKET.get()
        if not grant.settled and ticket is not None and ticket.endpoint is not None:
            self._pool.refund(ticket.endpoint, ticket.tokens - used_tokens)
        self._inner.settle(grant, used_tokens)

    def observe(self, info: RateLimitInfo) -> None:
        if not self._own_limits():  # an endpoint's own limits are its, not the run's
            self._inner.observe(info)

    def rate_limited(self, retry_after_s: float | None) -> None:
        ticket = _TICKET.get()
        if ticket is not None and ticket.endpoint is not None and ticket.endpoint.limited:
            self._pool.pause(ticket.endpoint, retry_after_s or DEFAULT_429_PAUSE_S)
        else:
            self._inner.rate_limited(retry_after_s)

    def _own_limits(self) -> bool:
        ticket = _TICKET.get()
        return ticket is not None and ticket.endpoint is not None and ticket.endpoint.limited


def _move(request: aiohttp.ClientRequest, primary: str, target: str) -> None:
    if target == primary:
        return
    url = str(request.url)
    if url.startswith(primary):
        moved = URL(target + url[len(primary) :])
        request.url = moved
        request.headers["Host"] = moved.host_port_subcomponent or ""
