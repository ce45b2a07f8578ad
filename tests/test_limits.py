"""The limiter on a controlled clock: no test here sleeps on the wall clock."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from batchllm.errors import RequestTooLarge
from batchllm.limits import Grant, LocalLimiter
from batchllm.providers.base import RateLimitInfo


@dataclass(order=True)
class _Timer:
    when: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that moves only when the test says so; timers fire in order."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.timers: list[_Timer] = []
        self.seq = 0

    def now(self) -> float:
        return self.t

    def call_at(self, when: float, callback: Callable[[], None]) -> _Timer:
        self.seq += 1
        timer = _Timer(when, self.seq, callback)
        heapq.heappush(self.timers, timer)
        return timer

    @property
    def armed(self) -> int:
        return sum(not t.cancelled for t in self.timers)

    async def advance(self, seconds: float) -> None:
        end = self.t + seconds
        while self.timers and self.timers[0].when <= end:
            timer = heapq.heappop(self.timers)
            if timer.cancelled:
                continue
            self.t = max(self.t, timer.when)
            timer.callback()
            await _settle()
        self.t = end
        await _settle()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _start(
    limiter: LocalLimiter, tokens: int, admitted: list[int], tag: int
) -> asyncio.Task[Grant]:
    async def go() -> Grant:
        grant = await limiter.reserve(1, tokens)
        admitted.append(tag)
        return grant

    return asyncio.ensure_future(go())


async def test_requests_are_spread_over_time_not_burst() -> None:
    """600 RPM lets through a quarter second of quota at once, then 10 requests a second."""
    clock = FakeClock()
    limiter = LocalLimiter(rpm=600, tpm=None, clock=clock)
    admitted: list[int] = []
    tasks = [_start(limiter, 1, admitted, i) for i in range(40)]
    await _settle()
    assert len(admitted) == 2  # a bucket of 2.5 requests
    await clock.advance(1.0)
    assert 11 <= len(admitted) <= 13
    await clock.advance(2.0)
    assert 31 <= len(admitted) <= 33
    for task in tasks:
        task.cancel()


async def test_admission_is_first_come_first_served() -> None:
    """A large request queued first goes before small ones queued after it."""
    clock = FakeClock()
    limiter = LocalLimiter(rpm=None, tpm=6000, clock=clock)  # 100 tokens/s, bucket of 25
    admitted: list[int] = []
    await limiter.reserve(1, 25)  # empty the bucket
    big = _start(limiter, 500, admitted, 0)
    small = [_start(limiter, 1, admitted, i) for i in range(1, 4)]
    await _settle()
    await clock.advance(0.3)
    assert admitted == [0]  # the big one went first, and the small ones wait for its tokens
    await clock.advance(10.0)
    assert admitted == [0, 1, 2, 3]
    await asyncio.gather(big, *small)


async def test_settle_gives_back_unused_tokens() -> None:
    """Settling for fewer tokens than reserved lets the next request in sooner."""
    clock = FakeClock()
    limiter = LocalLimiter(rpm=None, tpm=6000, clock=clock)
    permit = await limiter.reserve(1, 200)  # bucket now at 25 - 200 = -175
    admitted: list[int] = []
    waiter = _start(limiter, 10, admitted, 1)
    await clock.advance(0.5)
    assert admitted == []
    limiter.settle(permit, used_tokens=20)  # 180 come back
    await _settle()
    assert admitted == [1]
    await waiter


async def test_settle_charges_extra_use() -> None:
    """A reply that used more than reserved takes the difference from the bucket."""
    clock = FakeClock()
    limiter = LocalLimiter(rpm=None, tpm=6000, clock=clock)
    permit = await limiter.reserve(1, 10)
    limiter.settle(permit, used_tokens=310)
    admitted: list[int] = []
    waiter = _start(limiter, 10, admitted, 1)
    await clock.advance(2.5)
    assert admitted == []
    await clock.advance(1.0)
    assert admitted == [1]
    await waiter


async def test_pause_stops_everyone_until_it_ends() -> None:
    """A 429 pause holds every waiter, not just the request that got it."""
    clock = FakeClock()
    limiter = LocalLimiter(rpm=6000, tpm=None, clock=clock)
    limiter.pause(2.0)
    admitted: list[int] = []
    tasks = [_start(limiter, 1, admitted, i) for i in range(5)]
    await clock.advance(1.9)
    assert admitted == []
    await clock.advance(0.2)
    assert admitted[:2] == [0, 1]
    await clock.advance(1.0)
    await asyncio.gather(*tasks)


async def test_a_request_larger_than_the_minute_budget_fails_at_once() -> None:
    """A request that could never be admitted raises instead of waiting forever."""
    limiter = LocalLimiter(rpm=None, tpm=1000, clock=FakeClock())
    with pytest.raises(RequestTooLarge, match="more than the whole limit"):
        await limiter.reserve(1, 1001)


async def test_limits_are_learned_from_headers() -> None:
    """With no limits configured, the provider's limit headers set them."""
    clock = FakeClock()
    limiter = LocalLimiter(rpm=None, tpm=None, clock=clock)
    limiter.observe(RateLimitInfo(limit_requests=600, limit_tokens=60000))
    assert limiter.rpm == 600
    assert limiter.tpm == 60000


