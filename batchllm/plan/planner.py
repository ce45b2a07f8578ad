"""The plan for a job with a deadline: which rows go to a batch and which online, and when rows
still in a batch must move online for the deadline to hold.

A pure function of what is known before sending (``Situation``: rows, the cost of all of them at
each tier, the online capacity, the batch times seen before, the budget and the clock), so it is
tested with a made-up clock and used as is by the benchmark's simulated nights. Watching the plan
during a run is ``batchllm.run.batch``'s; the screen is ``batchllm.plan.text``'s.

The batch is always worth trying when there is time: rows it finishes before the switch point are
kept at the batch price, and at the switch point the rest go online, where the capacity is known,
so the deadline holds whatever the batch does. The switch point leaves the online time for every
row, times ``safety``, plus ``reserve_s`` for cancelling and collecting.

OpenAI's flex tier (``flex``: the job asks for ``service_tier = "flex"``) sells online replies at
batch prices, slower (``FLEX_SLOWDOWN``) and sometimes refused. Rows sent online go at flex until
``standard_from``, the same margin before the deadline as the switch point; from then on only the
standard tier keeps the deadline. Rows a batch hands back at the switch point go at flex first
when the time left allows (``flex_until``: the batch answered some rows, or the switch came
early), and at the standard tier from the point that leaves time for all of them there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from batchllm.progress import money

#: how long a batch is taken to need before this job's own batches say otherwise
GUESS_BATCH_S = 3600.0
#: how much slower rows go at the flex tier than at the standard one
FLEX_SLOWDOWN = 2.0


@dataclass(frozen=True, slots=True)
class Limits:
    """What bounds the online rate: the limits (given or learned), concurrency, and the tokens
    and latency of a row."""

    rpm: int | None
    tpm: int | None
    concurrency: int
    tokens_per_row: float
    latency_s: float

    def rows_per_s(self) -> float:
        return rows_per_s(self.rpm, self.tpm, self.concurrency, self.tokens_per_row,
                          self.latency_s)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Situation:
    """What the plan is made from; costs are of every row at that tier, times epoch seconds."""

    rows: int
    online_usd: float
    batch_usd: float | None
    rows_per_s: float
    now: float
    deadline: float
    budget_usd: float | None = None
    #: how long this job's batches took before (None: no history, a fixed guess is used)
    batch_s: float | None = None
    safety: float = 1.5
    reserve_s: float = 60.0
    cheapest: bool = True
    #: every row at the flex tier (None: the provider has none, or it is not priced)
    flex_usd: float | None = None
    #: whether the job sends its online rows at the flex tier
    flex: bool = False
    #: where ``rows_per_s`` comes from, so a run can make it again from learned limits
    limits: Limits | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    rows: int
    batch_rows: int
    online_rows: int
    #: seconds to send every row online at the known capacity
    online_s: float
    #: when rows still in a batch move online (None: no batch)
    switch_at: float | None
    expected_usd: float
    #: if the batch returns nothing and every row moves online
    worst_usd: float
    expected_finish: float
    deadline: float
    batch_s: float
    batch_s_known: bool
    #: why the deadline cannot be kept (within the budget), or None
    problem: str | None
    #: what the plan risks without breaking the deadline (a late batch over the budget)
    note: str | None = None
    #: every row at the flex tier, and the rows the plan expects flex to answer
    flex_usd: float | None = None
    flex_rows: int = 0
    #: from when rows asking for flex go at the standard tier (None: no flex)
    standard_from: float | None = None
    #: every row at the batch price (None: no batch API, or not priced)
    batch_usd: float | None = None
    #: what the plan was made from
    situation: Situation | None = None

    @property
    def batch(self) -> bool:
        return self.switch_at is not None


def make_plan(s: Situation) -> Plan:
    """The cheapest plan that keeps the deadline, or the fastest one with its ``problem``."""
    return replace(_make(s), situation=s)


def _make(s: Situation) -> Plan:
    online_s = s.rows / s.rows_per_s if s.rows else 0.0
    window = s.deadline - s.now - online_s * s.safety - s.reserve_s
    batch_s = s.batch_s if s.batch_s is not None else GUESS_BATCH_S
    if s.batch_usd is None or not s.cheapest or window < s.reserve_s or s.rows == 0:
        return _online(s, online_s, window, batch_s)
    kept = min(window / batch_s, 1.0) if batch_s > 0 else 1.0
    expected = kept * s.batch_usd + (1 - kept) * s.online_usd
    finish = s.now + batch_s if kept >= 1.0 else s.now + window + (1 - kept) * online_s
    note = None
    if s.budget_usd is not None and s.online_usd > s.budget_usd:
        note = (f"a batch still out at the switch point would need up to "
                f"{money(s.online_usd)} online, over the {money(s.budget_usd)} budget")  # fmt: skip
    return Plan(s.rows, s.rows, 0, online_s, s.now + window, expected, s.online_usd, finish,
                s.deadline, batch_s, s.batch_s is not None, _over(expected, s.budget_usd),
                note, s.flex_usd, 0, s.now + window if s.flex else None, s.batch_usd)  # fmt: skip


def _online(s: Situation, online_s: float, window: float, batch_s: float) -> Plan:
    """Every row online: at flex until ``standard_from`` when the job asks for it."""
    late = s.now + online_s > s.deadline
    flex_rows, expected, finish = 0, s.online_usd, s.now + online_s
    if s.flex and s.flex_usd is not None and not late and s.rows:
        flex_rate = s.rows_per_s / FLEX_SLOWDOWN
        flex_rows = min(s.rows, int(max(window, 0.0) * flex_rate))
        share = flex_rows / s.rows
        expected = share * s.flex_usd + (1 - share) * s.online_usd
        finish = s.now + flex_rows / flex_rate + (s.rows - flex_rows) / s.rows_per_s
    problem = _late(online_s, s) if late else _over(expected, s.budget_usd)
    return Plan(s.rows, 0, s.rows, online_s, None, expected, s.online_usd, finish, s.deadline,
                batch_s, s.batch_s is not None, problem, None, s.flex_usd, flex_rows,
                s.now + max(window, 0.0) if s.flex else None, s.batch_usd)  # fmt: skip


def flex_until(s: Situation, rows: int, now: float) -> float | None:
    """From when ``rows`` rows sent online from ``now`` (handed back by a batch) must go at the
    standard tier for the deadline to hold, with the plan's margins; None when the time before
    then is too short for flex (under ``reserve_s``, or not one row at flex's slower rate)."""
    standard_from = s.deadline - rows / s.rows_per_s * s.safety - s.reserve_s
    window = standard_from - now
    if window < s.reserve_s or window * s.rows_per_s / FLEX_SLOWDOWN < 1:
        return None
    return standard_from


def rows_per_s(
    rpm: int | None, tpm: int | None, concurrency: int, tokens_per_row: float, latency_s: float
) -> float:
    """Rows a second online: the tightest of the request and token limits and the concurrency."""
    bounds = [concurrency / max(latency_s, 1e-3)]
    if rpm:
        bounds.append(rpm / 60)
    if tpm and tokens_per_row > 0:
        bounds.append(tpm / 60 / tokens_per_row)
    return min(bounds)


def _late(online_s: float, s: Situation) -> str:
    left = max(s.deadline - s.now, 0.0)
    return (
        f"the deadline cannot be met: {s.rows:,} rows need ~{_span(online_s)} online at "
        f"{s.rows_per_s:,.1f} rows/s, and {_span(left)} are left"
    )


def _over(cost: float, budget: float | None) -> str | None:
    if budget is None or cost <= budget:
        return None
    return (
        f"the deadline cannot be met within the budget: ~{money(cost)} expected, "
        f"{money(budget)} allowed"
    )


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
