"""The run record: one ``RunRecord`` per run, the single description of what a run did.

It is written to the manifest (``as_entry``) when the run begins and when it ends, read back for
the ``runs`` view of a query (``arrow_schema`` derives that view's columns from the fields), and
the ``RunSummary`` that ``run_job`` returns is built from it. The live counts during a run are
``tally.Tally``'s; this module only takes a snapshot of them.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from batchllm._version import __version__
from batchllm.tally import RunSummary, Tally

#: digits kept in the manifest, per field
_ROUNDED = {"cost_usd": 8, "rate_limit_wait_s": 3}
_ARROW = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run as the manifest and the ``runs`` view hold it (fields in the view's order)."""

    run_id: str
    kind: str
    status: str
    started_at: str
    ended_at: str | None
    rows: int
    reused: int
    sent: int
    ok: int
    failed: int
    invalid: int
    cost_usd: float
    rate_limited: int
    rate_limit_wait_s: float
    stragglers_resent: int
    limit: int | None
    price_source: str
    batchllm_version: str = __version__
    #: the run's place in its directory's history (the store numbers runs; never the clock)
    run_number: int = 0
    #: reused rows whose result, from an earlier run, is failed or invalid
    reused_failed: int = 0
    #: reused rows of the input's unchanged prefix, counted without being read
    prefix_rows: int = 0

    def as_entry(self) -> dict[str, Any]:
        """The manifest's entry for this run."""
        entry = dataclasses.asdict(self)
        for name, digits in _ROUNDED.items():
            entry[name] = round(entry[name], digits)
        return entry

    def summary(self, job: str, run_dir: str, tally: Tally) -> RunSummary:
        """What ``run_job`` returns: this record plus the token counts and the wall time."""
        return RunSummary(
            job=job,
            run_id=self.run_id,
            run_dir=run_dir,
            status=self.status,
            rows=self.rows,
            reused=self.reused,
            sent=self.sent,
            ok=self.ok,
            failed=self.failed,
            invalid=self.invalid,
            input_tokens=tally.input_tokens,
            output_tokens=tally.output_tokens,
            cached_tokens=tally.cached_tokens,
            cost_usd=self.cost_usd,
            wall_s=time.monotonic() - tally.started,
            price_source=self.price_source,
            reused_failed=self.reused_failed,
        )

    @classmethod
    def arrow_schema(cls) -> pa.Schema:
        """The ``runs`` view's columns and types, from the fields."""
        return pa.schema([pa.field(f.name, _arrow_type(f.type)) for f in dataclasses.fields(cls)])


@dataclass(frozen=True, slots=True)
class Counters:
    """What the run's parts counted that the record keeps (429s, pause time, resends)."""

    rate_limited: int = 0
    rate_limit_wait_s: float = 0.0
    stragglers_resent: int = 0


def record_of(
    run_id: str,
    kind: str,
    status: str,
    tally: Tally,
    counters: Counters,
    *,
    limit: int | None,
    price_source: str,
) -> RunRecord:
    """The record of a run as its tally stands."""
    return RunRecord(
        run_id=run_id,
        kind=kind,
        status=status,
        started_at=_iso(tally.started),
        ended_at=None if status == "running" else datetime.now(UTC).isoformat(),
        rows=tally.rows,
        reused=tally.reused,
        sent=tally.sent,
        ok=tally.ok,
        failed=tally.failed,
        invalid=tally.invalid,
        cost_usd=tally.cost_usd,
        rate_limited=counters.rate_limited,
        rate_limit_wait_s=counters.rate_limit_wait_s,
        stragglers_resent=counters.stragglers_resent,
        limit=limit,
        price_source=price_source,
        reused_failed=tally.reused_failed,
        prefix_rows=tally.prefix_rows,
    )


def _arrow_type(annotation: object) -> pa.DataType:
    """``int``, ``float``, ``str`` (or ``X | None``) as written in the class body."""
    return _ARROW[str(annotation).split(" | ")[0]]


def _iso(monotonic_start: float) -> str:
    started = time.time() - (time.monotonic() - monotonic_start)
    return datetime.fromtimestamp(started, UTC).isoformat()
