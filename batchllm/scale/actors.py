"""The one Ray actor of a sharded run: its shared limits and cost cap, and the word to stop.

``RunActor`` holds the run's ``LeaseBook`` (every shard leases its RPM, TPM and cost from it)
and tells the shards to stop when the driver is told to. It lives in a module of its own that
imports only Ray and the book, so the worker that hosts it loads neither the run engine nor the
rest of batchllm; one actor, not one for the limits and one for stopping, is one worker process
fewer. It does not start Ray or run shards (``ray_backend``).
"""

from __future__ import annotations

import asyncio

import ray

from batchllm.scale.book import BudgetLease, Lease, LeaseBook


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class RunActor:
    """The run's ``LeaseBook`` serving every shard, and the stop every shard waits on
    (``stopped`` returns once the driver calls ``stop``). Every method is a coroutine with no
    await inside the book's calls, so they run one at a time on the actor's event loop."""

    def __init__(self, rpm: int | None, tpm: int | None, cap_usd: float | None) -> None:
        self.book = LeaseBook(rpm, tpm, cap_usd)
        self._stop = asyncio.Event()

    async def lease(self, requests: tuple[float, float], tokens: tuple[float, float]) -> Lease:
        return self.book.lease(requests, tokens)

    async def pause(self, seconds: float, rate_limited: bool) -> None:
        self.book.pause(seconds, rate_limited=rate_limited)

    async def follow(self, rpm: int | None, tpm: int | None) -> None:
        self.book.follow(rpm, tpm)

    async def start_shard(self, shard: int) -> int:
        return self.book.start_shard(shard)

    async def budget(self, shard: int, need: float, want: float, spent: float) -> BudgetLease:
        return self.book.budget(shard, need, want, spent)

    async def give_back(self, shard: int, usd: float, spent: float) -> None:
        self.book.give_back(shard, usd, spent)

    async def stats(self) -> dict[str, float]:
        return {
            "leases": self.book.leases,
            "rate_limited": self.book.rate_limited,
            "spent_usd": self.book.spent_usd,
        }

    async def stop(self) -> None:
        self._stop.set()

    async def stopped(self) -> None:
        await self._stop.wait()


__all__ = ["RunActor"]
