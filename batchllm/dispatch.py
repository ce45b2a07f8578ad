"""One request from admission to outcome: limiter, send, parse, retry, price.

``Dispatcher.process`` turns a ``Request`` into an ``Outcome``; row-level failures come back as
``failed`` outcomes, fatal provider errors (bad key, exhausted quota) raise
``FatalProviderError``. It does not read input or write results.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from tenacity import RetryCallState

from batchllm import retry
from batchllm.errors import FatalProviderError, ProviderError, RateLimited
from batchllm.limits import Limiter
from batchllm.outcome import FAILED, OK, Outcome
from batchllm.pricing import Price
from batchllm.providers.base import Adapter, Completion, HttpCall
from batchllm.providers.http import send
from batchllm.render import Request

log = structlog.get_logger("batchllm")

#: output tokens reserved under TPM when the job sets no max_tokens
DEFAULT_OUTPUT_RESERVE = 256
#: how long everyone waits after a 429 that says nothing about when to come back
DEFAULT_429_PAUSE_S = 1.0


@dataclass(frozen=True, slots=True)
class Settings:
    max_attempts: int
    timeout_s: float


class Dispatcher:
    def __init__(
        self,
        adapter: Adapter,
        session: aiohttp.ClientSession,
        limiter: Limiter,
        price: Price,
        settings: Settings,
        run_id: str,
    ) -> None:
        self.adapter = adapter
        self.session = session
        self.limiter = limiter
        self.price = price
        self.settings = settings
        self.run_id = run_id

    async def process(self, request: Request, copied: dict[str, Any]) -> Outcome:
        """Send ``request`` with retries; always returns an outcome unless the run must stop."""
        call = self.adapter.build(request)
        started = time.monotonic()
        attempts = 0
        try:
            async for attempt in retry.policy(self.settings.max_attempts, self._log_retry):
                with attempt:
                    attempts += 1
                    completion = await self._attempt(request, call)
        except ProviderError as exc:
            if exc.fatal:
                raise FatalProviderError(f"{exc.kind}: {exc}") from None
            return self._failed(request, copied, exc, attempts)
        latency = (time.monotonic() - started) * 1000
        return self._ok(request, copied, completion, attempts, latency)

    async def _attempt(self, request: Request, call: HttpCall) -> Completion:
        reserve = request.est_input_tokens + (request.max_tokens or DEFAULT_OUTPUT_RESERVE)
        permit = await self.limiter.acquire(reserve)
        used = request.est_input_tokens
        try:
            status, headers, body = await send(self.session, call, self.settings.timeout_s)
            self.limiter.observe(self.adapter.rate_limits(headers))
            completion = self.adapter.parse(status, headers, body)
            used = completion.usage.input_tokens + completion.usage.output_tokens
            return completion
        except RateLimited as exc:
            self.limiter.pause(exc.retry_after_s or DEFAULT_429_PAUSE_S)
            raise
        finally:
            self.limiter.settle(permit, used)

    def _ok(
        self,
        request: Request,
        copied: dict[str, Any],
        completion: Completion,
        attempts: int,
        latency_ms: float,
    ) -> Outcome:
        usage = completion.usage
        return Outcome(
            row_key=request.row_key,
            request_key=request.request_key,
            run_id=self.run_id,
            status=OK,
            finished_at=now_us(),
            output=completion.text,
            finish_reason=completion.finish_reason,
            attempts=attempts,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            usage_estimated=usage.estimated,
            cost_usd=self.price.cost(usage),
            latency_ms=round(latency_ms, 3),
            model=completion.model or request.model,
            provider_request_id=completion.request_id,
            copied=copied,
        )

    def _failed(
        self, request: Request, copied: dict[str, Any], exc: ProviderError, attempts: int
    ) -> Outcome:
        return Outcome(
            row_key=request.row_key,
            request_key=request.request_key,
            run_id=self.run_id,
            status=FAILED,
            finished_at=now_us(),
            error_type=exc.kind,
            error=str(exc),
            attempts=attempts,
            model=request.model,
            copied=copied,
        )

    @staticmethod
    def _log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.info(
            "request.retry",
            attempt=state.attempt_number,
            wait_s=round(wait, 3),
            error=getattr(exc, "kind", type(exc).__name__),
            status=getattr(exc, "status", None),
        )


def now_us() -> int:
    return time.time_ns() // 1000
