"""The cost cap: reserve each request's worst case before it is sent, settle to the real cost.

A request is admitted only while spent + reserved + its own worst case stays within the cap, so
the run's spend never exceeds it, whatever the concurrency, retries or repairs. When only the
reservations of requests in flight stand in the way, it waits for them to settle (they usually
cost far less than their worst case); when what is already spent leaves no room for one more worst
case, admission stops for good. A request's worst case is its input (estimated on the high side)
plus ``max_tokens`` of output at the model's prices. Each check and its reservation happen with no
await between them, so concurrent requests cannot both squeeze under the cap.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from batchllm.errors import OverBudget as OverBudget  # lives in errors; importable here too
from batchllm.pricing import Price
from batchllm.providers.base import Usage

#: the token estimate is about 4 bytes a token; real tokenizers can need more tokens than that
WORST_INPUT_FACTOR = 1.5
WORST_INPUT_EXTRA = 16


@dataclass(slots=True)
class Hold:
    """One request's reservation; settled once."""

    usd: float
    settled: bool = False


class Budget:
    def __init__(self, cap_usd: float | None, price: Price) -> None:
        self.cap_usd = cap_usd
        self.price = price
        self.spent_usd = 0.0
        self.reserved_usd = 0.0
        self.exhausted = False
        self._settled: asyncio.Event | None = None

    def worst_case(self, est_input_tokens: int, max_tokens: int) -> float:
        input_tokens = int(est_input_tokens * WORST_INPUT_FACTOR) + WORST_INPUT_EXTRA
        return self.price.cost(Usage(input_tokens=input_tokens, output_tokens=max_tokens))

    async def reserve(self, est_input_tokens: int, max_tokens: int) -> Hold:
        """Hold the worst case of one request, waiting for holds in flight; else ``OverBudget``."""
        if self.cap_usd is None:
            return Hold(0.0)
        usd = self.worst_case(est_input_tokens, max_tokens)
        while self.spent_usd + self.reserved_usd + usd > self.cap_usd:
            if self.exhausted or self.spent_usd + usd > self.cap_usd:
                self.exhausted = True
                raise OverBudget
            if self._settled is None:
                self._settled = asyncio.Event()
            await self._settled.wait()
        self.reserved_usd += usd
        return Hold(usd)

    def settle(self, hold: Hold, cost_usd: float) -> None:
        """Release the hold and count what the request really cost."""
        if hold.settled:
            return
        hold.settled = True
        self.reserved_usd -= hold.usd
        self.spent_usd += cost_usd
        if self._settled is not None:
            self._settled.set()
            self._settled = None
