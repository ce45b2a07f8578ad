"""The plan as lines of ``batchllm estimate --deadline``'s screen."""

from __future__ import annotations

from datetime import datetime

from batchllm.plan.planner import Plan
from batchllm.progress import money


def plan_lines(p: Plan) -> list[str]:
    """Tiers, expected and worst-case cost, switch point and expected finish."""
    lines = [f"  deadline        {_at(p.deadline)}", *_tiers(p)]
    if p.batch:
        took = (
            "what this job's batches took" if p.batch_s_known else "a guess: no batch returned yet"
        )
        lines += [
            f"  plan            {p.batch_rows:,} rows in a batch, online at the switch point",
            f"  switch point    {_at(p.switch_at)}: rows still in a batch move online "
            f"(~{_span(p.online_s)} online for every row)",
            f"  batch time      ~{_span(p.batch_s)} ({took})",
        ]
    elif p.standard_from is not None:
        lines += [
            f"  plan            {p.online_rows:,} rows online at flex, ~{p.flex_rows:,} expected "
            "answered there",
            f"  standard from   {_at(p.standard_from)}: rows flex refuses go at the standard tier",
        ]
    else:
        lines.append(f"  plan            {p.online_rows:,} rows online (~{_span(p.online_s)})")
    lines += [
        f"  expected cost   {money(p.expected_usd)}",
        f"  worst case      {money(p.worst_usd)} ({_worst(p)})",
        f"  expected finish {_at(p.expected_finish)}",
    ]
    if p.note is not None:
        lines.append(f"  note            {p.note}")
    if p.problem is not None:
        lines.append(f"  REFUSED         {p.problem}")
    return lines


def _worst(p: Plan) -> str:
    if p.standard_from is not None and not p.batch:
        return "flex refuses everything, every row at the standard tier"
    return "the batch returns nothing, every row online"


def _tiers(p: Plan) -> list[str]:
    """What every row costs at each tier there is, and whether flex is used."""
    if p.flex_usd is None:
        return []
    batch = f"batch {money(p.batch_usd)}, " if p.batch_usd is not None else ""
    used = "" if p.standard_from is not None else ' (unused: [model] service_tier = "flex")'
    return [f"  tiers           {batch}flex {money(p.flex_usd)}{used}, online {money(p.worst_usd)}"]


def _at(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
