"""The shared limits' arithmetic (what the limit actor holds), on a clock the test moves."""

from __future__ import annotations

import pytest

from batchllm.scale.book import BUDGET_RETRY_S, BURST_S, LeaseBook


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_lease_is_granted_at_once_and_waits_its_turn_in_the_buckets(clock: Clock) -> None:
    """The first lease fits the full bucket (no wait); the next ones are granted too but each
    says how long until the buckets have refilled for it (first asked, first served)."""
    book = LeaseBook(rpm=600, tpm=None, cap_usd=None, clock=clock)  # 10 requests/s, burst 5
    first = book.lease((1, 5), (0, 0))
    assert (first.requests, first.wait_s) == (5, 0.0)
    second = book.lease((1, 5), (0, 0))
    third = book.lease((1, 5), (0, 0))
    assert second.wait_s == pytest.approx(0.5)
    assert third.wait_s == pytest.approx(1.0)
    assert book.leases == 3


def test_a_dimension_that_is_not_limited_grants_nothing(clock: Clock) -> None:
    """With only TPM set, leases carry tokens and no requests."""
    book = LeaseBook(rpm=None, tpm=6000, cap_usd=None, clock=clock)
    lease = book.lease((1, 3), (10, 50))
    assert (lease.requests, lease.tokens, lease.wait_s) == (0.0, 50, 0.0)
    assert book.limits() == (None, 6000)


def test_time_refills_the_buckets(clock: Clock) -> None:
    """After the buckets are spent, waiting the rate's time makes the next lease free again."""
    book = LeaseBook(rpm=600, tpm=None, cap_usd=None, clock=clock)
    book.lease((5, 5), (0, 0))
    assert book.lease((5, 5), (0, 0)).wait_s > 0
    clock.now += 10.0
    assert book.lease((5, 5), (0, 0)).wait_s == 0.0


def test_a_pause_holds_every_lease_back(clock: Clock) -> None:
    """A 429 reported by one shard makes every following lease wait out the pause."""
    book = LeaseBook(rpm=6000, tpm=None, cap_usd=None, clock=clock)
    book.pause(3.0, rate_limited=True)
    assert book.lease((1, 1), (0, 0)).wait_s == pytest.approx(3.0)
    assert book.rate_limited == 1
    clock.now += 3.0
    assert book.lease((1, 1), (0, 0)).wait_s == 0.0


def test_headers_lower_a_limit_but_never_raise_it(clock: Clock) -> None:
    """follow() learns a missing limit and lowers a higher one; a higher figure is ignored."""
    book = LeaseBook(rpm=600, tpm=None, cap_usd=None, clock=clock)
    book.follow(rpm=1200, tpm=90_000)
    assert book.limits() == (600, 90_000)
    book.follow(rpm=300, tpm=None)
    assert book.limits() == (300, 90_000)
    lease = book.lease((1, 300 / 60 * BURST_S), (0, 0))
    assert lease.wait_s == 0.0


def test_no_cap_grants_what_is_asked(clock: Clock) -> None:
    """Without a cost cap a budget lease is whatever the shard wants."""
    book = LeaseBook(rpm=None, tpm=None, cap_usd=None, clock=clock)
    assert book.budget(0, need=0.01, want=0.5, spent=0.0).usd == 0.5


def test_the_cap_is_shared_out_and_never_passed(clock: Clock) -> None:
    """Leases never add up past the cap: spent plus held by every shard stays within it."""
    book = LeaseBook(rpm=None, tpm=None, cap_usd=1.0, clock=clock)
    a = book.budget(0, need=0.1, want=0.4, spent=0.0)
    b = book.budget(1, need=0.1, want=0.4, spent=0.0)
    c = book.budget(2, need=0.1, want=0.4, spent=0.0)
    assert (a.usd, b.usd, c.usd) == (0.4, 0.4, pytest.approx(0.2))
    assert c.scarce
    waiting = book.budget(2, need=0.3, want=0.4, spent=0.0)
    assert (waiting.usd, waiting.wait_s, waiting.exhausted) == (0.0, BUDGET_RETRY_S, False)


def test_money_given_back_is_leased_again(clock: Clock) -> None:
    """A shard returning unspent dollars frees them for another shard."""
    book = LeaseBook(rpm=None, tpm=None, cap_usd=1.0, clock=clock)
    book.budget(0, need=0.5, want=1.0, spent=0.0)
    book.give_back(0, usd=0.6, spent=0.2)
    assert book.spent_usd == pytest.approx(0.2)
    assert book.budget(1, need=0.5, want=0.6, spent=0.0).usd == pytest.approx(0.6)


def test_the_cap_is_exhausted_when_nothing_is_left_anywhere(clock: Clock) -> None:
    """All spent and no shard holding any: the next need is refused for good."""
    book = LeaseBook(rpm=None, tpm=None, cap_usd=1.0, clock=clock)
    book.budget(0, need=1.0, want=1.0, spent=0.0)
    assert book.budget(0, need=0.1, want=0.1, spent=1.0).exhausted


def test_a_restarted_shard_s_holding_counts_as_spent(clock: Clock) -> None:
    """What a shard held when its worker died may have been spent: a restart counts it spent,
    so the cap still holds across the retry."""
    book = LeaseBook(rpm=None, tpm=None, cap_usd=1.0, clock=clock)
    book.budget(3, need=0.5, want=0.7, spent=0.0)
    book.start_shard(3)
    assert book.spent_usd == pytest.approx(0.7)
    assert book.budget(3, need=0.5, want=0.5, spent=0.0).exhausted
