"""Which failures are retried and how long to wait: the retry policy in one place.

Retryability is a property of the error type (see ``batchllm.errors``). The wait is the provider's
Retry-After when it gives one, however long (a batch job can afford to wait; a retry that comes
early only fails again), else jittered exponential backoff.
"""

from __future__ import annotations

from collections.abc import Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from batchllm.errors import ProviderError

BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
_backoff = wait_random_exponential(multiplier=BACKOFF_BASE_S, max=BACKOFF_MAX_S)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


def wait_seconds(state: RetryCallState) -> float:
    """Retry-After when the failed attempt carried one, else jittered backoff."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, ProviderError) and exc.retry_after_s is not None:
        return exc.retry_after_s
    return float(_backoff(state))


def policy(
    max_attempts: int, before_sleep: Callable[[RetryCallState], None] | None = None
) -> AsyncRetrying:
    """A fresh retry loop for one request."""
    return AsyncRetrying(
        stop=stop_after_attempt(max_attempts),
        retry=retry_if_exception(is_retryable),
        wait=wait_seconds,
        before_sleep=before_sleep,
        reraise=True,
    )
