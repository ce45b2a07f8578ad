"""What a run is asked to do, what it has done so far, and what it did.

``RunOptions`` come from the command line or the Python API; the ``Tally`` is updated as outcomes
are recorded (the progress line reads it); the ``RunSummary`` is what ``run_job`` returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from batchllm.outcome import INVALID, OK, Outcome


@dataclass(frozen=True, slots=True)
class RunOptions:
    limit: int | None = None
    fresh: bool = False
    retry_failed: bool = False
    #: a cost cap for this run, overriding ``[limits] max_cost_usd``
    max_cost_usd: float | None = None
    #: these rows instead of the input file (the estimate's pilot sample, a shard's rows): dicts
    #: or ``source.InputRow``s
    rows: Iterable[Any] | None = None
    #: recorded in the manifest: "run", or "pilot" for an estimate's sample
    kind: str = "run"
    #: the run's id (default: its start time); a sharded run's shards take the driver's
    run_id: str | None = None


@dataclass(slots=True)
class Tally:
    """Counts of the run so far (mutable; read by the progress display)."""

    rows: int = 0
    reused: int = 0
    #: reused rows whose result (from an earlier run) is failed or invalid
    reused_failed: int = 0
    sent: int = 0
    ok: int = 0
    failed: int = 0
    invalid: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    in_batch: int = 0
    #: rows of the input's unchanged prefix, done and not read (``batchllm.prefix``)
    prefix_rows: int = 0
    total: int | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self.ok + self.failed + self.invalid

    def add(self, outcome: Outcome) -> None:
        if outcome.status == OK:
            self.ok += 1
        elif outcome.status == INVALID:
            self.invalid += 1
        else:
            self.failed += 1
        self.input_tokens += outcome.input_tokens
        self.output_tokens += outcome.output_tokens
        self.cached_tokens += outcome.cached_tokens
        self.cost_usd += outcome.cost_usd


@dataclass(frozen=True, slots=True)
class RunSummary:
    job: str
    run_id: str
    run_dir: str
    status: str
    rows: int
    reused: int
    sent: int
    ok: int
    failed: int
    invalid: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float
    wall_s: float
    price_source: str
    #: rows done in an earlier run whose result is failed or invalid (``--retry-failed``)
    reused_failed: int = 0

    @property
    def unresolved(self) -> int:
        """Rows of the input whose result is failed or invalid: this run's and earlier ones'."""
        return self.failed + self.invalid + self.reused_failed

    @property
    def failure_rate(self) -> float:
        """Share of the input's rows with a result whose result is failed or invalid, counting
        rows done in earlier runs (a re-run does not hide earlier failures)."""
        finished = self.ok + self.failed + self.invalid + self.reused
        return self.unresolved / finished if finished else 0.0


ProgressHook = Callable[[Tally], None]
