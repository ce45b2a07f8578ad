"""The ``deadline`` scenario: simulated nights of a job with a 3-hour deadline.

Each night is a discrete-event simulation of one run (time is not waited for, it is computed):
the batch's time is drawn by the simulator's own draw (``batchllm.simulate.batches_time``: 80%
in under an hour, 15% in 2-6 hours, 5% stalled until they expire), the plan is made by the
planner itself (``batchllm.plan.planner.make_plan``) with the batch times of earlier nights from
the run directory's history (``batchllm.plan.history.History``), and the run's moves follow batch
mode's rules: polls on its backoff schedule, at the switch point a cancel that keeps what the
batch finished (the simulator's share of the elapsed time), the rest online at a rate drawn a
little below the planned one. Against it: always online, always batch, and an oracle that knows
each night's batch time and keeps the batch until the latest moment that still meets the
deadline. It judges nothing: ``goals`` says what the nights come to.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from batchllm.bench.goals import Goal, num
from batchllm.job.spec import BatchSpec, SimulateSpec
from batchllm.plan.history import History
from batchllm.plan.planner import Plan, Situation, make_plan
from batchllm.simulate.batches_time import batch_time
from batchllm.simulate.config import unit

HOUR = 3600.0
ROWS = 50_000
DEADLINE_S = 3 * HOUR
#: online alone needs 45 minutes at the planned rate
PLANNED_ROWS_PER_S = ROWS / (45 * 60)
#: gpt-4o-mini's list prices for 500 input and 100 output tokens a row; batch is half
ONLINE_USD = ROWS * (500 * 0.15 + 100 * 0.60) / 1e6
BATCH_USD = ONLINE_USD / 2
NIGHTS = {False: 100, True: 100}
#: the nights' batch times (the simulator's settings, in seconds)
TIMES = SimulateSpec(
    batch_delay_s=HOUR, batch_delay_spread=0.9, batch_late_rate=0.15,
    batch_late_min_s=2 * HOUR, batch_late_max_s=6 * HOUR, batch_stall_rate=0.05,
    batch_window_s=24 * HOUR,
)  # fmt: skip
#: a cancel takes up to this long to end a batch (the provider's "cancelling")
CANCEL_MAX_S = 600.0
_RATE_SALT, _CANCEL_SALT = 31, 32


@dataclass(frozen=True, slots=True)
class Night:
    policy: str
    night: int
    cost_usd: float
    finish_s: float

    @property
    def met(self) -> bool:
        return self.finish_s <= DEADLINE_S


@dataclass(frozen=True, slots=True)
class _Draw:
    batch_s: float
    stalled: bool
    rate: float
    cancel_s: float


def run_nights(quick: bool) -> list[Night]:
    """Every policy over the same drawn nights."""
    nights: list[Night] = []
    with tempfile.TemporaryDirectory(prefix="batchllm-deadline-") as work:
        history = History(Path(work))
        for n in range(NIGHTS[quick]):
            draw = _draw(n)
            planned = _planned(n, draw, history)
            nights += [planned, _online(n, draw), _batch_only(n, draw), _oracle(n, draw)]
    return nights


def _draw(n: int) -> _Draw:
    time = batch_time(replace(TIMES, seed=n), 0)
    rate = PLANNED_ROWS_PER_S * (0.9 + 0.1 * unit(n, 0, _RATE_SALT))
    return _Draw(time.seconds, time.stalled, rate, CANCEL_MAX_S * unit(n, 0, _CANCEL_SALT))


def _planned(n: int, draw: _Draw, history: History) -> Night:
    plan = make_plan(Situation(
        ROWS, ONLINE_USD, BATCH_USD, PLANNED_ROWS_PER_S, 0.0, DEADLINE_S,
        batch_s=history.typical_s("openai", ROWS),
    ))  # fmt: skip
    if plan.switch_at is None:
        return Night("plan", n, ONLINE_USD, ROWS / draw.rate)
    seen = _seen(draw.batch_s)
    if not draw.stalled and seen <= plan.switch_at:
        history.add("openai", ROWS, seen, "completed")
        return Night("plan", n, BATCH_USD, seen)
    return _switched("plan", n, draw, plan.switch_at, history, plan)


def _switched(
    policy: str, n: int, draw: _Draw, at: float, history: History | None, plan: Plan | None
) -> Night:
    """Cancelled at ``at``: what the batch finished is kept, the rest goes online."""
    kept = 0 if draw.stalled else math.floor(ROWS * min(at / draw.batch_s, 1.0))
    ended = at + draw.cancel_s
    if history is not None:
        history.add("openai", ROWS, ended, "cancelled")
    cost = kept * BATCH_USD / ROWS + (ROWS - kept) * ONLINE_USD / ROWS
    return Night(policy, n, cost, ended + (ROWS - kept) / draw.rate)


def _online(n: int, draw: _Draw) -> Night:
    return Night("always online", n, ONLINE_USD, ROWS / draw.rate)


def _batch_only(n: int, draw: _Draw) -> Night:
    """Batch and wait: a stalled batch expires, and its rows go in a second batch."""
    finish = _seen(draw.batch_s) + (_seen(TIMES.batch_delay_s) if draw.stalled else 0.0)
    return Night("always batch", n, BATCH_USD, finish)


def _oracle(n: int, draw: _Draw) -> Night:
    """Knowing the batch time: the batch if it is back in time, else the latest switch."""
    if not draw.stalled and draw.batch_s <= DEADLINE_S:
        return Night("oracle", n, BATCH_USD, draw.batch_s)
    best = Night("oracle", n, ONLINE_USD, ROWS / draw.rate)
    for minute in range(int(DEADLINE_S // 60)):
        night = _switched("oracle", n, draw, minute * 60.0, None, None)
        if night.met and night.cost_usd < best.cost_usd:
            best = night
    return best


def _seen(seconds: float) -> float:
    """When batch mode's polls (30 s, then x1.5 up to 300 s) see a batch that ended then."""
    spec, at, wait = BatchSpec(), 0.0, BatchSpec().poll_s
    while at < seconds:
        at += wait
        wait = min(wait * 1.5, spec.max_poll_s)
    return at


