"""The token bucket's arithmetic, on a clock the test moves."""

from __future__ import annotations

import pytest

from batchllm.bucket import Bucket


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_new_bucket_is_full_and_refills_at_its_rate(clock: Clock) -> None:
    """It starts at capacity; after a debit it gains ``rate`` a second, never past capacity."""
    bucket = Bucket(capacity=10, rate=2, clock=clock)
    assert bucket.level() == 10
    bucket.add(-6)
    assert bucket.level() == 4
    clock.now += 1.5
    assert bucket.level() == pytest.approx(7)
    clock.now += 100
    assert bucket.level() == 10


def test_waiting_is_for_the_cost_or_a_full_bucket_when_the_cost_is_larger(clock: Clock) -> None:
    """wait_s is 0 when the level covers the cost; else the deficit over the rate; a cost above
    capacity waits only for a full bucket."""
    bucket = Bucket(capacity=10, rate=5, clock=clock)
    assert bucket.wait_s(10) == 0.0
    bucket.add(-10)
    assert bucket.wait_s(5) == pytest.approx(1.0)
    assert bucket.wait_s(50) == pytest.approx(2.0)
    clock.now += 1.0
    assert bucket.wait_s(5) == 0.0


def test_a_debt_is_paid_off_by_the_refill(clock: Clock) -> None:
    """A debit larger than the level leaves it negative; the refill pays the debt first."""
    bucket = Bucket(capacity=4, rate=1, clock=clock)
    bucket.add(-10)
    assert bucket.level() == -6
    assert bucket.wait_s(1) == pytest.approx(7.0)
    assert bucket.full_in_s() == pytest.approx(10.0)
    clock.now += 7
    assert bucket.level() == pytest.approx(1)


def test_a_credit_never_fills_past_capacity(clock: Clock) -> None:
    """Giving back more than was taken stops at capacity (no quota is invented)."""
    bucket = Bucket(capacity=3, rate=1, clock=clock)
    bucket.add(-1)
    bucket.add(+5)
    assert bucket.level() == 3


def test_resizing_keeps_what_it_holds_up_to_the_new_capacity(clock: Clock) -> None:
    """A smaller bucket keeps at most its new capacity; a larger one keeps its level and fills
    at the new rate."""
    bucket = Bucket(capacity=10, rate=1, clock=clock)
    bucket.resize(capacity=4, rate=2)
    assert (bucket.capacity, bucket.rate, bucket.level()) == (4, 2, 4)
    bucket.resize(capacity=8, rate=4)
    assert bucket.level() == 4
    clock.now += 0.5
    assert bucket.level() == pytest.approx(6)


def test_time_is_read_only_from_the_clock_given(clock: Clock) -> None:
    """Nothing changes while the clock stands still, however often the bucket is asked."""
    bucket = Bucket(capacity=5, rate=1, clock=clock)
    bucket.add(-5)
    for _ in range(1000):
        assert bucket.level() == 0
