"""The estimate's model: the pilot's measurements extrapolated to every row still to do.

Each to-do row's cost is modelled as its input (known from the scan, calibrated) plus a part the
pilot measures (output, repairs, failures); the interval comes from that part's spread over the
pilot and the calibration's own uncertainty. Batch and prompt-caching prices and the expected time
follow from the same figures. It sends nothing and reads nothing.

A job asking for OpenAI's flex tier (``service_tier = "flex"``) expects its rows at the flex price
(``expected_price``); flex may refuse any row, which then goes at the standard price, so the
estimate also gives that cost (``standard_cost_usd``: every row at the standard tier). The worst
case stays at the standard price, as does the run's cost cap, which holds each request's worst
case at the standard rate before sending it (``batchllm.budget``): the cap holds whatever flex
refuses.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import orjson

from batchllm.errors import PriceError
from batchllm.estimate.pilot import Pilot
from batchllm.estimate.scan import Scan
from batchllm.job import JobSpec
from batchllm.plan.planner import Plan
from batchllm.plan.setup import plan_for
from batchllm.pricing import Price, resolve_price, tier_price
from batchllm.providers.base import Usage
from batchllm.render import estimate_tokens

Z95 = 1.96
TARGET = 0.05
#: OpenAI caches prompt prefixes from this many tokens, in steps of 128
CACHE_MIN_TOKENS = 1024
CACHE_STEP = 128


@dataclass(frozen=True, slots=True)
class Estimate:
    job: str
    rows: int
    rows_to_do: int
    requests_to_send: int
    input_tokens: int
    token_counter: str
    pilot_rows: int
    pilot_cost_usd: float
    interval: float | None
    expected_cost_usd: float
    low_cost_usd: float
    high_cost_usd: float
    worst_case_cost_usd: float | None
    batch_expected_cost_usd: float | None
    cached_expected_cost_usd: float | None
    shared_prefix_tokens: int
    expected_seconds: float | None
    expected_invalid_rows: int
    expected_failed_rows: int
    price_source: str
    #: the plan that keeps the job's deadline (None: no deadline)
    plan: Plan | None = None
    #: the service tier the expected cost is priced at (None: the standard one)
    service_tier: str | None = None
    #: the expected cost if every row is served at the standard tier (flex refuses them all);
    #: None unless the job asks for flex
    standard_cost_usd: float | None = None

    def to_json(self) -> str:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2).decode()


def halfwidth(pilot: Pilot, scan: Scan, price: Price) -> float:
    rest = Z95 * pilot.rest_sd / math.sqrt(pilot.rows) * scan.to_send
    rate = price.rates(0).input_per_mtok / 1e6
    calibration = Z95 * pilot.calibration_se * scan.est_tokens * rate
    return math.hypot(rest, calibration)


def expected_cost(pilot: Pilot, scan: Scan, price: Price) -> float:
    """Input priced from the scan, plus the rest by a regression estimator on input size.

    The rest (output, repairs) often grows with the prompt; correcting the pilot's mean by how far
    its rows' input differs from the whole input's removes the luck of the draw.
    """
    rate = price.rates(0).input_per_mtok / 1e6
    gap = scan.est_tokens / scan.to_send - pilot.tokens_mean
    rest = pilot.rest_mean + pilot.rest_slope * gap
    return scan.est_tokens * pilot.calibration * rate + scan.to_send * rest


def relative(pilot: Pilot, scan: Scan, price: Price) -> float:
    expected = expected_cost(pilot, scan, price)
    return halfwidth(pilot, scan, price) / expected if expected > 0 else 0.0


def needed(pilot: Pilot, scan: Scan, price: Price) -> int:
    """Rows a pilot needs for the target interval, if the spread stays as measured."""
    ratio = relative(pilot, scan, price) / TARGET
    return math.ceil(pilot.rows * ratio * ratio)


def expected_price(job: JobSpec, standard: Price) -> Price:
    """The price a job's rows are expected at: flex's when the job asks for it."""
    if job.model.service_tier != "flex":
        return standard
    return tier_price(job, "flex", standard)


def extrapolate(job: JobSpec, price: Price, scan: Scan, pilot: Pilot | None) -> Estimate:
    """The estimate; ``price`` is the standard one (the tier's comes from ``expected_price``)."""
    n = scan.to_send
    calibration = pilot.calibration if pilot else 1.0
    input_tokens = round(scan.est_tokens * calibration)
    worst = _worst(job, price, input_tokens, n)
    tier = expected_price(job, price)
    if pilot is not None:
        expected = expected_cost(pilot, scan, tier)
        half = halfwidth(pilot, scan, tier)
        output_tokens = round(pilot.output_mean * n)
    else:
        at_tier = _worst(job, tier, input_tokens, n)
        expected = at_tier if at_tier is not None else 0.0
        half, output_tokens = 0.0, (job.model.max_tokens or 0) * n
    standard = _standard(expected, price, tier, input_tokens, output_tokens)
    prefix = _shared_prefix(job, calibration)
    return Estimate(
        job=job.name,
        rows=scan.rows,
        rows_to_do=scan.to_do,
        requests_to_send=n,
        input_tokens=input_tokens,
        token_counter=_counter(pilot),
        pilot_rows=pilot.rows if pilot else 0,
        pilot_cost_usd=pilot.cost_usd if pilot else 0.0,
        interval=half / expected if pilot and expected else None,
        expected_cost_usd=expected,
        low_cost_usd=max(expected - half, 0.0),
        high_cost_usd=expected + half,
        worst_case_cost_usd=worst,
        batch_expected_cost_usd=_batch(
            job,
            standard if standard is not None else expected,
            price,
            input_tokens,
            output_tokens,
        ),
        cached_expected_cost_usd=_cached(expected, tier, prefix, n),
        shared_prefix_tokens=prefix,
        expected_seconds=_seconds(job, n, input_tokens + output_tokens, pilot),
        expected_invalid_rows=round(scan.to_do * pilot.invalid_rate) if pilot else 0,
        expected_failed_rows=round(scan.to_do * pilot.failed_rate) if pilot else 0,
        price_source=price.source,
        plan=_plan(job, n, input_tokens, output_tokens if pilot else None, pilot),
        service_tier="flex" if tier is not price else None,
        standard_cost_usd=standard,
    )


def _standard(
    expected: float, standard: Price, tier: Price, input_tokens: int, output_tokens: int
) -> float | None:
    """``expected`` (at ``tier``) with every row at the standard price; None when the tier is
    the standard one. Rows the pilot saw refused already cost the standard price in
    ``expected``: scaled again, the figure errs high, never low."""
    if tier is standard:
        return None
    at_tier = tier.cost(Usage(input_tokens, output_tokens))
    at_standard = standard.cost(Usage(input_tokens, output_tokens))
    return expected * at_standard / at_tier if at_tier > 0 else expected


def _plan(
    job: JobSpec, rows: int, input_tokens: int, output_tokens: int | None, pilot: Pilot | None
) -> Plan | None:
    if job.plan.deadline is None:
        return None
    latency = pilot.latency_ms / 1000 if pilot is not None and pilot.latency_ms else None
    return plan_for(job, rows, input_tokens, output_tokens, latency_s=latency,
                    budget_usd=job.limits.max_cost_usd)  # fmt: skip


def _worst(job: JobSpec, price: Price, input_tokens: int, rows: int) -> float | None:
    cap = job.model.max_tokens
    if cap is None or rows == 0:
        return None if cap is None else 0.0
    per_row = Usage(input_tokens=input_tokens // rows, output_tokens=cap)
    return price.cost(per_row) * rows


def _batch(
    job: JobSpec, expected: float, price: Price, input_tokens: int, output_tokens: int
) -> float | None:
    try:
        batch = resolve_price(job, batch=True)
    except PriceError:
        return None
    standard = price.cost(Usage(input_tokens, output_tokens))
    discounted = batch.cost(Usage(input_tokens, output_tokens))
    if standard <= 0 or discounted >= standard:
        return None
    return expected * discounted / standard


def _shared_prefix(job: JobSpec, calibration: float) -> int:
    """Tokens every request starts with: a system prompt without columns, the template's head."""
    system = job.prompt.system or ""
    shared = system if "{" not in system else system.split("{", 1)[0]
    head = re.split(r"\{[{%#]", job.prompt.template, maxsplit=1)[0]
    if "{" not in system:
        shared += head
    return round(estimate_tokens(shared) * calibration)


def _cached(expected: float, price: Price, prefix: int, rows: int) -> float | None:
    if prefix < CACHE_MIN_TOKENS or rows < 2:
        return None
    cached = prefix // CACHE_STEP * CACHE_STEP
    rates = price.rates(0)
    saving = cached * (rates.input_per_mtok - rates.cached_input_per_mtok) / 1e6
    return max(expected - saving * (rows - 1), 0.0)


def _seconds(job: JobSpec, rows: int, tokens: int, pilot: Pilot | None) -> float | None:
    bounds = []
    if job.limits.rpm:
        bounds.append(rows / job.limits.rpm * 60)
    if job.limits.tpm:
        bounds.append(tokens / job.limits.tpm * 60)
    if pilot is not None and pilot.latency_ms is not None:
        bounds.append(rows * pilot.latency_ms / 1000 / job.limits.concurrency)
    return max(bounds) if bounds else None


def _counter(pilot: Pilot | None) -> str:
    if pilot is None:
        return "estimated at 4 bytes a token (no pilot to calibrate on)"
    return (
        f"estimated at 4 bytes a token, calibrated on {pilot.rows} pilot replies "
        f"(x{pilot.calibration:.3f})"
    )
