"""Admission under requests-per-minute and tokens-per-minute limits: the ``Limiter`` seam.

``Limiter`` is what the dispatcher needs of admission: ``reserve`` a request's share of the limits
(waiting for its turn), ``settle`` it to what the reply used, ``observe`` the provider's rate-limit
headers and report a 429 with ``rate_limited``. Nothing else crosses it, so a limiter shared by
several processes (a lease client of one counter) fits without changing the dispatcher.

``LocalLimiter`` is the in-process implementation. One admits every request of a run, first come
first served. Each limit is a continuously refilling bucket (rate = limit / 60 per second) holding
at most a quarter of a second of quota, so a minute's quota never goes out in a burst: providers
enforce per-minute limits over windows of about a second. A request is admitted when both buckets
hold its cost (or, for a cost larger than a bucket, when the bucket is full); its token cost is the
estimated input plus ``max_tokens``, as providers count it, and ``settle`` gives back what the reply
did not use, as long as the provider seems to do the same: providers differ, and one that keeps
``max_tokens`` until its window passes answers a client that refunds with 429s on tokens. The
first such 429 (``RateLimitInfo.limited`` = "tokens") stops the refunds for the rest of the run.
Waiting costs nothing: waiters are futures in a FIFO queue and one timer wakes the
head when it can go. A 429 pauses admission for everyone; ``observe`` keeps the limits in step with
the provider's rate-limit headers (and learns them when the job file gives none).

It does not retry, send, or know about providers' header names.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from batchllm.bucket import Bucket
from batchllm.errors import RequestTooLarge
from batchllm.providers.base import RateLimitInfo

log = structlog.get_logger("batchllm")

BURST_S = 0.25
#: seconds of token quota left to the provider when refunds stop
REFUND_STOP_MARGIN_S = 1.0
#: how long everyone waits after a 429 that says nothing about when to come back
DEFAULT_429_PAUSE_S = 1.0
#: waits shorter than this are rounding noise, not a reason to arm a timer
_EPSILON_S = 1e-6


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic time and timers: the event loop's in a run, a fake one in tests."""

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
class Grant:
    """What one admission reserved; hand it back to ``Limiter.settle`` once."""

    requests: int
    tokens: int
    settled: bool = False


def check_fits(tokens: int, tpm: float | None) -> None:
    """Raise ``RequestTooLarge`` for a request that could never be admitted: it needs more
    tokens than the whole per-minute limit (any limiter, local or shared, refuses it alike)."""
    if tpm is not None and tokens > tpm:
        raise RequestTooLarge(
            f"request needs {tokens} tokens, more than the whole limit of {int(tpm)} tokens "
            "per minute"
        )


class Limiter(Protocol):
    """Admission of a run's requests under its rate limits, shared by all its workers."""

    async def reserve(self, requests: int, tokens: int) -> Grant:
        """Wait for this request's turn; ``RequestTooLarge`` if it can never fit."""
        ...

    def settle(self, grant: Grant, used_tokens: int) -> None:
        """Replace the reservation with what the request really used."""
        ...

    def observe(self, info: RateLimitInfo) -> None:
        """Follow the provider's own count of what is left."""
        ...

    def rate_limited(self, retry_after_s: float | None) -> None:
        """The provider answered 429: hold everyone back (``retry_after_s``, if it said)."""
        ...

    @property
    def paused_s(self) -> float:
        """Total time admission has been paused (429s, low remaining quota)."""
        ...

    @property
    def rate_limited_count(self) -> int:
        """429s reported so far."""
        ...


class _Limit:
    """One limit (per minute) and its bucket."""

    __slots__ = ("bucket", "per_minute")

    def __init__(self, per_minute: float, clock: Callable[[], float]) -> None:
        self.per_minute = per_minute
        self.bucket = Bucket(_capacity(per_minute), per_minute / 60.0, clock)

    def lower_to(self, per_minute: float) -> None:
        self.per_minute = min(self.per_minute, per_minute)
        self.bucket.resize(_capacity(self.per_minute), self.per_minute / 60.0)


@dataclass(slots=True)
class _Waiter:
    requests: int
    tokens: int
    future: asyncio.Future[None] = field(repr=False)


