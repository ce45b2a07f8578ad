"""One token bucket: a quantity that refills continuously at ``rate`` per second up to ``capacity``.

Pure arithmetic on an injected clock (a function returning seconds), so tests move time without
sleeping. The level may go below zero: a debit larger than what is there is a debt the refill pays
off. What the bucket limits, how big it is and when to debit it are the caller's business (the
run's limiter and the simulated provider both use it).
"""

from __future__ import annotations

from collections.abc import Callable

#: deficits smaller than this are rounding noise, not a reason to wait
EPSILON = 1e-9


class Bucket:
    """A continuously refilling bucket whose level may go negative."""

    __slots__ = ("_capacity", "_clock", "_level", "_rate", "_stamp")

    def __init__(self, capacity: float, rate: float, clock: Callable[[], float]) -> None:
        self._capacity = capacity
        self._rate = rate
        self._clock = clock
        self._level = capacity
        self._stamp = clock()

    @property
    def capacity(self) -> float:
        return self._capacity

    @property
    def rate(self) -> float:
        """Units added per second."""
        return self._rate

    def level(self) -> float:
        """What the bucket holds now (refilled up to this moment)."""
        now = self._clock()
        self._level = min(self._capacity, self._level + (now - self._stamp) * self._rate)
        self._stamp = now
        return self._level

    def wait_s(self, cost: float) -> float:
        """Seconds until the level reaches min(cost, capacity); 0.0 when it already has."""
        deficit = min(cost, self._capacity) - self.level()
        return deficit / self._rate if deficit > EPSILON else 0.0

    def add(self, amount: float) -> None:
        """Credit (positive) or debit (negative) the bucket, never above capacity."""
        self._level = min(self._capacity, self.level() + amount)

    def full_in_s(self) -> float:
        """Seconds until the bucket is full again."""
        return (self._capacity - self.level()) / self._rate

    def resize(self, capacity: float, rate: float) -> None:
        """A new size and rate from now on; what it holds is kept, up to the new capacity."""
        level = self.level()
        self._capacity, self._rate = capacity, rate
        self._level = min(level, capacity)
