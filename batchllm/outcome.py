"""What became of one row: the ``Outcome`` value, the results table's columns, and the one place
outcomes are built from replies and errors (``Outcomes``), for online and batch runs alike.

A new result column is a field of ``Outcome``, an entry of ``COLUMNS``, and its value set here.
It does not send requests, check replies or store anything.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pyarrow as pa

from batchllm.providers.base import Usage

if TYPE_CHECKING:
    from batchllm.pricing import Price
    from batchllm.providers.base import Completion
    from batchllm.render import Request
    from batchllm.validate import Checked, OutputSchema

OK = "ok"
FAILED = "failed"
INVALID = "invalid"
TERMINAL = frozenset({OK, FAILED, INVALID})

#: the results' own columns, in order; copied input columns and typed output fields follow
#: ``row_key``
COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("row_key", pa.string()),
    ("request_key", pa.string()),
    ("input_hash", pa.string()),
    ("run_id", pa.string()),
    ("status", pa.string()),
    ("output", pa.string()),
    ("finish_reason", pa.string()),
    ("error_type", pa.string()),
    ("error", pa.string()),
    ("attempts", pa.int32()),
    ("repairs", pa.int32()),
    ("input_tokens", pa.int64()),
    ("output_tokens", pa.int64()),
    ("cached_tokens", pa.int64()),
    ("cache_write_tokens", pa.int64()),
    ("reasoning_tokens", pa.int64()),
    ("usage_estimated", pa.bool_()),
    ("cost_usd", pa.float64()),
    ("repair_cost_usd", pa.float64()),
    ("latency_ms", pa.float64()),
    ("model", pa.string()),
    ("provider_request_id", pa.string()),
    ("service_tier", pa.string()),
    ("finished_at", pa.timestamp("us", tz="UTC")),
)
COLUMN_NAMES = frozenset(name for name, _ in COLUMNS)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One result row. ``finished_at`` is microseconds since the epoch (UTC)."""

    row_key: str
    request_key: str
    run_id: str
    status: str
    finished_at: int
    input_hash: str | None = None
    output: str | None = None
    finish_reason: str | None = None
    error_type: str | None = None
    error: str | None = None
    attempts: int = 0
    repairs: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    usage_estimated: bool = False
    cost_usd: float = 0.0
    repair_cost_usd: float = 0.0
    latency_ms: float | None = None
    model: str | None = None
    provider_request_id: str | None = None
    #: the tier the provider says it served the answer at (None: it did not say)
    service_tier: str | None = None
    copied: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        row = {name: getattr(self, name) for name, _ in COLUMNS}
        row.update(self.copied)
        row.update(self.fields)
        return row


def now_us() -> int:
    """``finished_at``'s unit: microseconds since the epoch."""
    return time.time_ns() // 1000


def results_schema(
    copied: list[tuple[str, pa.DataType]], fields: list[tuple[str, pa.DataType]]
) -> pa.Schema:
    """The results' schema: own columns, copied input columns, typed output fields."""
    own = [pa.field(name, kind) for name, kind in COLUMNS]
    extra = [pa.field(name, kind) for name, kind in [*copied, *fields]]
    return pa.schema([own[0], *extra, *own[1:]])


#: the distinct requests of a run whose outcomes are kept at hand for identical ones that follow;
#: older ones are found in the run directory's done index (``batchllm.index``) and read back
RECENT_REQUESTS = 10_000

T = TypeVar("T")


