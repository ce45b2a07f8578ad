"""A shard's side of the shared limits: ``LeaseLimiter`` and ``LeaseBudget``.

Both fit the run's seams (``limits.Limiter``, ``budget.Budget``), so the dispatcher does not know
it shares its limits. Each keeps a small local stock leased from a ``LeaseService`` (the limit
actor of a Ray run, or a ``LeaseBook`` in this process) and asks again only when the stock runs
short: a lease is about half a second of the whole rate divided among the shards. What a request
did not use goes back into the local stock; a 429 pauses this shard at once and, through the
service, every other shard at its next lease. Waiting is a sleep for exactly what the service
says, never a poll.

It does not hold the limits themselves (``book``) nor talk to Ray (``ray_backend``).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from batchllm.budget import Hold, LocalBudget, OverBudget
from batchllm.limits import DEFAULT_429_PAUSE_S, Grant, check_fits
from batchllm.pricing import Price
from batchllm.providers.base import RateLimitInfo
from batchllm.scale.book import BURST_S, BudgetLease, Lease, LeaseBook

#: requests' worth of worst-case cost a shard leases at once
BUDGET_LEASE_REQUESTS = 16
#: a shard's token stock may hold this many leases' worth, so refunds survive a lease in hand
REFUND_ROOM = 2.0
#: forward the provider's rate-limit headers at most this often (seconds)
OBSERVE_EVERY_S = 1.0


class LeaseService(Protocol):
    """Where the shared limits live; every call may cross a process boundary."""

    async def lease(self, requests: tuple[float, float], tokens: tuple[float, float]) -> Lease: ...

    def pause(self, seconds: float, rate_limited: bool) -> None:
        """Fire and forget."""
        ...

    def follow(self, rpm: int | None, tpm: int | None) -> None:
        """Fire and forget."""
        ...

    async def budget(self, shard: int, need: float, want: float, spent: float) -> BudgetLease: ...

    def give_back(self, shard: int, usd: float, spent: float) -> None:
        """Fire and forget."""
        ...


class BookService:
    """A ``LeaseBook`` in this process behind the ``LeaseService`` calls."""

    def __init__(self, book: LeaseBook) -> None:
        self.book = book

    async def lease(self, requests: tuple[float, float], tokens: tuple[float, float]) -> Lease:
        return self.book.lease(requests, tokens)

    def pause(self, seconds: float, rate_limited: bool) -> None:
        self.book.pause(seconds, rate_limited=rate_limited)

    def follow(self, rpm: int | None, tpm: int | None) -> None:
        self.book.follow(rpm, tpm)

    async def budget(self, shard: int, need: float, want: float, spent: float) -> BudgetLease:
        return self.book.budget(shard, need, want, spent)

    def give_back(self, shard: int, usd: float, spent: float) -> None:
        self.book.give_back(shard, usd, spent)


class LeaseLimiter:
    """A shard's admission under limits shared with other shards, leased in small grants."""

    def __init__(
        self, service: LeaseService, rpm: int | None, tpm: int | None, shards: int
    ) -> None:
        self._service = service
        self._rpm, self._tpm = rpm, tpm
        self._shards = max(shards, 1)
        self._requests = 0.0
        self._tokens = 0.0
        self._turn = asyncio.Lock()  # FIFO: one waiter at a time asks the service
        self._loop = asyncio.get_running_loop()
        self._paused_until = self._loop.time()
        self._paused_s = 0.0
        self._limited = 0
        self._observed_at = -OBSERVE_EVERY_S
        self.leases = 0

    @property
    def paused_s(self) -> float:
        return self._paused_s

    @property
    def rate_limited_count(self) -> int:
        return self._limited

    async def reserve(self, requests: int, tokens: int) -> Grant:
        check_fits(tokens, self._tpm)
        async with self._turn:
            await self._wait_pause()
            while not self._covers(requests, tokens):
                await self._refill(requests, tokens)
            self._requests -= requests if self._rpm else 0
            self._tokens -= tokens if self._tpm else 0
        return Grant(requests, tokens)

    def settle(self, grant: Grant, used_tokens: int) -> None:
        if grant.settled:
            return
        grant.settled = True
        if self._tpm:
            # Room for a lease and its refunds: the next lease is often in the stock already,
            # waiting its turn, while replies settle; capping at one lease threw their unused
            # tokens away (the shared limit was used at prompt+max_tokens, ~0.76 of it).
            stock = self._tokens + grant.tokens - used_tokens
            self._tokens = min(stock, REFUND_ROOM * self._want(self._tpm))

    def observe(self, info: RateLimitInfo) -> None:
        learned = (info.limit_requests, info.limit_tokens)
        now = self._loop.time()
        if any(learned) and now - self._observed_at >= OBSERVE_EVERY_S:
            self._observed_at = now
            self._rpm = _lower(self._rpm, info.limit_requests)
            self._tpm = _lower(self._tpm, info.limit_tokens)
            self._service.follow(info.limit_requests, info.limit_tokens)

    def rate_limited(self, retry_after_s: float | None) -> None:
        self._limited += 1
        seconds = retry_after_s or DEFAULT_429_PAUSE_S
        self._pause_locally(seconds)
        self._service.pause(seconds, True)

    def _covers(self, requests: int, tokens: int) -> bool:
        return (not self._rpm or self._requests >= requests) and (
            not self._tpm or self._tokens >= tokens
        )

    async def _refill(self, requests: int, tokens: int) -> None:
        need_r = max(0.0, requests - self._requests) if self._rpm else 0.0
        need_t = max(0.0, tokens - self._tokens) if self._tpm else 0.0
        want_r = max(need_r, self._want(self._rpm)) if self._rpm else 0.0
        want_t = max(need_t, self._want(self._tpm)) if self._tpm else 0.0
        lease = await self._service.lease((need_r, want_r), (need_t, want_t))
        self.leases += 1
        self._requests += lease.requests
        self._tokens += lease.tokens
        if lease.wait_s > 0:
            await asyncio.sleep(lease.wait_s)  # the lease's turn in the shared buckets
        await self._wait_pause()

    def _want(self, per_minute: int | None) -> float:
        return max(1.0, (per_minute or 0) / 60.0 * BURST_S / self._shards)

    def _pause_locally(self, seconds: float) -> None:
        now = self._loop.time()
        until = now + seconds
        if until > self._paused_until:
            self._paused_s += until - max(self._paused_until, now)
            self._paused_until = until

    async def _wait_pause(self) -> None:
        # a pause can grow while it is slept: each sleep is exactly what is left, not a poll
        while (wait := self._paused_until - self._loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)


