"""``batchllm estimate``: what a job will cost and how long it will take, before committing.

Three steps. A scan streams the whole input, renders every row, skips rows already done in the
run directory, and counts rows and input tokens (estimated at ~4 bytes a token) while keeping a
uniform random sample of rows. A pilot sends sample rows through the real provider, as a run of
the job whose results are kept (the real run reuses them), growing the sample until the 95%
interval of the expected cost is within ±5%, or the sample or the pilot's spend cap runs out. The
extrapolation calibrates the token count on the pilot's real usage and prices the rest.

Each to-do row's cost is modelled as its input (known from the scan, calibrated) plus a part the
pilot measures (output, repairs, failures); the interval comes from that part's spread over the
pilot and the calibration's own uncertainty.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import re
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from batchllm.errors import BudgetReached, PriceError, RowError
from batchllm.job import JobSpec
from batchllm.outcome import RecentRequests
from batchllm.pricing import Price, context_window, resolve_price
from batchllm.progress import money
from batchllm.providers.base import Usage
from batchllm.render import Renderer, estimate_tokens, input_hash
from batchllm.run.pipeline import arun_job
from batchllm.source import Source, row_key
from batchllm.store import read_done
from batchllm.tally import RunOptions
from batchllm.validate import OutputSchema

Z95 = 1.96
TARGET = 0.05
FIRST_ROUND = 100
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

    def to_json(self) -> str:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2).decode()


@dataclass(slots=True)
class _Scan:
    rows: int = 0
    #: rows not done yet, and of those the distinct requests (identical ones are sent once)
    to_do: int = 0
    to_send: int = 0
    est_tokens: int = 0
    sample: list[tuple[str, dict[str, Any], int]] | None = None


@dataclass(frozen=True, slots=True)
class _Pilot:
    rows: int
    cost_usd: float
    calibration: float
    calibration_se: float
    #: the per-row cost beyond input, as a line over the row's estimated input tokens
    rest_mean: float
    rest_slope: float
    tokens_mean: float
    rest_sd: float
    output_mean: float
    invalid_rate: float
    failed_rate: float
    latency_ms: float | None


async def aestimate(
    job: JobSpec, *, sample: int = 200, pilot_max_cost: float = 1.0, limit: int | None = None
) -> Estimate:
    """Scan, pilot and extrapolate; raises ``BatchllmError`` like a run does."""
    price = resolve_price(job)
    scan = await asyncio.to_thread(_scan, job, sample, limit)
    pilot = await _pilot(job, scan, pilot_max_cost) if sample > 0 and scan.to_send else None
    return _extrapolate(job, price, scan, pilot)


def _scan(job: JobSpec, sample_size: int, limit: int | None) -> _Scan:
    source = Source(job.input)
    schema = OutputSchema(job.output.schema) if job.output.schema else None
    renderer = Renderer(job, source.columns, schema)
    done = read_done(job.output_dir, job.fingerprint)
    scan, rng = _Scan(), random.Random(0)
    reservoir: list[tuple[str, dict[str, Any], int]] = []
    recent: RecentRequests[None] = RecentRequests()
    # Duplicate ids are not looked for: a table of every id would grow with the input, and
    # counting a refused duplicate as a request errs on the safe side.
    window = context_window(job)
    items = itertools.chain.from_iterable(source.rows())
    for item in itertools.islice(items, limit):  # reading stops at the limit
        scan.rows += 1
        row = item.data
        key = item.key or row_key(row, job.input.id_column)
        if item.problem is not None:
            continue  # an error row, never sent
        if done.is_done_input(key, input_hash(row), retry_failed=False):
            continue
        try:
            request = renderer.render(key, row)
        except RowError:
            continue
        if done.is_done(key, request.request_key, retry_failed=False):
            continue
        scan.to_do += 1
        if (window and request.est_input_tokens > window) or _seen(recent, request.request_key):
            continue  # too large to send (an error row), or it shares an identical request's reply
        scan.to_send += 1
        scan.est_tokens += request.est_input_tokens
        _keep(reservoir, sample_size, scan.to_send, (key, row, request.est_input_tokens), rng)
    rng.shuffle(reservoir)
    scan.sample = reservoir
    return scan


def _seen(recent: RecentRequests[None], request_key: str) -> bool:
    """Whether the run would share an earlier identical request's reply (same window as a run)."""
    if request_key in recent:
        return True
    recent.put(request_key, None)
    return False