class RecentRequests(Generic[T]):
    """The last ``RECENT_REQUESTS`` distinct requests of a run, each with what an identical
    request coming later reuses (its outcome, or where to find it); the oldest goes first. A cache
    in front of the done index, which knows every answered request of every run."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: OrderedDict[str, T] = OrderedDict()

    def __contains__(self, request_key: object) -> bool:
        return request_key in self._items

    def get(self, request_key: str) -> T | None:
        return self._items.get(request_key)

    def put(self, request_key: str, value: T) -> None:
        self._items[request_key] = value
        self._items.move_to_end(request_key)
        if len(self._items) > RECENT_REQUESTS:
            self._items.popitem(last=False)

    def drop(self, request_key: str) -> None:
        self._items.pop(request_key, None)


def stored_outcome(row: dict[str, Any], fields: Iterable[str]) -> Outcome:
    """An outcome as a part stores it (``fields``: the typed output fields to keep)."""
    finished = row.get("finished_at")
    own: dict[str, Any] = {name: row.get(name) for name in COLUMN_NAMES if name != "finished_at"}
    return Outcome(
        **own,
        finished_at=int(finished.timestamp() * 1e6) if finished is not None else now_us(),
        fields={name: row.get(name) for name in fields},
    )


def shared_outcome(earlier: Outcome, request: Request, copied: dict[str, Any]) -> Outcome:
    """The outcome of an identical request made for another row: same answer, no new cost."""
    return replace(
        earlier,
        row_key=request.row_key,
        input_hash=request.input_hash or None,
        copied=copied,
        repair_cost_usd=0.0,
        attempts=0,
        repairs=0,
        input_tokens=0,
        output_tokens=0,
        cached_tokens=0,
        cache_write_tokens=0,
        reasoning_tokens=0,
        cost_usd=0.0,
        finished_at=now_us(),
    )


def row_failure(
    run_id: str, key: str, copied: dict[str, Any], error: str, kind: str, digest: str | None = None
) -> Outcome:
    """A row that was never sent: its input or its prompt could not be used."""
    return Outcome(
        row_key=key,
        request_key="",
        input_hash=digest,
        run_id=run_id,
        status=FAILED,
        finished_at=now_us(),
        error_type=kind,
        error=error,
        copied=copied,
    )


def total_usage(usages: Iterable[Usage]) -> Usage:
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


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Builds a run's outcomes: replies priced at ``price`` (at the tier each was served at),
    typed by ``schema``."""

    run_id: str
    price: Price
    schema: OutputSchema | None = None

    def answered(
        self,
        request: Request,
        copied: dict[str, Any],
        replies: Sequence[Completion],
        checked: Checked | None,
        *,
        attempts: int,
        latency_ms: float | None = None,
        first_cost: float | None = None,
        paid: Sequence[Usage] = (),
    ) -> Outcome:
        """A row that got replies (its answer, then any repairs); ``checked``: the last reply
        against the schema. ``first_cost``: what the first reply cost when it was priced
        elsewhere (a batch reply repaired online). ``paid``: the usage of unusable replies the
        provider charged for on the way (bad replies), counted in the row's tokens and cost."""
        last = replies[-1]
        usage = total_usage([*(reply.usage for reply in replies), *paid])
        costs = [self.price.served_as(reply.service_tier).cost(reply.usage) for reply in replies]
        if first_cost is not None:
            costs[0] = first_cost
        costs[0] += sum(self.price.cost(wasted) for wasted in paid)
        problem = checked if checked is not None and checked.value is None else None
        return Outcome(
            row_key=request.row_key,
            request_key=request.request_key,
            input_hash=request.input_hash or None,
            run_id=self.run_id,
            status=OK if problem is None else INVALID,
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
            cost_usd=sum(costs),
            repair_cost_usd=sum(costs[1:]),
            latency_ms=None if latency_ms is None else round(latency_ms, 3),
            model=last.model or request.model,
            provider_request_id=last.request_id,
            service_tier=last.service_tier,
            copied=copied,
            fields=self._fields(checked),
        )

    def failed(
        self,
        request: Request,
        copied: dict[str, Any],
        error: str,
        kind: str,
        attempts: int,
        *,
        paid: Sequence[Usage] = (),
        output: str | None = None,
    ) -> Outcome:
        """A row whose request got no usable reply; ``paid``: the usage of replies the provider
        charged for all the same, counted in its tokens and cost; ``output``: the text of a
        reply in hand when the row failed after it came."""
        usage = total_usage(paid)
        return Outcome(
            row_key=request.row_key,
            request_key=request.request_key,
            input_hash=request.input_hash or None,
            run_id=self.run_id,
            status=FAILED,
            finished_at=now_us(),
            error_type=kind,
            error=error,
            output=output,
            attempts=attempts,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            usage_estimated=usage.estimated,
            cost_usd=sum(self.price.cost(one) for one in paid),
            model=request.model,
            copied=copied,
            fields=self.schema.fields(None) if self.schema else {},
        )

    def check(self, reply: Completion) -> Checked | None:
        """The reply against the schema; None without one."""
        if self.schema is None:
            return None
        return self.schema.check(reply.text, reply.finish_reason)

    def _fields(self, checked: Checked | None) -> dict[str, Any]:
        if self.schema is None:
            return {}
        return self.schema.fields(checked.value if checked else None)


def _problem_kind(problem: Checked | None) -> str | None:
    if problem is None:
        return None
    return "truncated" if problem.truncated else "invalid_output"
