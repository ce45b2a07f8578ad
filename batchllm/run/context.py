"""The parts a run is assembled from, passed to whoever needs them as one frozen value.

``RunContext`` holds the run's seams (limiter, budget, outcome sink, clock) and the rest of what a
request needs (adapter, HTTP session, price, schema, settings, run id). ``Seams`` are the parts a
caller may supply instead of the in-process defaults. ``OutcomeSink`` is what a run needs of its
store. This module builds nothing: ``run.assemble`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import aiohttp

    from batchllm.budget import Budget
    from batchllm.limits import Clock, Limiter
    from batchllm.outcome import Outcome
    from batchllm.pricing import Price
    from batchllm.providers.base import Adapter
    from batchllm.source import Source
    from batchllm.validate import OutputSchema


class OutcomeSink(Protocol):
    """Where a run's outcomes go: each written durably before it counts, in one run's bracket."""

    def begin_run(self, run_id: str, entry: dict[str, Any], fingerprint: str) -> None: ...

    def write(self, outcome: Outcome) -> None: ...

    async def finish_run(self, entry: dict[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class Settings:
    """How one request is sent: attempts, timeout, schema repairs, straggler resends."""

    max_attempts: int
    timeout_s: float
    max_repairs: int = 0
    resend_stragglers: bool = True
    #: the longest single wait a provider's Retry-After can impose
    max_wait_s: float = 600.0


@dataclass(frozen=True, slots=True)
class Seams:
    """Parts to use instead of the in-process ones (another process's limiter, a fake clock)."""

    limiter: Limiter | None = None
    budget: Budget | None = None
    clock: Clock | None = None
    #: the input to read instead of the job's whole file (a shard's rows of it)
    source: Source | None = None


@dataclass(frozen=True, slots=True)
class RunContext:
    """Everything a run's requests go through; built once a run, shared by its parts."""

    run_id: str
    adapter: Adapter
    session: aiohttp.ClientSession
    limiter: Limiter
    budget: Budget
    sink: OutcomeSink
    clock: Clock
    price: Price
    settings: Settings
    schema: OutputSchema | None = None
    #: where the provider answers (the simulator's own address when it is simulated)
    base_url: str | None = None
    api_key: str | None = None