def _keep(reservoir: list[Any], size: int, seen: int, item: Any, rng: random.Random) -> None:
    """Reservoir sampling: every to-do row has the same chance to be in the sample."""
    if len(reservoir) < size:
        reservoir.append(item)
        return
    slot = rng.randrange(seen)
    if slot < size:
        reservoir[slot] = item


async def _pilot(job: JobSpec, scan: _Scan, max_cost: float) -> _Pilot | None:
    """Send growing slices of the sample until the interval is tight enough or money runs out."""
    sample, price = scan.sample or [], resolve_price(job)
    taken, spent, size = 0, 0.0, min(FIRST_ROUND, len(sample))
    while taken < size and spent < max_cost:
        rows = tuple(row for _, row, _ in sample[taken:size])
        options = RunOptions(rows=rows, kind="pilot", max_cost_usd=max_cost - spent)
        taken = size
        try:
            spent += (await arun_job(job, options)).cost_usd
        except BudgetReached:
            break
        pilot = _measure(job, sample[:taken], price)
        if pilot is None or _relative(pilot, scan, price) <= TARGET:
            return pilot
        size = min(len(sample), max(taken * 2, _needed(pilot, scan, price)))
    return _measure(job, sample[:taken], price) if taken else None


def _measure(job: JobSpec, sample: list[Any], price: Price) -> _Pilot | None:
    from batchllm.query import query

    keys = {key: est for key, _, est in sample}
    listed = ", ".join("'" + key.replace("'", "''") + "'" for key in keys)
    table = query(
        job,
        "select row_key, status, input_tokens, output_tokens, cost_usd, repairs, latency_ms "
        f"from results where row_key in ({listed})",
    )
    rows = table.to_pylist()
    if not rows:
        return None
    clean = [r for r in rows if r["status"] != "failed" and r["repairs"] == 0]
    calibration, calibration_se = _ratio(
        [keys[r["row_key"]] for r in clean], [r["input_tokens"] for r in clean]
    )
    rate = price.rates(0).input_per_mtok / 1e6
    tokens = [float(keys[r["row_key"]]) for r in rows]
    rest = [r["cost_usd"] - x * calibration * rate for r, x in zip(rows, tokens, strict=True)]
    slope, residual_sd = _fit(tokens, rest)
    latencies = [r["latency_ms"] for r in rows if r["latency_ms"] is not None]
    return _Pilot(
        rows=len(rows),
        cost_usd=sum(r["cost_usd"] for r in rows),
        calibration=calibration,
        calibration_se=calibration_se,
        rest_mean=sum(rest) / len(rest),
        rest_slope=slope,
        tokens_mean=sum(tokens) / len(tokens),
        rest_sd=residual_sd,
        output_mean=sum(r["output_tokens"] for r in rows) / len(rows),
        invalid_rate=sum(r["status"] == "invalid" for r in rows) / len(rows),
        failed_rate=sum(r["status"] == "failed" for r in rows) / len(rows),
        latency_ms=sum(latencies) / len(latencies) if latencies else None,
    )


def _halfwidth(pilot: _Pilot, scan: _Scan, price: Price) -> float:
    rest = Z95 * pilot.rest_sd / math.sqrt(pilot.rows) * scan.to_send
    rate = price.rates(0).input_per_mtok / 1e6
    calibration = Z95 * pilot.calibration_se * scan.est_tokens * rate
    return math.hypot(rest, calibration)


def _expected(pilot: _Pilot, scan: _Scan, price: Price) -> float:
    """Input priced from the scan, plus the rest by a regression estimator on input size.

    The rest (output, repairs) often grows with the prompt; correcting the pilot's mean by how far
    its rows' input differs from the whole input's removes the luck of the draw.
    """
    rate = price.rates(0).input_per_mtok / 1e6
    gap = scan.est_tokens / scan.to_send - pilot.tokens_mean
    rest = pilot.rest_mean + pilot.rest_slope * gap
    return scan.est_tokens * pilot.calibration * rate + scan.to_send * rest


