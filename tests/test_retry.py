"""The retry policy in one place: what is retried, how long each wait is, and long waits."""

from __future__ import annotations

import random

import pytest

from batchllm import retry
from batchllm.errors import (
    RETRY_STATUSES,
    AuthFailed,
    BadReply,
    ConnectionFailed,
    FatalProviderError,
    QuotaExhausted,
    RateLimited,
    Redirected,
    RequestRejected,
    RequestTooLarge,
    ServerError,
    Timeout,
    error_for_status,
    retryable_status,
)

RETRIED = [RateLimited("x"), ServerError("x"), Timeout("x"), ConnectionFailed("x"), BadReply("x")]
NOT_RETRIED = [RequestRejected("x"), RequestTooLarge("x"), AuthFailed("x"), QuotaExhausted("x"),
               Redirected("x"), ValueError("x")]  # fmt: skip


@pytest.mark.parametrize("error", RETRIED, ids=lambda e: type(e).__name__)
def test_transient_errors_are_retried(error: BaseException) -> None:
    """429, 5xx, timeouts, dropped connections and unusable 200s are worth another try."""
    assert retry.is_retryable(error)


@pytest.mark.parametrize("error", NOT_RETRIED, ids=lambda e: type(e).__name__)
def test_errors_a_retry_cannot_fix_are_not_retried(error: BaseException) -> None:
    """Rejections, oversized requests, bad keys, spent quotas, redirects and bugs are not."""
    assert not retry.is_retryable(error)


def test_fatal_errors_are_the_ones_that_stop_a_run() -> None:
    """Bad keys, spent quotas and redirects stop the run; other failures stay row-level."""
    assert {type(e).__name__ for e in [*RETRIED, *NOT_RETRIED[:-1]] if e.fatal} == {
        "AuthFailed", "QuotaExhausted", "Redirected",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, AuthFailed), (403, AuthFailed), (429, RateLimited), (408, ServerError),
     (409, ServerError), (500, ServerError), (503, ServerError), (529, ServerError),
     (599, ServerError), (400, RequestRejected), (404, RequestRejected), (413, RequestRejected),
     (422, RequestRejected)],
)  # fmt: skip
def test_each_status_has_one_reading(status: int, kind: type) -> None:
    """The common reading of an HTTP error status, written once for every adapter."""
    error = error_for_status(status, f"HTTP {status}", retry_after_s=2.0)
    assert type(error) is kind
    assert error.status == status
    assert retryable_status(status) is (status in RETRY_STATUSES or status >= 500)


def test_retry_after_is_kept_for_the_statuses_that_wait() -> None:
    """A 429 or 5xx carries the provider's Retry-After into the wait."""
    assert error_for_status(429, "slow down", retry_after_s=3.5).retry_after_s == 3.5
    assert error_for_status(503, "busy", retry_after_s=1.0).retry_after_s == 1.0


def test_the_providers_wait_wins_up_to_max_wait_s() -> None:
    """Retry-After is used as given, but never longer than max_wait_s."""
    assert retry.wait_after(RateLimited("x", retry_after_s=7.0), 1) == 7.0
    assert retry.wait_after(RateLimited("x", retry_after_s=86_400.0), 1) == retry.DEFAULT_MAX_WAIT_S
    assert retry.wait_after(RateLimited("x", retry_after_s=90.0), 1, max_wait_s=30.0) == 30.0


def test_no_wait_after_a_timeout() -> None:
    """A timeout has already waited its timeout_s: the next attempt goes at once."""
    assert retry.wait_after(Timeout("x"), 3) == 0.0


def test_backoff_is_jittered_exponential_and_capped() -> None:
    """Without a hint the wait is uniform in [0, min(30 s, 0.5 s × 2^n, max_wait_s)]."""
    random.seed(11)
    for failures, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (10, 30.0)):
        waits = [retry.wait_after(ServerError("x"), failures) for _ in range(300)]
        assert min(waits) >= 0.0 and max(waits) <= ceiling
        assert max(waits) > ceiling * 0.8, "the jitter spans its range"
    capped = [retry.wait_after(ServerError("x"), 10, max_wait_s=2.0) for _ in range(100)]
    assert max(capped) <= 2.0


def test_short_waits_pass_and_end_a_streak() -> None:
    """Waits within max_wait_s are kept as asked and reset the count of long ones."""
    waits = retry.LongWaits(max_wait_s=60.0)
    assert waits.asked(5.0) == 5.0
    assert waits.asked(600.0) == 60.0
    assert waits.asked(600.0) == 60.0
    waits.answered()
    assert waits.asked(600.0) == 60.0  # a new streak: one long answer
    assert waits.asked(10.0) == 10.0


def test_a_provider_that_keeps_asking_for_too_long_stops_the_run() -> None:
    """Three long answers in a row: FatalProviderError naming the cap and when to come back."""
    waits = retry.LongWaits(max_wait_s=60.0)
    waits.asked(3600.0)
    waits.asked(3600.0)
    with pytest.raises(FatalProviderError) as caught:
        waits.asked(3600.0)
    message = str(caught.value)
    assert "3 times in a row" in message and "max_wait_s = 60 s" in message
    assert "come back at" in message and "UTC" in message


async def _tries(attempts: int, error: Exception) -> int:
    """Run a retry loop whose every try raises ``error``; the number of tries made."""
    calls = 0
    try:
        async for attempt in retry.policy(attempts, max_wait_s=0.0):
            with attempt:
                calls += 1
                raise error
    except type(error):
        return calls
    raise AssertionError("the loop ended without raising")


async def test_the_policy_stops_after_its_attempts_and_reraises() -> None:
    """A loop of 3 tries over an error that keeps coming: 3 calls, then the error raised."""
    assert await _tries(3, ServerError("still down", retry_after_s=0.0)) == 3


async def test_the_policy_does_not_retry_what_is_not_retryable() -> None:
    """A rejection inside the loop is raised at once, after one call."""
    assert await _tries(5, RequestRejected("bad request")) == 1
