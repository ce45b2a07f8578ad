"""The shared limits of a sharded run: what the limit actor holds, as plain arithmetic.

``LeaseBook`` owns the run's RPM and TPM buckets, the pause every shard honours after a 429, and
the cost cap's account (spent, and leased to each shard but not yet spent). Shards ask it for a
lease (about half a second of the whole rate, divided among the shards) and spend it locally, so
the book is consulted a few times a second per shard, not once a request. A lease is granted at
once and debited from the buckets, which may go into debt; its ``wait_s`` says when it may be
spent, so waiting shards queue in the buckets rather than asking again. It does not wait, send
or know about Ray: the actor in ``ray_backend`` wraps it, and time comes from an injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from batchllm.bucket import Bucket

#: seconds of the whole rate the book may hand out at once (its buckets' capacity)
BURST_S = 0.5
#: how long a shard waits before asking again for budget other shards still hold
BUDGET_RETRY_S = 0.05


@dataclass(frozen=True, slots=True)
class Lease:
    """What the book granted: requests and tokens, to spend once ``wait_s`` has passed."""

    requests: float = 0.0
    tokens: float = 0.0
    wait_s: float = 0.0


@dataclass(frozen=True, slots=True)
class BudgetLease:
    """Dollars granted; ``wait_s`` when others hold what is left; ``exhausted`` for good."""

    usd: float = 0.0
    wait_s: float = 0.0
    exhausted: bool = False
    #: the cap is close: give back what is not needed at once instead of keeping it
    scarce: bool = False


@dataclass(slots=True)
class _Dimension:
    per_minute: float
    bucket: Bucket

    @classmethod
    def of(cls, per_minute: float, clock: Callable[[], float]) -> _Dimension:
        rate = per_minute / 60.0
        return cls(per_minute, Bucket(max(rate * BURST_S, 1.0), rate, clock))


@dataclass(slots=True)
class _Account:
    cap_usd: float | None
    spent_usd: float = 0.0
    leased: dict[int, float] = field(default_factory=dict)

    def outstanding(self, but: int | None = None) -> float:
        return sum(usd for shard, usd in self.leased.items() if shard != but)


class LeaseBook:
    """RPM, TPM and the cost cap of one sharded run, leased out to its shards."""

    def __init__(
        self,
        rpm: int | None,
        tpm: int | None,
        cap_usd: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._requests = _Dimension.of(rpm, clock) if rpm else None
        self._tokens = _Dimension.of(tpm, clock) if tpm else None
        self._paused_until = clock()
        self._account = _Account(cap_usd)
        self.leases = 0
        self.rate_limited = 0
        #: attempts at each shard so far (a worker or node that died, run again by Ray)
        self.attempts: dict[int, int] = {}

    # --- rate limits -----------------------------------------------------------------------

    def lease(self, requests: tuple[float, float], tokens: tuple[float, float]) -> Lease:
        """Grant ``want`` of each limited dimension (``(need, want)``), to be spent after
        ``wait_s``: the grant is taken now, so the shards' leases queue up in the buckets
        (first asked, first served) and each lease costs one round trip."""
        self.leases += 1
        wait = max(0.0, self._paused_until - self._clock())
        pairs = ((self._requests, requests), (self._tokens, tokens))
        for dimension, (need, want) in pairs:
            if dimension is not None:
                wait = max(wait, dimension.bucket.wait_s(max(need, want)))
        granted = [_take(dimension, max(need, want)) for dimension, (need, want) in pairs]
        return Lease(granted[0], granted[1], wait)

    def limits(self) -> tuple[float | None, float | None]:
        """The RPM and TPM the book holds (``None``: not limited)."""
        return (
            self._requests.per_minute if self._requests else None,
            self._tokens.per_minute if self._tokens else None,
        )

    def pause(self, seconds: float, *, rate_limited: bool = False) -> None:
        """Hold every shard back for ``seconds`` (a 429, or little quota left)."""
        self.rate_limited += rate_limited
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def follow(self, rpm: int | None, tpm: int | None) -> None:
        """Learn or lower the limits from the provider's headers."""
        self._requests = _lower(self._requests, rpm, self._clock)
        self._tokens = _lower(self._tokens, tpm, self._clock)

    # --- cost cap --------------------------------------------------------------------------

    def start_shard(self, shard: int) -> int:
        """A shard (re)starts: what an earlier attempt held counts as spent, as it may have been.
        Returns the attempt's number (1 for the first)."""
        account = self._account
        account.spent_usd += account.leased.pop(shard, 0.0)
        self.attempts[shard] = self.attempts.get(shard, 0) + 1
        return self.attempts[shard]

    def budget(self, shard: int, need: float, want: float, spent: float) -> BudgetLease:
        """Count ``spent`` (dollars of the shard's lease now spent); grant ``need`` to ``want``."""
        account = self._account
        self._spend(shard, spent)
        if account.cap_usd is None:
            return BudgetLease(usd=want)
        free = account.cap_usd - account.spent_usd - account.outstanding()
        scarce = free < want * 4
        if free >= need:
            usd = min(want, free)
            account.leased[shard] = account.leased.get(shard, 0.0) + usd
            return BudgetLease(usd=usd, scarce=scarce)
        others = account.outstanding(but=shard)
        if account.spent_usd + need > account.cap_usd or others <= 0:
            return BudgetLease(exhausted=True)
        return BudgetLease(wait_s=BUDGET_RETRY_S, scarce=True)

    def give_back(self, shard: int, usd: float, spent: float) -> None:
        """The shard returns ``usd`` it holds unspent and reports ``spent`` of its lease."""
        self._spend(shard, spent)
        account = self._account
        account.leased[shard] = max(0.0, account.leased.get(shard, 0.0) - usd)

    @property
    def spent_usd(self) -> float:
        return self._account.spent_usd

    def _spend(self, shard: int, spent: float) -> None:
        account = self._account
        account.spent_usd += spent
        account.leased[shard] = max(0.0, account.leased.get(shard, 0.0) - spent)


def _take(dimension: _Dimension | None, amount: float) -> float:
    if dimension is None:
        return 0.0
    dimension.bucket.add(-amount)
    return amount


def _lower(
    dimension: _Dimension | None, per_minute: int | None, clock: Callable[[], float]
) -> _Dimension | None:
    if not per_minute or per_minute <= 0:
        return dimension
    if dimension is None:
        return _Dimension.of(per_minute, clock)
    if per_minute < dimension.per_minute:
        rate = per_minute / 60.0
        dimension.per_minute = per_minute
        dimension.bucket.resize(max(rate * BURST_S, 1.0), rate)
    return dimension
