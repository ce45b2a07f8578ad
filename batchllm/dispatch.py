"""One request from admission to outcome: limiter, send, parse, retry, price.

``Dispatcher.process`` turns a ``Request`` into an ``Outcome``; row-level failures come back as
``failed`` outcomes, fatal provider errors (bad key, exhausted quota, a provider that keeps asking
for waits longer than ``[retry] max_wait_s``) raise ``FatalProviderError``. With a reply schema,
an invalid reply is re-asked (the conversation plus what was wrong) up to ``max_repairs`` times,
every reply's usage and cost counted on the row, and what stays invalid ends ``invalid``. Replies
that were paid for but unusable (a bad reply that reported usage) count on the row too. An
exception nothing foresaw fails only its row (``internal_error``), keeping the replies already in
hand, their usage and cost; the run goes on. Rate-limit headers never fail a row: unreadable ones
are logged and skipped. Each reply is priced at the service tier it says it was served at; a row
flex refuses moves to the standard tier when ``retry.TierFallback`` says so. Its parts (adapter,
limiter, budget, price...) come in one ``RunContext``; outcomes are built by
``outcome.Outcomes``. It does not read input or write results.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import structlog
from tenacity import RetryCallState

from batchllm import retry
from batchllm.budget import OverBudget
from batchllm.errors import (
    BadReply,
    FatalProviderError,
    FlexUnavailable,
    ProviderError,
    RateLimited,
    Timeout,
)
from batchllm.media_fetch import fetch_media
from batchllm.outcome import Outcome, Outcomes
from batchllm.providers.base import Completion, HttpCall, RateLimitInfo, Usage
from batchllm.providers.http import send
from batchllm.render import Request
from batchllm.run.context import RunContext
from batchllm.stragglers import Stragglers
from batchllm.validate import Checked

log = structlog.get_logger("batchllm")

#: output tokens reserved under TPM when the job sets no max_tokens
DEFAULT_OUTPUT_RESERVE = 256


class Dispatcher:
    """Sends a run's requests through its limiter and budget; given the run's parts."""

    def __init__(self, context: RunContext) -> None:
        self._context = context
        self._settings = context.settings
        self._outcomes = Outcomes(context.run_id, context.price, context.schema)
        self.max_repairs = self._settings.max_repairs if context.schema is not None else 0
        self._stragglers = Stragglers(self._settings.timeout_s, self._settings.resend_stragglers)
        self._long_waits = retry.LongWaits(self._settings.max_wait_s)
        self.tiers = retry.TierFallback()

    @property
    def stragglers_resent(self) -> int:
        """Requests given up at the end of the run and sent again."""
        return self._stragglers.resent

    def begin_tail(self) -> None:
        """Every row is handed out: stragglers may be given up from now on."""
        self._stragglers.begin_tail()

    async def process(self, request: Request, copied: dict[str, Any]) -> Outcome:
        """Send ``request`` with retries and repairs; an outcome unless the run must stop."""
        started = time.monotonic()
        tries = _Tries()
        try:
            try:
                first = await self._send(request, tries)
            except ProviderError as exc:
                return self._outcomes.failed(
                    request, copied, str(exc), exc.kind, tries.count, paid=tries.paid
                )
            return await self._complete(request, copied, first, tries, started)
        except (FatalProviderError, OverBudget):
            raise
        except Exception as exc:  # a bug or a reply nothing foresaw: this row fails, not the run
            return self._broken(request, copied, tries, exc)

    def _broken(
        self, request: Request, copied: dict[str, Any], tries: _Tries, exc: Exception
    ) -> Outcome:
        """The failed row of an unexpected exception, with every reply received for it."""
        log.error("request.internal_error", row_key=request.row_key, error=repr(exc))
        received = [reply.usage for reply in tries.replies]
        return self._outcomes.failed(
            request,
            copied,
            f"internal error: {type(exc).__name__}: {exc}",
            "internal_error",
            tries.count,
            paid=[*received, *tries.paid],
            output=tries.replies[-1].text if tries.replies else None,
        )

    async def repair(
        self,
        request: Request,
        copied: dict[str, Any],
        first: Completion,
        *,
        first_cost: float,
        attempts: int,
    ) -> Outcome:
        """Re-ask for a reply that came from elsewhere (a batch, where it cost ``first_cost``
        after ``attempts`` attempts); the outcome counts it and the re-asks."""
        tries = _Tries(count=attempts)
        try:
            return await self._complete(
                request, copied, first, tries, time.monotonic(), first_cost=first_cost
            )
        except (FatalProviderError, OverBudget):
            raise
        except Exception as exc:  # as in ``process``: the row fails with what it received
            tries.replies.insert(0, first)
            return self._broken(request, copied, tries, exc)

    async def _complete(
        self,
        request: Request,
        copied: dict[str, Any],
        first: Completion,
        tries: _Tries,
        started: float,
        first_cost: float | None = None,
    ) -> Outcome:
        replies = [first]
        checked = self._outcomes.check(first)
        while checked is not None and checked.value is None and len(replies) <= self.max_repairs:
            # from the request last sent: its media fetched, at the tier it was moved to
            request = (tries.sent or request).follow_up(replies[-1].text, checked.error or "")
            try:
                replies.append(await self._send(request, tries))
            except ProviderError as exc:
                checked = Checked(None, f"repair request failed: {exc}")
                break
            except OverBudget:
                checked = Checked(None, f"{checked.error}; not re-asked: the cost cap was reached")
                break
            checked = self._outcomes.check(replies[-1])
        return self._outcomes.answered(
            request,
            copied,
            replies,
            checked,
            attempts=tries.count,
            latency_ms=(time.monotonic() - started) * 1000,
            first_cost=first_cost,
            paid=tries.paid,
        )

    async def _send(self, request: Request, tries: _Tries) -> Completion:
        request = self.tiers.first(request)
        request = await fetch_media(request, self._context.session, self._settings.timeout_s)
        tries.sent = request
        call = self._context.adapter.build(request)
        only = self._settings.max_attempts == 1
        try:
            try:
                # Most requests succeed first time: the retry machinery is built on failure only.
                return await self._attempt(request, call, tries, last=only)
            except ProviderError as exc:
                request, call = self._retier(request, call, exc, tries)
                if not retry.is_retryable(exc) or only:
                    raise
                wait = retry.wait_after(exc, 1, self._settings.max_wait_s)
                _log_retry_event(1, wait, exc)
                await asyncio.sleep(wait)
            remaining = self._settings.max_attempts - 1
            loop = retry.policy(
                remaining, self._log_retry, already_failed=1, max_wait_s=self._settings.max_wait_s
            )
            async for attempt in loop:
                with attempt:
                    last = attempt.retry_state.attempt_number == remaining
                    try:
                        completion = await self._attempt(request, call, tries, last=last)
                    except FlexUnavailable as exc:
                        request, call = self._retier(request, call, exc, tries)
                        raise
        except ProviderError as exc:
            if exc.fatal:
                raise FatalProviderError(f"{exc.kind}: {exc}") from exc
            raise
        return completion

    def _retier(
        self, request: Request, call: HttpCall, exc: ProviderError, tries: _Tries
    ) -> tuple[Request, HttpCall]:
        """The request and call of the next attempt: at the standard tier when flex has
        refused this row often enough, or the deadline presses (``retry.TierFallback``)."""
        if not isinstance(exc, FlexUnavailable):
            return request, call
        tries.refused += 1
        moved = self.tiers.after(request, exc, tries.refused)
        tries.sent = moved
        return (
            (moved, self._context.adapter.build(moved)) if moved is not request else (request, call)
        )

    async def _attempt(
        self, request: Request, call: HttpCall, tries: _Tries, *, last: bool
    ) -> Completion:
        context = self._context
        output_reserve = request.max_tokens or DEFAULT_OUTPUT_RESERVE
        hold = await context.budget.reserve(request.est_input_tokens, output_reserve)
        cost = 0.0
        try:
            grant = await context.limiter.reserve(1, request.est_input_tokens + output_reserve)
            tries.count += 1
            used = request.est_input_tokens
            try:
                sent = time.monotonic()
                status, headers, body = await self._exchange(call, tries, last)
                info = self._rate_limits(headers)
                try:
                    completion = context.adapter.parse(status, headers, body)
                except ProviderError as exc:
                    if isinstance(exc, BadReply) and exc.usage is not None:  # paid, unusable
                        tries.paid.append(exc.usage)
                        used = exc.usage.input_tokens + exc.usage.output_tokens
                        cost = context.price.cost(exc.usage)
                        hold.input_tokens = exc.usage.input_tokens
                    self._failed_reply(exc, info)
                    raise
                # The reply is paid for: count it before anything else can go wrong.
                tries.replies.append(completion)
                used = completion.usage.input_tokens + completion.usage.output_tokens
                cost = context.price.served_as(completion.service_tier).cost(completion.usage)
                if not completion.usage.estimated:
                    hold.input_tokens = completion.usage.input_tokens
                context.limiter.observe(info)
                self._long_waits.answered()
                self._stragglers.replied(time.monotonic() - sent)
                return completion
            finally:
                context.limiter.settle(grant, used)
        finally:
            context.budget.settle(hold, cost)

    def _rate_limits(self, headers: Mapping[str, str]) -> RateLimitInfo:
        """What the headers say about the limits; nothing when they cannot be read."""
        try:
            return self._context.adapter.rate_limits(headers)
        except Exception as exc:  # a header no adapter foresaw must not fail a paid reply
            log.warning("provider.rate_limit_headers_unreadable", error=repr(exc))
            return RateLimitInfo()

    def _failed_reply(self, exc: ProviderError, info: RateLimitInfo) -> None:
        """Tell the limiter about a reply that failed. A wait the provider asked for is capped
        (``LongWaits``), or stops the run."""
        limiter = self._context.limiter
        if isinstance(exc, RateLimited):
            limiter.observe(replace(info, limited=exc.limit))
        else:
            limiter.observe(info)
        if exc.retry_after_s is not None:
            exc.retry_after_s = self._long_waits.asked(exc.retry_after_s)
        else:
            self._long_waits.answered()
        if isinstance(exc, RateLimited):
            limiter.rate_limited(exc.retry_after_s)

    async def _exchange(
        self, call: HttpCall, tries: _Tries, last: bool
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One HTTP exchange; at the end of a run, a straggler is given up (once a row, never
        on its last attempt) and raised as a ``Timeout``, which is retried at once."""
        watch = self._stragglers.watch(armed=not tries.resent and not last)
        try:
            async with watch:
                return await send(self._context.session, call, self._settings.timeout_s)
        except TimeoutError:
            tries.resent = True
            log.info("request.straggler_resent", waited_s=round(watch.waited_s, 3))
            raise Timeout(
                f"no reply after {watch.waited_s:.1f} s at the end of the run, far slower than "
                "the others: sent again"
            ) from None

    @staticmethod
    def _log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        _log_retry_event(state.attempt_number + 1, wait, exc)


def _log_retry_event(attempt: int, wait: float, exc: BaseException | None) -> None:
    log.info(
        "request.retry",
        attempt=attempt,
        wait_s=round(wait, 3),
        error=getattr(exc, "kind", type(exc).__name__),
        status=getattr(exc, "status", None),
    )


@dataclass(slots=True)
class _Tries:
    """HTTP requests made for one row, across retries and repairs."""

    count: int = 0
    #: a request of this row was given up as a straggler (it happens once a row at most)
    resent: bool = False
    #: the usable replies received for this row, in order
    replies: list[Completion] = field(default_factory=list)
    #: the usage of replies received but unusable (bad replies), which were paid for
    paid: list[Usage] = field(default_factory=list)
    #: flex refusals of this row ("resource unavailable")
    refused: int = 0
    #: the request last sent for this row (a re-ask follows on from it)
    sent: Request | None = None