def deadline_goals(nights: Sequence[Night]) -> list[Goal]:
    planned = [x for x in nights if x.policy == "plan"]
    oracle = [x for x in nights if x.policy == "oracle"]
    met = sum(x.met for x in planned)
    ratio = _mean(planned, _cost) / _mean(oracle, _cost)
    return [
        Goal("deadline", f"deadline met in >= 99 of {len(planned)} nights", str(met), met >= 99),
        Goal("deadline", "mean cost <= 1.15 x the oracle's", num(ratio, 3), ratio <= 1.15),
    ]


def deadline_table(nights: Sequence[Night]) -> str:
    """Cost and finish time by policy: mean and percentiles, and nights that met the deadline."""
    lines = [f"{'policy':<14} {'met':>7} {'cost mean':>10} {'p50':>8} {'p90':>8} {'max':>8}"
             f" {'finish p50':>11} {'p90':>8} {'p99':>8} {'max':>8}"]  # fmt: skip
    for policy in ("plan", "oracle", "always online", "always batch"):
        mine = [x for x in nights if x.policy == policy]
        costs = sorted(x.cost_usd for x in mine)
        hours = sorted(x.finish_s / HOUR for x in mine)
        lines.append(
            f"{policy:<14} {sum(x.met for x in mine):>3}/{len(mine):<3} "
            f"{_mean(mine, _cost):>10.2f} {_q(costs, 0.5):>8.2f} {_q(costs, 0.9):>8.2f} "
            f"{costs[-1]:>8.2f} {_q(hours, 0.5):>10.2f}h {_q(hours, 0.9):>7.2f}h "
            f"{_q(hours, 0.99):>7.2f}h {hours[-1]:>7.2f}h"
        )
    return "\n".join(lines)


def _cost(night: Night) -> float:
    return night.cost_usd


def _mean(nights: Sequence[Night], of: Callable[[Night], float]) -> float:
    return statistics.fmean(of(x) for x in nights)


def _q(values: Sequence[float], share: float) -> float:
    return values[min(int(share * len(values)), len(values) - 1)]
