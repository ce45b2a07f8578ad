"""Which failures are retried and how long to wait: the retry policy in one place.

Retryability is a property of the error type (see ``batchllm.errors``). The wait is the provider's
Retry-After when it gives one, up to ``max_wait_s`` (``[retry] max_wait_s``, 10 minutes unless
set): a retry that comes early only fails again, but one answer must not hold a run for a day.
None after a timeout, which has already waited; else full-jitter exponential backoff. tenacity
drives the loop, built only once a first attempt has failed.

``LongWaits`` watches what the provider asks for: a wait over a minute is logged as a warning,
and a provider that keeps asking for more than ``max_wait_s`` (``LONG_WAITS_TO_STOP`` answers in
a row, from any row) stops the run with ``FatalProviderError``, naming the time it said to come
back.

``TierFallback`` is where a row refused by OpenAI's flex tier (429 "resource unavailable", which
says flex has no capacity now, not that the account passed its limits, so it never pauses the
limiter) moves to the standard tier: after ``FLEX_REFUSALS`` refusals of its own, or at the first
one once the deadline's plan says only the standard tier keeps it (``standard_from``). Rows that
start after that point start at the standard tier. The request key stays: the same model answers.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from batchllm.errors import FatalProviderError, FlexUnavailable, ProviderError, Timeout

if TYPE_CHECKING:
    from batchllm.render import Request

log = structlog.get_logger("batchllm")

BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
#: the longest single wait unless the job sets ``[retry] max_wait_s``
DEFAULT_MAX_WAIT_S = 600.0
#: waits longer than this are logged at warning level
LONG_WAIT_S = 60.0
#: answers in a row asking for more than ``max_wait_s`` that stop the run
LONG_WAITS_TO_STOP = 3
#: flex refusals of one row after which it is sent at the standard tier
FLEX_REFUSALS = 3
#: the tier a row refused by flex moves to
STANDARD_TIER = "default"
#: the furthest "come back at" named (adapters already drop waits longer than a year)
_LONGEST_S = 366 * 86400.0


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


def wait_after(
    exc: BaseException | None, failures: int, max_wait_s: float = DEFAULT_MAX_WAIT_S
) -> float:
    """Seconds to wait after the ``failures``-th failed attempt, which raised ``exc``."""
    if isinstance(exc, ProviderError) and exc.retry_after_s is not None:
        return min(exc.retry_after_s, max_wait_s)
    if isinstance(exc, Timeout):
        return 0.0
    return random.uniform(0.0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0**failures, max_wait_s))


def policy(
    attempts: int,
    before_sleep: Callable[[RetryCallState], None] | None = None,
    already_failed: int = 0,
    max_wait_s: float = DEFAULT_MAX_WAIT_S,
) -> AsyncRetrying:
    """A retry loop of at most ``attempts`` tries, after ``already_failed`` failed ones."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return wait_after(exc, state.attempt_number + already_failed, max_wait_s)

    return AsyncRetrying(
        stop=stop_after_attempt(attempts),
        retry=retry_if_exception(is_retryable),
        wait=wait,
        before_sleep=before_sleep,
        reraise=True,
    )


class LongWaits:
    """The run's count of answers in a row that asked for a wait longer than ``max_wait_s``."""

    def __init__(self, max_wait_s: float) -> None:
        self.max_wait_s = max_wait_s
        self._in_a_row = 0

    def answered(self) -> None:
        """A reply that asked for no long wait: the streak is over."""
        self._in_a_row = 0

    def asked(self, seconds: float) -> float:
        """The provider asked for ``seconds``: the wait to keep (at most ``max_wait_s``);
        ``FatalProviderError`` when it has asked for too long too many times in a row."""
        if seconds > LONG_WAIT_S:
            log.warning(
                "provider.long_wait",
                asked_s=round(seconds, 3),
                waiting_s=round(min(seconds, self.max_wait_s), 3),
                max_wait_s=self.max_wait_s,
            )
        if seconds <= self.max_wait_s:
            self._in_a_row = 0
            return seconds
        self._in_a_row += 1
        if self._in_a_row >= LONG_WAITS_TO_STOP:
            back = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=min(seconds, _LONGEST_S))
            raise FatalProviderError(
                f"the provider asked {self._in_a_row} times in a row to wait {seconds:,.0f} s, "
                f"more than [retry] max_wait_s = {self.max_wait_s:g} s; it says to come back at "
                f"{back:%Y-%m-%d %H:%M:%S} UTC: run again then (rows already done are kept)"
            )
        return self.max_wait_s


class TierFallback:
    """When a row asking for the flex tier is sent at the standard tier instead."""

    def __init__(self, refusals: int = FLEX_REFUSALS, clock: Callable[[], float] = time.time):
        self.refusals = refusals
        self.clock = clock
        #: epoch seconds from which flex cannot keep the deadline (None: no deadline)
        self.standard_from: float | None = None

    def pressing(self) -> bool:
        """Whether only the standard tier keeps the deadline now."""
        return self.standard_from is not None and self.clock() >= self.standard_from

    def first(self, request: Request) -> Request:
        """The request a row starts with: at the standard tier once the deadline presses."""
        if request.service_tier == "flex" and self.pressing():
            return self._standard(request, "deadline", 0)
        return request

    def after(self, request: Request, exc: BaseException, refused: int) -> Request:
        """The request to send after ``exc``, the row's ``refused``-th flex refusal so far."""
        if not isinstance(exc, FlexUnavailable) or request.service_tier != "flex":
            return request
        if self.pressing():
            return self._standard(request, "deadline", refused)
        if refused >= self.refusals:
            return self._standard(request, "refusals", refused)
        return request

    def _standard(self, request: Request, why: str, refused: int) -> Request:
        log.info("request.standard_tier", row_key=request.row_key, why=why, refused=refused)
        return replace(request, service_tier=STANDARD_TIER)