async def test_a_lower_provider_limit_wins_over_the_configured_one() -> None:
    """When the provider says the limit is lower than configured, the limiter follows it."""
    limiter = LocalLimiter(rpm=6000, tpm=None, clock=FakeClock())
    limiter.observe(RateLimitInfo(limit_requests=600))
    assert limiter.rpm == 600


async def test_low_remaining_quota_slows_admission() -> None:
    """When the provider has less than a second of quota left, admission waits for it."""
    clock = FakeClock()
    limiter = LocalLimiter(rpm=600, tpm=None, clock=clock)  # 10 requests a second
    limiter.observe(RateLimitInfo(limit_requests=600, remaining_requests=0))
    admitted: list[int] = []
    task = _start(limiter, 1, admitted, 1)
    await clock.advance(0.9)
    assert admitted == []
    await clock.advance(0.2)
    assert admitted == [1]
    await task


async def test_waiting_arms_one_timer_however_many_wait() -> None:
    """Thousands of waiters cost one timer, not a polling loop each."""
    clock = FakeClock()
    limiter = LocalLimiter(rpm=60, tpm=None, clock=clock)
    admitted: list[int] = []
    tasks = [_start(limiter, 1, admitted, i) for i in range(2000)]
    await _settle()
    assert clock.armed == 1
    assert limiter.waiting == 1999
    for task in tasks:
        task.cancel()
    await _settle()


async def test_cancelled_waiters_do_not_block_the_queue() -> None:
    """A waiter that gave up is skipped; the ones behind it still get their turn."""
    clock = FakeClock()
    limiter = LocalLimiter(rpm=60, tpm=None, clock=clock)  # one a second
    await limiter.reserve(1, 1)
    admitted: list[int] = []
    first = _start(limiter, 1, admitted, 1)
    second = _start(limiter, 1, admitted, 2)
    await _settle()
    first.cancel()
    await clock.advance(1.1)
    assert admitted == [2]
    await second


async def test_settling_while_others_wait_keeps_a_single_timer() -> None:
    """A settle wakes the queue without leaving the old timer armed (no chains of wake-ups)."""
    clock = FakeClock()
    limiter = LocalLimiter(rpm=None, tpm=6000, clock=clock)
    permits = [await limiter.reserve(1, 25)]
    admitted: list[int] = []
    tasks = [_start(limiter, 50, admitted, i) for i in range(20)]
    await _settle()
    for _ in range(10):
        if permits:
            limiter.settle(permits.pop(), used_tokens=5)
        await clock.advance(0.2)
        assert clock.armed <= 1
        permits = [task.result() for task in tasks if task.done() and not task.cancelled()][-1:]
    for task in tasks:
        task.cancel()
    await _settle()


async def test_a_429_on_tokens_stops_refunds_for_the_rest_of_the_run() -> None:
    """After a 429 on tokens, unused tokens stay charged and the provider gets a second spare."""
    clock = FakeClock()
    limiter = LocalLimiter(rpm=None, tpm=6000, clock=clock)  # 100 tokens/s, bucket of 25
    permit = await limiter.reserve(1, 200)
    limiter.observe(RateLimitInfo(remaining_tokens=5000, limited="requests"))
    assert limiter.refunds  # a 429 on requests says nothing about token accounting
    limiter.observe(RateLimitInfo(remaining_tokens=5000, limited="tokens"))
    assert not limiter.refunds
    limiter.settle(permit, used_tokens=20)  # nothing comes back
    admitted: list[int] = []
    waiter = _start(limiter, 10, admitted, 1)
    await clock.advance(2.8)
    assert admitted == []  # -175, and a second of quota more: -275, 2.85 s to reach 10
    await clock.advance(0.1)
    assert admitted == [1]
    await waiter
    await clock.advance(1.0)  # full again: 25
    extra = await limiter.reserve(1, 10)
    limiter.settle(extra, used_tokens=310)  # a reply longer than reserved is still charged
    later = _start(limiter, 10, admitted, 2)  # 25 - 310 = -285: 2.95 s to reach 10
    await clock.advance(2.9)
    assert admitted == [1]
    await clock.advance(0.1)
    assert admitted == [1, 2]
    await later