class LocalLimiter:
    """FIFO admission under RPM and TPM in this process; ``None`` means not limited (or not yet
    learned)."""

    def __init__(self, rpm: int | None, tpm: int | None, clock: Clock) -> None:
        self._clock = clock
        self._requests = _limit(rpm, clock)
        self._tokens = _limit(tpm, clock)
        self._paused_until = clock.now()
        self._paused_s = 0.0
        self._limited = 0
        self._queue: deque[_Waiter] = deque()
        self._timer: TimerHandle | None = None
        self._timer_at = 0.0
        #: whether the unused part of a reservation goes back (until the provider shows it keeps
        #: it)
        self._refunds = True

    @property
    def rpm(self) -> float | None:
        return None if self._requests is None else self._requests.per_minute

    @property
    def tpm(self) -> float | None:
        return None if self._tokens is None else self._tokens.per_minute

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def paused_s(self) -> float:
        return self._paused_s

    @property
    def rate_limited_count(self) -> int:
        return self._limited

    async def reserve(self, requests: int, tokens: int) -> Grant:
        check_fits(tokens, self.tpm)
        if not self._queue and self._ready(requests, tokens) <= _EPSILON_S:
            self._take(requests, tokens)
            return Grant(requests, tokens)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiter(requests, tokens, future))
        if len(self._queue) == 1:
            self._pump()
        await future
        return Grant(requests, tokens)

    def settle(self, grant: Grant, used_tokens: int) -> None:
        if grant.settled:
            return
        grant.settled = True
        if self._tokens is None:
            return
        unused = grant.tokens - used_tokens
        self._tokens.bucket.add(unused if self._refunds else min(unused, 0))
        if unused > 0 and self._refunds:
            self._pump()

    @property
    def refunds(self) -> bool:
        """Whether the unused part of a reservation is given back when a reply settles."""
        return self._refunds

    def rate_limited(self, retry_after_s: float | None) -> None:
        self._limited += 1
        self.pause(retry_after_s or DEFAULT_429_PAUSE_S)

    def pause(self, seconds: float) -> None:
        """Stop admitting anyone for ``seconds``."""
        now = self._clock.now()
        until = now + seconds
        if until > self._paused_until:
            self._paused_s += until - max(self._paused_until, now)
            self._paused_until = until
        self._rearm()

    def observe(self, info: RateLimitInfo) -> None:
        """Learn or lower the limits from the provider's; slow down when little is left; stop
        refunding unused tokens at a 429 on tokens."""
        if info.limited == "tokens" and self._refunds and self._tokens is not None:
            self._stop_refunds(self._tokens.bucket)
        self._requests = _follow(self._requests, info.limit_requests, self._clock)
        self._tokens = _follow(self._tokens, info.limit_tokens, self._clock)
        wait = max(
            _shortfall(self._requests, info.remaining_requests),
            _shortfall(self._tokens, info.remaining_tokens),
        )
        if wait > 0:
            self.pause(wait)

    def _stop_refunds(self, bucket: Bucket) -> None:
        """The provider keeps what we gave back: stop, and leave it a second of quota to spare.

        By now its bucket is empty and ours refills at its rate, so without a margin every
        request would arrive just as it has room, and any burst would meet a 429."""
        self._refunds = False
        bucket.add(-(max(bucket.level(), 0.0) + bucket.rate * REFUND_STOP_MARGIN_S))
        log.info(
            "limits.refunds_stopped",
            reason="a 429 on tokens: the provider keeps max_tokens until its window passes",
        )

    def _ready(self, requests: int, tokens: int) -> float:
        wait = max(0.0, self._paused_until - self._clock.now())
        for limit, cost in ((self._requests, requests), (self._tokens, tokens)):
            if limit is not None:
                wait = max(wait, limit.bucket.wait_s(cost))
        return wait

    def _take(self, requests: int, tokens: int) -> None:
        for limit, cost in ((self._requests, requests), (self._tokens, tokens)):
            if limit is not None:
                limit.bucket.add(-cost)

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
            wait = self._ready(head.requests, head.tokens)
            if wait > _EPSILON_S:
                self._arm(self._clock.now() + wait)
                return
            self._take(head.requests, head.tokens)
            self._queue.popleft()
            head.future.set_result(None)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            if self._timer_at == when:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._clock.call_at(when, self._pump)

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._queue:
            self._pump()


def _capacity(per_minute: float) -> float:
    return max(per_minute / 60.0 * BURST_S, 1.0)


def _limit(per_minute: int | None, clock: Clock) -> _Limit | None:
    return None if per_minute is None else _Limit(float(per_minute), clock.now)


def _follow(limit: _Limit | None, per_minute: int | None, clock: Clock) -> _Limit | None:
    if per_minute is None or per_minute <= 0:
        return limit
    if limit is None:
        return _limit(per_minute, clock)
    limit.lower_to(float(per_minute))
    return limit


def _shortfall(limit: _Limit | None, remaining: int | None) -> float:
    """How long to wait when the provider has less left than one second of our own traffic."""
    if limit is None or remaining is None:
        return 0.0
    rate = limit.bucket.rate
    return max(0.0, rate - remaining) / rate