def _relative(pilot: _Pilot, scan: _Scan, price: Price) -> float:
    expected = _expected(pilot, scan, price)
    return _halfwidth(pilot, scan, price) / expected if expected > 0 else 0.0


def _needed(pilot: _Pilot, scan: _Scan, price: Price) -> int:
    """Rows a pilot needs for the target interval, if the spread stays as measured."""
    ratio = _relative(pilot, scan, price) / TARGET
    return math.ceil(pilot.rows * ratio * ratio)


def _extrapolate(job: JobSpec, price: Price, scan: _Scan, pilot: _Pilot | None) -> Estimate:
    n = scan.to_send
    calibration = pilot.calibration if pilot else 1.0
    input_tokens = round(scan.est_tokens * calibration)
    worst = _worst(job, price, input_tokens, n)
    if pilot is not None:
        expected = _expected(pilot, scan, price)
        half = _halfwidth(pilot, scan, price)
        output_tokens = round(pilot.output_mean * n)
    else:
        expected = worst if worst is not None else 0.0
        half, output_tokens = 0.0, (job.model.max_tokens or 0) * n
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
        batch_expected_cost_usd=_batch(job, expected, price, input_tokens, output_tokens),
        cached_expected_cost_usd=_cached(expected, price, prefix, n),
        shared_prefix_tokens=prefix,
        expected_seconds=_seconds(job, n, input_tokens + output_tokens, pilot),
        expected_invalid_rows=round(scan.to_do * pilot.invalid_rate) if pilot else 0,
        expected_failed_rows=round(scan.to_do * pilot.failed_rate) if pilot else 0,
        price_source=price.source,
    )


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


def _seconds(job: JobSpec, rows: int, tokens: int, pilot: _Pilot | None) -> float | None:
    bounds = []
    if job.limits.rpm:
        bounds.append(rows / job.limits.rpm * 60)
    if job.limits.tpm:
        bounds.append(tokens / job.limits.tpm * 60)
    if pilot is not None and pilot.latency_ms is not None:
        bounds.append(rows * pilot.latency_ms / 1000 / job.limits.concurrency)
    return max(bounds) if bounds else None


def _counter(pilot: _Pilot | None) -> str:
    if pilot is None:
        return "estimated at 4 bytes a token (no pilot to calibrate on)"
    return (
        f"estimated at 4 bytes a token, calibrated on {pilot.rows} pilot replies "
        f"(x{pilot.calibration:.3f})"
    )


def _ratio(estimated: list[int], real: list[int]) -> tuple[float, float]:
    """Real over estimated tokens, and its standard error as a ratio estimator."""
    n, total = len(estimated), sum(estimated)
    if n < 2 or total == 0:
        return 1.0, 0.0
    ratio = sum(real) / total
    spread = sum((y - ratio * x) ** 2 for x, y in zip(estimated, real, strict=True)) / (n - 1)
    return ratio, math.sqrt(spread) / (total / n) / math.sqrt(n)


def _fit(x: list[float], y: list[float]) -> tuple[float, float]:
    """Least-squares slope of y on x, and the spread of what the line leaves unexplained."""
    n = len(x)
    if n < 3:
        return 0.0, _sd(y)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx if sxx else 0.0
    residuals = [b - my - slope * (a - mx) for a, b in zip(x, y, strict=True)]
    return slope, math.sqrt(sum(r * r for r in residuals) / (n - 2))


def _sd(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


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
        f"  expected cost   {money(e.expected_cost_usd)}{interval}",
        f"  range           {money(e.low_cost_usd)} to {money(e.high_cost_usd)}",
        f"  worst case      {_maybe(e.worst_case_cost_usd, 'no max_tokens: unbounded')}"
        " (every reply at max_tokens)",
        f"  batch mode      {_maybe(e.batch_expected_cost_usd, 'no batch price known')}",
        f"  prompt caching  {_maybe(e.cached_expected_cost_usd, _no_cache(e))}",
        f"  expected time   {_time(e.expected_seconds)}",
        f"  invalid rows    ~{e.expected_invalid_rows:,}; failed rows ~{e.expected_failed_rows:,}",
        f"  prices          {e.price_source}",
    ]
    return "\n".join(lines)


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