class LeaseBudget:
    """A shard's share of a cost cap held by a ``LeaseService``: worst cases are held against a
    local stock of leased dollars, real costs reported back with the next lease."""

    def __init__(
        self, service: LeaseService, shard: int, cap_usd: float | None, price: Price
    ) -> None:
        self._service, self._shard, self._cap_usd = service, shard, cap_usd
        self._costs = LocalBudget(None, price)
        self._stock = 0.0
        self._spent = 0.0
        self._unreported = 0.0
        self._scarce = False
        self._exhausted = False
        self._turn = asyncio.Lock()

    @property
    def cap_usd(self) -> float | None:
        return self._cap_usd

    @property
    def spent_usd(self) -> float:
        return self._spent

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    async def reserve(self, est_input_tokens: int, max_tokens: int) -> Hold:
        if self._cap_usd is None:
            return Hold(0.0)
        usd = self._costs.worst_case(est_input_tokens, max_tokens)
        async with self._turn:
            while self._stock < usd:
                await self._lease(usd)
            self._stock -= usd
        return Hold(usd)

    def settle(self, hold: Hold, cost_usd: float) -> None:
        if hold.settled:
            return
        hold.settled = True
        self._stock += hold.usd - cost_usd
        self._spent += cost_usd
        self._unreported += cost_usd
        if self._scarce and self._stock > 0 and not self._turn.locked():
            self.give_back()

    def give_back(self) -> None:
        """Return the unspent stock (and report what was spent) to the service."""
        if self._cap_usd is None:
            return
        self._service.give_back(self._shard, max(self._stock, 0.0), self._unreported)
        self._stock = min(self._stock, 0.0)
        self._unreported = 0.0

    async def _lease(self, usd: float) -> None:
        if self._exhausted:
            raise OverBudget
        need = usd - self._stock
        reply = await self._service.budget(
            self._shard, need, max(need, usd * BUDGET_LEASE_REQUESTS), self._unreported
        )
        self._unreported = 0.0
        self._scarce = reply.scarce
        if reply.exhausted:
            self._exhausted = True
            raise OverBudget
        if reply.wait_s > 0:
            await asyncio.sleep(reply.wait_s)
        self._stock += reply.usd


def _lower(current: int | None, learned: int | None) -> int | None:
    if not learned or learned <= 0:
        return current
    return learned if current is None else min(current, learned)
