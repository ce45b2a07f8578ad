"""Prices per million tokens, and the cost of one reply from the provider's own usage.

Prices come from the job file's ``[pricing]`` table where it gives them, else from genai-prices'
bundled data (offline). A model with no known price is a job error before any request is sent:
a cost column of zeros would be a lie. The simulated provider is priced as the model it is named
after. Tiered prices use their base tier.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import genai_prices
from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

from batchllm.errors import PriceError
from batchllm.job import JobSpec
from batchllm.providers.base import Usage

_PROVIDER_IDS = {"openai": "openai"}


@dataclass(frozen=True, slots=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float
    cache_write_per_mtok: float
    source: str

    def cost(self, usage: Usage) -> float:
        """USD for one reply; cached and cache-write tokens are part of ``input_tokens``."""
        special = usage.cached_tokens + usage.cache_write_tokens
        uncached = max(usage.input_tokens - special, 0)
        micro = (
            uncached * self.input_per_mtok
            + usage.cached_tokens * self.cached_input_per_mtok
            + usage.cache_write_tokens * self.cache_write_per_mtok
            + usage.output_tokens * self.output_per_mtok
        )
        return micro / 1_000_000


def resolve_price(job: JobSpec) -> Price:
    """The job's price: overrides from ``[pricing]`` on top of genai-prices."""
    override = job.pricing
    if override.input_per_mtok is not None and override.output_per_mtok is not None:
        base = None
    else:
        base = _lookup(job.model.name, job.model.provider)
    inputs = _pick(override.input_per_mtok, base, "input_mtok")
    return Price(
        input_per_mtok=inputs,
        output_per_mtok=_pick(override.output_per_mtok, base, "output_mtok"),
        cached_input_per_mtok=_pick(
            override.cached_input_per_mtok, base, "cache_read_mtok", inputs
        ),
        cache_write_per_mtok=_pick(override.cache_write_per_mtok, base, "cache_write_mtok", inputs),
        source=_source(job, base),
    )


def _lookup(model: str, provider: str) -> Any:
    try:
        found = calc_price(
            PriceUsage(input_tokens=1, output_tokens=1),
            model_ref=model,
            provider_id=_PROVIDER_IDS.get(provider),
        )
    except LookupError:
        raise PriceError(
            f"no price known for model '{model}'; add a [pricing] table to the job file "
            "(input_per_mtok, output_per_mtok in USD per million tokens)"
        ) from None
    return found


def _pick(override: float | None, found: Any, field: str, fallback: float | None = None) -> float:
    if override is not None:
        return override
    value = getattr(found.model_price, field, None) if found is not None else None
    if value is None:
        if fallback is not None:
            return fallback
        raise PriceError(f"the price table has no '{field}' price; set it in [pricing]")
    if not isinstance(value, Decimal):
        value = value.base
    return float(value)


def _source(job: JobSpec, found: Any) -> str:
    if found is None:
        return "job file [pricing]"
    origin = f"genai-prices {genai_prices.__version__}: {found.provider.id}/{found.model.id}"
    given = [
        k
        for k, v in job.pricing.__dataclass_fields__.items()
        if getattr(job.pricing, k) is not None
    ]
    return origin + (f" with [pricing] {', '.join(given)}" if given else "")
