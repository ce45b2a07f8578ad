"""Admission under requests-per-minute and tokens-per-minute limits.

One ``Limiter`` admits every request of a run, first come first served. Each limit is a
continuously refilling bucket (rate = limit / 60 per second) holding at most a quarter of a
second of quota, so a minute's quota never goes out in a burst: providers enforce per-minute
limits over windows of about a second. A request is admitted when both buckets hold its cost (or,
for a cost larger than a bucket, when the bucket is full); its token cost is the estimated input
plus ``max_tokens``, as providers count it, and ``settle`` gives back what the reply did not use.

Waiting costs nothing: waiters are futures in a FIFO queue and one timer wakes the head when it
can go. A 429 ``pause``s admission for everyone; ``observe`` keeps the limits in step with the
provider's rate-limit headers (and learns them when the job file gives none).

It does not retry, send, or know about providers' header names.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from batchllm.errors import RequestTooLarge
from batchllm.providers.base import RateLimitInfo

BURST_S = 0.25
#: waits shorter than this are rounding noise, not a reason to arm a timer
_EPSILON_S = 1e-6


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle: ...


class LoopClock:
    """The running event loop's monotonic clock."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()

    def now(self) -> float:
        return self._loop.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        return self._loop.call_at(when, callback)


@dataclass(slots=True)
class Bucket:
    """A refilling bucket of one quantity; the level may go below zero after a large debit."""

    per_minute: float
    level: float
    stamp: float

    @property
    def rate(self) -> float:
        return self.per_minute / 60.0

    @property
    def capacity(self) -> float:
        return max(self.rate * BURST_S, 1.0)

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def delay(self, cost: float) -> float:
        """Seconds until ``cost`` can be taken (a cost above capacity waits for a full bucket)."""
        need = min(cost, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate


@dataclass(slots=True)
class Permit:
    """What one admission reserved; hand it back to ``Limiter.settle``."""

    tokens: int
    settled: bool = False


@dataclass(slots=True)
class _Waiter:
    tokens: int
    future: asyncio.Future[None] = field(repr=False)


class Limiter:
    """FIFO admission under RPM and TPM; ``None`` means not limited (or not yet learned)."""

    def __init__(self, rpm: int | None, tpm: int | None, clock: Clock) -> None:
        self.clock = clock
        now = clock.now()
        self.requests = _bucket(rpm, now)
        self.tokens = _bucket(tpm, now)
        self.paused_until = now
        #: total time admission has been paused (429s, low remaining quota), for the run's record
        self.paused_s = 0.0
        self._queue: deque[_Waiter] = deque()
        self._timer: TimerHandle | None = None
        self._timer_at = 0.0

    @property
    def waiting(self) -> int:
        return len(self._queue)

    async def acquire(self, tokens: int) -> Permit:
        """Wait for this request's turn; raises ``RequestTooLarge`` if it can never fit."""
        if self.tokens is not None and tokens > self.tokens.per_minute:
            raise RequestTooLarge(
                f"request needs {tokens} tokens, more than the whole limit of "
                f"{int(self.tokens.per_minute)} tokens per minute"
            )
        if not self._queue and self._ready(tokens, self.clock.now()) <= _EPSILON_S:
            self._take(tokens)
            return Permit(tokens)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiter(tokens, future))
        if len(self._queue) == 1:
            self._pump()
        await future
        return Permit(tokens)

    def settle(self, permit: Permit, used_tokens: int) -> None:
        """Replace the reservation with what the request really used."""
        if permit.settled:
            return
        permit.settled = True
        if self.tokens is None:
            return
        self.tokens.refill(self.clock.now())
        self.tokens.level = min(
            self.tokens.capacity, self.tokens.level + permit.tokens - used_tokens
        )
        if used_tokens < permit.tokens:
            self._pump()

    def pause(self, seconds: float) -> None:
        """Stop admitting anyone for ``seconds`` (a 429's Retry-After)."""
        now = self.clock.now()
        until = now + seconds
        if until > self.paused_until:
            self.paused_s += until - max(self.paused_until, now)
            self.paused_until = until
        self._rearm()

    def observe(self, info: RateLimitInfo) -> None:
        """Follow the provider's own count: learn or lower the limits, slow down when it is low."""
        now = self.clock.now()
        self.requests = _follow(self.requests, info.limit_requests, now)
        self.tokens = _follow(self.tokens, info.limit_tokens, now)
        wait = max(
            _shortfall(self.requests, info.remaining_requests),
            _shortfall(self.tokens, info.remaining_tokens),
        )
        if wait > 0:
            self.pause(wait)

    def _ready(self, tokens: int, now: float) -> float:
        wait = max(0.0, self.paused_until - now)
        for bucket, cost in ((self.requests, 1), (self.tokens, tokens)):
            if bucket is not None:
                bucket.refill(now)
                wait = max(wait, bucket.delay(cost))
        return wait

    def _take(self, tokens: int) -> None:
        if self.requests is not None:
            self.requests.level -= 1
        if self.tokens is not None:
            self.tokens.level -= tokens

    def _pump(self) -> None:
        # Called by the timer, or early by a settle: either way the pending timer is spent or
        # stale, and leaving it armed would start a second chain of wake-ups.
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._queue:
            head = self._queue[0]
            if head.future.done():
                self._queue.popleft()
                continue
            wait = self._ready(head.tokens, self.clock.now())
            if wait > _EPSILON_S:
                self._arm(self.clock.now() + wait)
                return
            self._take(head.tokens)
            self._queue.popleft()
            head.future.set_result(None)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            if self._timer_at == when:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.clock.call_at(when, self._pump)

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._queue:
            self._pump()


def _bucket(per_minute: int | None, now: float) -> Bucket | None:
    if per_minute is None:
        return None
    bucket = Bucket(float(per_minute), 0.0, now)
    bucket.level = bucket.capacity
    return bucket


def _follow(bucket: Bucket | None, limit: int | None, now: float) -> Bucket | None:
    if limit is None or limit <= 0:
        return bucket
    if bucket is None:
        return _bucket(limit, now)
    bucket.per_minute = min(bucket.per_minute, float(limit))
    bucket.level = min(bucket.level, bucket.capacity)
    return bucket


def _shortfall(bucket: Bucket | None, remaining: int | None) -> float:
    """How long to wait when the provider has less left than one second of our own traffic."""
    if bucket is None or remaining is None:
        return 0.0
    return max(0.0, bucket.rate - remaining) / bucket.rate
