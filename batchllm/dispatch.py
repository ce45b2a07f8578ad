"""One request from admission to outcome: limiter, send, parse, retry, price.

``Dispatcher.process`` turns a ``Request`` into an ``Outcome``; row-level failures come back as
``failed`` outcomes, fatal provider errors (bad key, exhausted quota) raise
``FatalProviderError``. With a reply schema, an invalid reply is re-asked (the conversation plus
what was wrong) up to ``max_repairs`` times, every reply's usage and cost counted on the row, and
what stays invalid ends ``invalid``. It does not read input or write results.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from tenacity import RetryCallState

from batchllm import retry
from batchllm.budget import Budget, OverBudget
from batchllm.errors import FatalProviderError, ProviderError, RateLimited, Timeout
from batchllm.limits import Limiter
from batchllm.outcome import FAILED, INVALID, OK, Outcome, now_us
from batchllm.pricing import Price
from batchllm.providers.base import Adapter, Completion, HttpCall, Usage
from batchllm.providers.http import send
from batchllm.render import Request
from batchllm.stragglers import Stragglers
from batchllm.validate import Checked, OutputSchema

log = structlog.get_logger("batchllm")

#: output tokens reserved under TPM when the job sets no max_tokens
DEFAULT_OUTPUT_RESERVE = 256
#: how long everyone waits after a 429 that says nothing about when to come back
DEFAULT_429_PAUSE_S = 1.0


@dataclass(frozen=True, slots=True)
class Settings:
    max_attempts: int
    timeout_s: float
    max_repairs: int = 0
    resend_stragglers: bool = True


class Dispatcher:
    def __init__(
        self,
        adapter: Adapter,
        session: aiohttp.ClientSession,
        limiter: Limiter,
        price: Price,
        settings: Settings,
        run_id: str,
        schema: OutputSchema | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.adapter = adapter
        self.session = session
        self.limiter = limiter
        self.price = price
        self.settings = settings
        self.run_id = run_id
        self.schema = schema
        self.budget = budget or Budget(None, price)
        self.max_repairs = settings.max_repairs if schema is not None else 0
        #: 429s met by this run's requests (the limiter records how long they paused it)
        self.rate_limited = 0
        self.stragglers = Stragglers(settings.timeout_s, settings.resend_stragglers)

    async def process(self, request: Request, copied: dict[str, Any]) -> Outcome:
        """Send ``request`` with retries and repairs; an outcome unless the run must stop."""
        started = time.monotonic()
        tries = _Tries()
        try:
            first = await self._send(request, tries)
        except ProviderError as exc:
            return self._failed(request, copied, exc, tries.count)
        return await self._complete(request, copied, first, tries, started, first_paid=True)

    async def repair(self, request: Request, copied: dict[str, Any], first: Completion) -> Outcome:
        """Re-ask for a reply that came from elsewhere (a batch); only the re-asks are counted."""
        return await self._complete(
            request, copied, first, _Tries(), time.monotonic(), first_paid=False
        )

    async def _complete(
        self,
        request: Request,
        copied: dict[str, Any],
        first: Completion,
        tries: _Tries,
        started: float,
        *,
        first_paid: bool,
    ) -> Outcome:
        replies = [first]
        checked = self._check(first)
        while checked is not None and checked.value is None and len(replies) <= self.max_repairs:
            request = request.follow_up(replies[-1].text, checked.error or "")
            try:
                replies.append(await self._send(request, tries))
            except ProviderError as exc:
                checked = Checked(None, f"repair request failed: {exc}")
                break
            except OverBudget:
                checked = Checked(None, f"{checked.error}; not re-asked: the cost cap was reached")
                break
            checked = self._check(replies[-1])
        latency = (time.monotonic() - started) * 1000
        paid = replies if first_paid else replies[1:]
        return self._finished(request, copied, replies, paid, checked, latency, tries.count)

    async def _send(self, request: Request, tries: _Tries) -> Completion:
        call = self.adapter.build(request)
        only = self.settings.max_attempts == 1
        try:
            try:
                # Most requests succeed first time: the retry machinery is built on failure only.
                return await self._attempt(request, call, tries, last=only)
            except ProviderError as exc:
                if not retry.is_retryable(exc) or only:
                    raise
                wait = retry.wait_after(exc, 1)
                _log_retry_event(1, wait, exc)
                await asyncio.sleep(wait)
            remaining = self.settings.max_attempts - 1
            async for attempt in retry.policy(remaining, self._log_retry, already_failed=1):
                with attempt:
                    last = attempt.retry_state.attempt_number == remaining
                    completion = await self._attempt(request, call, tries, last=last)
        except ProviderError as exc:
            if exc.fatal:
                raise FatalProviderError(f"{exc.kind}: {exc}") from None
            raise
        return completion

    def _check(self, completion: Completion) -> Checked | None:
        if self.schema is None:
            return None
        return self.schema.check(completion.text, completion.finish_reason)

    async def _attempt(
        self, request: Request, call: HttpCall, tries: _Tries, *, last: bool
    ) -> Completion:
        output_reserve = request.max_tokens or DEFAULT_OUTPUT_RESERVE
        hold = await self.budget.reserve(request.est_input_tokens, output_reserve)
        cost = 0.0
        try:
            permit = await self.limiter.acquire(request.est_input_tokens + output_reserve)
            tries.count += 1
            used = request.est_input_tokens
            try:
                sent = time.monotonic()
                status, headers, body = await self._exchange(call, tries, last)
                self.limiter.observe(self.adapter.rate_limits(headers))
                completion = self.adapter.parse(status, headers, body)
                self.stragglers.replied(time.monotonic() - sent)
                used = completion.usage.input_tokens + completion.usage.output_tokens
                cost = self.price.cost(completion.usage)
                return completion
            except RateLimited as exc:
                self.rate_limited += 1
                self.limiter.pause(exc.retry_after_s or DEFAULT_429_PAUSE_S)
                raise
            finally:
                self.limiter.settle(permit, used)
        finally:
            self.budget.settle(hold, cost)

    async def _exchange(
        self, call: HttpCall, tries: _Tries, last: bool
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One HTTP exchange; at the end of a run, a straggler is given up (once a row, never
        on its last attempt) and raised as a ``Timeout``, which is retried at once."""
        watch = self.stragglers.watch(armed=not tries.resent and not last)
        try:
            async with watch:
                return await send(self.session, call, self.settings.timeout_s)
        except TimeoutError:
            tries.resent = True
            log.info("request.straggler_resent", waited_s=round(watch.waited_s, 3))
            raise Timeout(
                f"no reply after {watch.waited_s:.1f} s at the end of the run, far slower than "
                "the others: sent again"
            ) from None

    def _finished(
        self,
        request: Request,
        copied: dict[str, Any],
        replies: list[Completion],
        paid: list[Completion],
        checked: Checked | None,
        latency_ms: float,
        attempts: int,
    ) -> Outcome:
        last = replies[-1]
        usage = _total(reply.usage for reply in paid)
        valid = checked is None or checked.value is not None
        problem = None if checked is None or valid else checked
        return Outcome(
            row_key=request.row_key,
            request_key=request.request_key,
            input_hash=request.input_hash or None,
            run_id=self.run_id,
            status=OK if valid else INVALID,
            finished_at=now_us(),
            output=last.text,
            finish_reason=last.finish_reason,
            error_type=_problem_kind(problem),
            error=problem.error if problem is not None else None,
            attempts=attempts,
            repairs=len(replies) - 1,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            usage_estimated=usage.estimated,
            cost_usd=sum(self.price.cost(reply.usage) for reply in paid),
            repair_cost_usd=sum(self.price.cost(reply.usage) for reply in replies[1:]),
            latency_ms=round(latency_ms, 3),
            model=last.model or request.model,
            provider_request_id=last.request_id,
            copied=copied,
            fields=self.schema.fields(checked.value if checked else None) if self.schema else {},
        )

    def _failed(
        self, request: Request, copied: dict[str, Any], exc: ProviderError, attempts: int
    ) -> Outcome:
        return Outcome(
            row_key=request.row_key,
            request_key=request.request_key,
            input_hash=request.input_hash or None,
            run_id=self.run_id,
            status=FAILED,
            finished_at=now_us(),
            error_type=exc.kind,
            error=str(exc),
            attempts=attempts,
            model=request.model,
            copied=copied,
            fields=self.schema.fields(None) if self.schema else {},
        )

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


def _total(usages: Iterable[Usage]) -> Usage:
    """Usage summed over a row's replies (its first answer and any repairs)."""
    items = list(usages)
    return Usage(
        input_tokens=sum(u.input_tokens for u in items),
        output_tokens=sum(u.output_tokens for u in items),
        cached_tokens=sum(u.cached_tokens for u in items),
        cache_write_tokens=sum(u.cache_write_tokens for u in items),
        reasoning_tokens=sum(u.reasoning_tokens for u in items),
        estimated=any(u.estimated for u in items),
    )


def _problem_kind(problem: Checked | None) -> str | None:
    if problem is None:
        return None
    return "truncated" if problem.truncated else "invalid_output"
