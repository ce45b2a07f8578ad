"""A shard's lease limiter against a shared book, in one process (no Ray needed)."""

from __future__ import annotations

from batchllm.scale.book import LeaseBook
from batchllm.scale.lease import BookService, LeaseLimiter


async def test_refunds_made_while_a_lease_is_in_hand_are_kept() -> None:
    """Unused tokens coming back after the next lease is already in the stock are spent on the
    next requests instead of being thrown away (which held a sharded run to ~0.76 of its TPM)."""
    book = LeaseBook(rpm=None, tpm=6000, cap_usd=None)  # 100 tokens/s: a lease is 50
    limiter = LeaseLimiter(BookService(book), rpm=None, tpm=6000, shards=1)
    first = await limiter.reserve(1, 40)
    second = await limiter.reserve(1, 40)  # a second lease, into the stock
    assert limiter.leases == 2
    limiter.settle(first, 10)
    limiter.settle(second, 10)  # 60 tokens come back
    await limiter.reserve(1, 40)
    await limiter.reserve(1, 40)
    assert limiter.leases == 2, "the refunds paid for both, no third lease"


async def test_a_shard_never_holds_more_than_two_leases_of_refunds() -> None:
    """Refunds beyond two leases' worth go unused by this shard (no hoarding)."""
    book = LeaseBook(rpm=None, tpm=6000, cap_usd=None)
    limiter = LeaseLimiter(BookService(book), rpm=None, tpm=6000, shards=1)
    grants = [await limiter.reserve(1, 50) for _ in range(4)]
    for grant in grants:
        limiter.settle(grant, 0)  # 200 tokens unused
    leases = limiter.leases
    await limiter.reserve(1, 100)  # the stock holds 100 at most: enough, no new lease
    assert limiter.leases == leases
    await limiter.reserve(1, 1)
    assert limiter.leases == leases + 1
