"""The cost cap: the ``Budget`` seam and ``LocalBudget``, its in-process implementation.

``Budget`` is what a run needs of its cap: ``reserve`` a request's worst case before it is sent,
``settle`` it to the real cost, and read what was spent and whether the cap stopped admission. A
budget shared by several processes fits behind the same calls.

``LocalBudget``: reserve each request's worst case before it is sent, settle to the real cost.

A request is admitted only while spent + reserved + its own worst case stays within the cap, so
the run's spend never exceeds it, whatever the concurrency, retries or repairs. When only the
reservations of requests in flight stand in the way, it waits for them to settle (they usually
cost far less than their worst case); when what is already spent leaves no room for one more worst
case, admission stops for good. Each check and its reservation happen with no await between them,
so concurrent requests cannot both squeeze under the cap.

A request's worst case is ``max_tokens`` of output plus the most input it can be charged for. The
token estimate is about 4 bytes a token, but digit lists, hex ids, UUIDs and some scripts take 1
to 2 bytes a token, so the input is bounded by its length instead: at most one token a byte (4
tokens per estimated token; the estimate rounds each message up and adds its framing, which covers
a tokenizer's per-message tokens). The ratio of reported to estimated input tokens is learned from
every settled reply (the dispatcher writes the reported count on the ``Hold``); a provider that
counts more than the byte bound (a native reply schema counted as input, say) raises the bound for
the requests after it.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Protocol

from batchllm.errors import OverBudget as OverBudget  # lives in errors; importable here too
from batchllm.pricing import Price
from batchllm.providers.base import Usage

#: estimated tokens are about 4 bytes each, and no tokenizer makes more than one token a byte
BYTES_PER_ESTIMATED_TOKEN = 4
#: headroom over the highest reported/estimated ratio seen
LEARNED_MARGIN = 1.1


@dataclass(slots=True)
class Hold:
    """One request's reservation; settled once. The sender writes ``input_tokens``, what the
    provider reported, before settling, when a reply reported it."""

    usd: float
    settled: bool = False
    est_input_tokens: int = 0
    input_tokens: int | None = None


class Budget(Protocol):
    """The run's cost cap, shared by all its requests."""

    async def reserve(self, est_input_tokens: int, max_tokens: int) -> Hold:
        """Hold one request's worst case, waiting for holds in flight; else ``OverBudget``."""
        ...

    def settle(self, hold: Hold, cost_usd: float) -> None:
        """Release the hold and count what the request really cost."""
        ...

    @property
    def cap_usd(self) -> float | None: ...

    @property
    def spent_usd(self) -> float: ...

    @property
    def exhausted(self) -> bool:
        """Whether the cap has stopped admission for good."""
        ...


class LocalBudget:
    """The cost cap of one process; ``cap_usd=None`` admits everything."""

    def __init__(self, cap_usd: float | None, price: Price) -> None:
        self._cap_usd = cap_usd
        self._price = price
        self._spent_usd = 0.0
        self._reserved_usd = 0.0
        self._exhausted = False
        self._settled: asyncio.Event | None = None
        #: the highest ratio of reported to estimated input tokens seen so far
        self._ratio = 0.0

    @property
    def cap_usd(self) -> float | None:
        return self._cap_usd

    @property
    def spent_usd(self) -> float:
        return self._spent_usd

    @property
    def reserved_usd(self) -> float:
        """Worst cases held by requests in flight."""
        return self._reserved_usd

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    def worst_case(self, est_input_tokens: int, max_tokens: int) -> float:
        return self._price.cost(
            Usage(input_tokens=self.worst_input(est_input_tokens), output_tokens=max_tokens)
        )

    def worst_input(self, est_input_tokens: int) -> int:
        """The most input tokens a request estimated at ``est_input_tokens`` can be charged."""
        by_length = est_input_tokens * BYTES_PER_ESTIMATED_TOKEN
        learned = math.ceil(est_input_tokens * self._ratio * LEARNED_MARGIN)
        return max(by_length, learned)

    async def reserve(self, est_input_tokens: int, max_tokens: int) -> Hold:
        if self._cap_usd is None:
            return Hold(0.0)
        usd = self.worst_case(est_input_tokens, max_tokens)
        while self._spent_usd + self._reserved_usd + usd > self._cap_usd:
            if self._exhausted or self._spent_usd + usd > self._cap_usd:
                self._exhausted = True
                raise OverBudget
            if self._settled is None:
                self._settled = asyncio.Event()
            await self._settled.wait()
        self._reserved_usd += usd
        return Hold(usd, est_input_tokens=est_input_tokens)

    def settle(self, hold: Hold, cost_usd: float) -> None:
        if hold.settled:
            return
        hold.settled = True
        self._reserved_usd -= hold.usd
        self._spent_usd += cost_usd
        if hold.input_tokens is not None and hold.est_input_tokens > 0:
            self._ratio = max(self._ratio, hold.input_tokens / hold.est_input_tokens)
        if self._settled is not None:
            self._settled.set()
            self._settled = None
