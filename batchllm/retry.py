"""Which failures are retried and how long to wait: the retry policy in one place.

Retryability is a property of the error type (see ``batchllm.errors``). The wait is the provider's
Retry-After when it gives one, however long (a batch job can afford to wait; a retry that comes
early only fails again); none after a timeout, which has already waited; else full-jitter
exponential backoff. tenacity drives the loop, built only once a first attempt has failed.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from batchllm.errors import ProviderError, Timeout

BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


def wait_after(exc: BaseException | None, failures: int) -> float:
    """Seconds to wait after the ``failures``-th failed attempt, which raised ``exc``."""
    if isinstance(exc, ProviderError) and exc.retry_after_s is not None:
        return exc.retry_after_s
    if isinstance(exc, Timeout):
        return 0.0
    return random.uniform(0.0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0**failures))


def policy(
    attempts: int,
    before_sleep: Callable[[RetryCallState], None] | None = None,
    already_failed: int = 0,
) -> AsyncRetrying:
    """A retry loop of at most ``attempts`` tries, after ``already_failed`` failed ones."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return wait_after(exc, state.attempt_number + already_failed)

    return AsyncRetrying(
        stop=stop_after_attempt(attempts),
        retry=retry_if_exception(is_retryable),
        wait=wait,
        before_sleep=before_sleep,
        reraise=True,
    )
