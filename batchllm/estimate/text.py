"""The estimate as one readable screen."""

from __future__ import annotations

from batchllm.estimate.model import CACHE_MIN_TOKENS, Estimate
from batchllm.plan.text import plan_lines
from batchllm.progress import money


def estimate_text(e: Estimate) -> str:
    """One readable screen."""
    interval = f" (95% interval ±{e.interval:.1%})" if e.interval is not None else ""
    lines = [
        f"{e.job}: {e.rows:,} rows, {e.rows_to_do:,} to do, {e.requests_to_send:,} distinct "
        f"requests, ~{e.input_tokens:,} input tokens",
        f"  tokens {e.token_counter}",
        f"  pilot: {e.pilot_rows:,} rows sent, {money(e.pilot_cost_usd)} spent (kept: the run "
        "reuses them)"
        if e.pilot_rows
        else "  no pilot: expected = worst case",
        "",
        f"  expected cost   {money(e.expected_cost_usd)}{interval}{_tier(e)}",
        f"  range           {money(e.low_cost_usd)} to {money(e.high_cost_usd)}",
        f"  worst case      {_maybe(e.worst_case_cost_usd, 'no max_tokens: unbounded')}"
        " (every reply at max_tokens)",
        f"  batch mode      {_maybe(e.batch_expected_cost_usd, 'no batch price known')}",
        f"  prompt caching  {_maybe(e.cached_expected_cost_usd, _no_cache(e))}",
        f"  expected time   {_time(e.expected_seconds)}",
        f"  invalid rows    ~{e.expected_invalid_rows:,}; failed rows ~{e.expected_failed_rows:,}",
        f"  prices          {e.price_source}",
    ]
    if e.standard_cost_usd is not None:
        lines.insert(lines.index("") + 4, _refused(e))
    if e.plan is not None:
        lines += ["", *plan_lines(e.plan)]
    return "\n".join(lines)


def _tier(e: Estimate) -> str:
    return f" at the {e.service_tier} tier" if e.service_tier is not None else ""


def _refused(e: Estimate) -> str:
    """What flex costs at worst: every row refused, at the standard tier."""
    assert e.standard_cost_usd is not None
    return (
        f"  if flex refuses {money(e.standard_cost_usd)} (every row at the standard tier; a cost "
        "cap holds each row at this rate)"
    )


def _maybe(value: float | None, otherwise: str) -> str:
    return money(value) if value is not None else otherwise


def _no_cache(e: Estimate) -> str:
    prefix = f"~{e.shared_prefix_tokens:,} tokens"
    return f"no saving: the shared prefix is {prefix}, under {CACHE_MIN_TOKENS:,}"


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "unknown (no limits and no pilot)"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
