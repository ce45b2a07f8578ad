"""Rate limiting for the simulated provider, enforced the way OpenAI does it (providers.md §13).

Owns the admission decision and what the buckets (``batchllm.bucket``'s, the same the run's limiter
uses) say about the account: ``state()`` for any wire format's headers, ``headers()`` for OpenAI's
``x-ratelimit-*``.
Each configured dimension (requests, tokens) has a minute bucket (capacity = limit) and a
per-second bucket (capacity = limit/60), both refilling continuously at limit/60 per second. A
request is admitted when every bucket holds at least min(cost, capacity), so one request larger
than the per-second quantum still passes when the buckets are full; then every bucket is debited
and may go negative. Rejected requests are not debited. What a request costs, and when tokens are
settled, is the caller's business.

Time comes from an injected clock so tests can move it without sleeping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from batchllm.bucket import Bucket


def go_duration(seconds: float) -> str:
    """Format like Go's time.Duration at millisecond precision: 0s, 12ms, 1.5s, 1m0s, 2h3m4.5s
    (a value that is not finite, from a hostile scripted fault, as Python spells it)."""
    if not math.isfinite(seconds):
        return str(seconds)
    ms = max(0, round(seconds * 1000))
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def openai_headers(quotas: Sequence[QuotaState]) -> dict[str, str]:
    """``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``, resets as Go durations."""
    found = {}
    for q in quotas:
        found[f"x-ratelimit-limit-{q.name}"] = str(q.limit)
        found[f"x-ratelimit-remaining-{q.name}"] = str(q.remaining)
        found[f"x-ratelimit-reset-{q.name}"] = go_duration(q.full_in_s)
    return found


#: the simulator's name for the shared bucket (``batchllm.bucket``)
TokenBucket = Bucket


class _Quota:
    """One rate-limit dimension: a minute bucket plus the per-second quantum OpenAI enforces."""

    __slots__ = ("limit", "minute", "second")

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.minute = Bucket(limit, limit / 60, clock)
        self.second = Bucket(limit / 60, limit / 60, clock)

    def wait_s(self, cost: int) -> float:
        return max(self.minute.wait_s(cost), self.second.wait_s(cost))

    def add(self, amount: float) -> None:
        self.minute.add(amount)
        self.second.add(amount)

    def state(self, name: str) -> QuotaState:
        level = self.minute.level()
        return QuotaState(name, self.limit, max(0, math.floor(level)), self.minute.full_in_s())


@dataclass(frozen=True, slots=True)
class QuotaState:
    """One dimension's limit, what is left of it and the seconds until it is full again."""

    name: str
    limit: int
    remaining: int
    full_in_s: float


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a request was not admitted; ``too_large`` means it can never fit in the TPM limit."""

    dimension: str
    wait_s: float
    limit: int
    used: int
    requested: int
    too_large: bool = False


class RateLimiter:
    """RPM and TPM enforcement as described in the module docstring; None means unlimited."""

    __slots__ = ("requests", "tokens")

    def __init__(self, rpm: int | None, tpm: int | None, clock: Callable[[], float]) -> None:
        self.requests = None if rpm is None else _Quota(rpm, clock)
        self.tokens = None if tpm is None else _Quota(tpm, clock)

    def admit(self, tokens: int) -> Rejection | None:
        """Debit one request of ``tokens`` if every bucket allows it, else say why not."""
        if self.tokens is not None and tokens > self.tokens.limit:
            return Rejection("tokens", 0.0, self.tokens.limit, 0, tokens, too_large=True)
        worst: Rejection | None = None
        for name, quota, cost in self._costs(tokens):
            wait = quota.wait_s(cost)
            if wait > 0.0 and (worst is None or wait > worst.wait_s):
                used = max(0, math.ceil(quota.limit - quota.minute.level()))
                worst = Rejection(name, wait, quota.limit, used, cost)
        if worst is None:
            for _, quota, cost in self._costs(tokens):
                quota.add(-cost)
        return worst

    def refund(self, tokens: int) -> None:
        """Give back reserved tokens (negative to charge more than was reserved)."""
        if self.tokens is not None:
            self.tokens.add(tokens)

    def state(self) -> list[QuotaState]:
        """Each configured dimension ("requests", "tokens") as it stands now."""
        return [quota.state(name) for name, quota, _ in self._costs(0)]

    def headers(self) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers for ``state()``."""
        return openai_headers(self.state())

    def _costs(self, tokens: int) -> list[tuple[str, _Quota, int]]:
        pairs = (("requests", self.requests, 1), ("tokens", self.tokens, tokens))
        return [(name, quota, cost) for name, quota, cost in pairs if quota is not None]
