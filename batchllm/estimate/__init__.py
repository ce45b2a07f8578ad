"""``batchllm estimate``: what a job will cost and how long it will take, before committing.

Three steps. A scan streams the whole input, renders every row, skips rows already done in the
run directory, and counts rows and input tokens (estimated at ~4 bytes a token) while keeping a
uniform random sample of rows. A pilot sends sample rows through the real provider, as a run of
the job whose results are kept (the real run reuses them), growing the sample until the 95%
interval of the expected cost is within ±5%, or the sample or the pilot's spend cap runs out. The
extrapolation calibrates the token count on the pilot's real usage and prices the rest.

Each to-do row's cost is modelled as its input (known from the scan, calibrated) plus a part the
pilot measures (output, repairs, failures); the interval comes from that part's spread over the
pilot and the calibration's own uncertainty. The scan is ``scan``'s, the pilot's measurements
``pilot``'s, the extrapolation ``model``'s and the screen ``text``'s.
"""

from __future__ import annotations

import asyncio

from batchllm.errors import BudgetReached
from batchllm.estimate.model import (
    TARGET,
    Estimate,
    expected_price,
    extrapolate,
    needed,
    relative,
)
from batchllm.estimate.pilot import Pilot, measure
from batchllm.estimate.scan import Scan, scan
from batchllm.estimate.text import estimate_text
from batchllm.job import JobSpec
from batchllm.pricing import resolve_price
from batchllm.run.pipeline import arun_job
from batchllm.tally import RunOptions

__all__ = ["Estimate", "aestimate", "estimate_text"]

FIRST_ROUND = 100


async def aestimate(
    job: JobSpec, *, sample: int = 200, pilot_max_cost: float = 1.0, limit: int | None = None
) -> Estimate:
    """Scan, pilot and extrapolate; raises ``BatchllmError`` like a run does."""
    price = resolve_price(job)
    scanned = await asyncio.to_thread(scan, job, sample, limit)
    pilot = (
        await run_pilot(job, scanned, pilot_max_cost) if sample > 0 and scanned.to_send else None
    )
    return extrapolate(job, price, scanned, pilot)


async def run_pilot(job: JobSpec, scanned: Scan, max_cost: float) -> Pilot | None:
    """Send growing slices of the sample until the interval is tight enough or money runs out."""
    sample, price = scanned.sample or [], expected_price(job, resolve_price(job))
    taken, spent, size = 0, 0.0, min(FIRST_ROUND, len(sample))
    while taken < size and spent < max_cost:
        rows = tuple(row for _, row, _ in sample[taken:size])
        options = RunOptions(rows=rows, kind="pilot", max_cost_usd=max_cost - spent)
        taken = size
        try:
            spent += (await arun_job(job, options)).cost_usd
        except BudgetReached:
            break
        pilot = measure(job, sample[:taken], price)
        if pilot is None or relative(pilot, scanned, price) <= TARGET:
            return pilot
        size = min(len(sample), max(taken * 2, needed(pilot, scanned, price)))
    return measure(job, sample[:taken], price) if taken else None
