"""What the estimate's pilot measured: the sample rows' outcomes read back and fitted.

The pilot itself (runs of the job over growing slices of the sample, kind "pilot") is driven by
``batchllm.estimate``; ``measure`` reads those rows' outcomes from the run directory and fits the
figures ``model`` extrapolates. It sends nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from batchllm.job import JobSpec
from batchllm.pricing import Price


@dataclass(frozen=True, slots=True)
class Pilot:
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


def measure(job: JobSpec, sample: list[Any], price: Price) -> Pilot | None:
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
    return Pilot(
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
