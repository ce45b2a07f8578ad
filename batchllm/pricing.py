"""Prices per million tokens, and the cost of one reply from the provider's own usage.

Prices come from the job file's ``[pricing]`` table where it gives them, else from genai-prices'
bundled data (offline; its batch prices are a price variant). A model with no known price is a job
error before any request is sent, since a cost column of zeros would be a lie, unless the job says
``allow_unpriced = true``. The simulated provider is priced as the model it is named after.

Each reply is priced on its own: long-context tiers reprice a whole request by its input size, so
summed usage must never be priced in one go.

OpenAI's service tiers (``[model] service_tier``) are priced by the tier a reply says it was served
at (``Price.served_as``): genai-prices' ``service_tier`` variant where it has one, else flex at the
batch price (OpenAI sells flex at Batch API rates) and priority at twice the standard price; with
``[pricing]`` prices, flex is half of them and priority twice. A reply served at ``default`` (or
saying nothing) pays the standard price.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from decimal import Decimal
from typing import Any

import genai_prices
from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

from batchllm.errors import PriceError
from batchllm.job import JobSpec
from batchllm.providers.base import Usage
from batchllm.providers.registry import find

_FIELDS = {
    "input_per_mtok": "input_mtok",
    "output_per_mtok": "output_mtok",
    "cached_input_per_mtok": "cache_read_mtok",
    "cache_write_per_mtok": "cache_write_mtok",
}


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per million tokens of each kind."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float
    cache_write_per_mtok: float


@dataclass(frozen=True, slots=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float
    cache_write_per_mtok: float
    source: str
    #: (input tokens above which, rates) for long-context tiers, ascending
    tiers: tuple[tuple[int, Rates], ...] = ()
    #: (service tier, its price) for replies served at a tier priced otherwise
    served: tuple[tuple[str, Price], ...] = ()

    def served_as(self, tier: str | None) -> Price:
        """The price of a reply the provider says it served at ``tier``."""
        for name, price in self.served:
            if name == tier:
                return price
        return self

    def rates(self, input_tokens: int) -> Rates:
        """The rates a request of this input size pays (a tier reprices the whole request)."""
        chosen = Rates(
            self.input_per_mtok,
            self.output_per_mtok,
            self.cached_input_per_mtok,
            self.cache_write_per_mtok,
        )
        for start, rates in self.tiers:
            if input_tokens > start:
                chosen = rates
        return chosen

    def cost(self, usage: Usage) -> float:
        """USD for one reply; cached and cache-write tokens are part of ``input_tokens``."""
        rates = self.rates(usage.input_tokens)
        special = usage.cached_tokens + usage.cache_write_tokens
        uncached = max(usage.input_tokens - special, 0)
        micro = (
            uncached * rates.input_per_mtok
            + usage.cached_tokens * rates.cached_input_per_mtok
            + usage.cache_write_tokens * rates.cache_write_per_mtok
            + usage.output_tokens * rates.output_per_mtok
        )
        return micro / 1_000_000


#: what a tier costs against the standard price when the price table has no variant for it
_TIER_FACTORS = {"flex": 0.5, "priority": 2.0}


def resolve_price(job: JobSpec, *, batch: bool = False) -> Price:
    """The job's price: ``[pricing]`` on top of genai-prices (its batch variant if asked);
    with a ``service_tier``, online prices know the flex and priority prices too."""
    price = _resolve(job, batch)
    if batch or job.model.service_tier is None:
        return price
    return replace(
        price, served=tuple((tier, tier_price(job, tier, price)) for tier in _TIER_FACTORS)
    )


def tier_price(job: JobSpec, tier: str, standard: Price | None = None) -> Price:
    """The price of a reply served at ``tier`` ("flex", "priority"; others: standard)."""
    standard = standard or _resolve(job, False)
    if tier not in _TIER_FACTORS:
        return standard
    found = None
    if job.pricing.input_per_mtok is None:
        found = _lookup(job, False, {"service_tier": tier}) if _has_variant(job, tier) else None
    if found is not None:
        rates = _merge(dict.fromkeys(_FIELDS), found.model_price, job.model.name)
        source = _source(job, found, False) + f" ({tier})"
        return Price(**rates, source=source, tiers=_tiers(found.model_price), served=())
    if tier == "flex" and job.pricing.input_per_mtok is None:
        batch = _resolve(job, True)
        return replace(batch, source=batch.source + " as flex")
    return _scaled(standard, _TIER_FACTORS[tier], tier)


def _scaled(price: Price, factor: float, tier: str) -> Price:
    rates = {name: getattr(price, name) * factor for name in _FIELDS}
    tiers = tuple((start, Rates(**{n: getattr(r, n) * factor for n in _FIELDS}))
                  for start, r in price.tiers)  # fmt: skip
    return Price(**rates, source=f"{price.source} x {factor:g} ({tier})", tiers=tiers)


def _has_variant(job: JobSpec, tier: str) -> bool:
    """Whether genai-prices prices this model's ``tier`` on its own."""
    found = _lookup(job, False)
    variants = getattr(getattr(found, "model", None), "price_variants", None) or ()
    return any(getattr(v, "when", None) == {"service_tier": tier} for v in variants)


def _resolve(job: JobSpec, batch: bool) -> Price:
    override = job.pricing
    given = override.input_per_mtok is not None and override.output_per_mtok is not None
    found = None if given and not batch else _lookup(job, batch)
    if found is None and not given:
        return Price(0.0, 0.0, 0.0, 0.0, "unpriced (allow_unpriced = true)")
    model_price = found.model_price if found is not None else None
    values = {name: getattr(override, name) for name in _FIELDS}
    if batch and given:
        values = dict.fromkeys(values)  # the job's own prices are standard prices
    return Price(
        **_merge(values, model_price, job.model.name),
        source=_source(job, found, batch),
        tiers=_tiers(model_price) if not any(values.values()) else (),
        served=(),
    )


def context_window(job: JobSpec) -> int | None:
    """The model's context window in tokens, when the price table knows it."""
    try:
        found = calc_price(
            PriceUsage(input_tokens=1, output_tokens=1),
            model_ref=job.model.name,
            provider_id=_price_id(job),
        )
    except LookupError:
        return None
    window = getattr(found.model, "context_window", None)
    return int(window) if isinstance(window, int) and window > 0 else None


def _lookup(job: JobSpec, batch: bool, context: dict[str, str] | None = None) -> Any:
    context = {"processing": "batch"} if batch else context
    try:
        return calc_price(
            PriceUsage(input_tokens=1, output_tokens=1),
            model_ref=job.model.name,
            provider_id=_price_id(job),
            price_context=context,
        )
    except LookupError:
        if job.pricing.allow_unpriced:
            return None
        raise PriceError(
            f"no price known for model '{job.model.name}'; add a [pricing] table to the job file "
            "(input_per_mtok, output_per_mtok in USD per million tokens), or allow_unpriced = true"
        ) from None


def _merge(values: dict[str, float | None], model_price: Any, model: str) -> dict[str, float]:
    merged: dict[str, float] = {}
    for name, field in _FIELDS.items():
        value = values[name]
        if value is None and model_price is not None:
            value = _base(getattr(model_price, field, None))
        if value is None and name in ("cached_input_per_mtok", "cache_write_per_mtok"):
            value = merged["input_per_mtok"]
        if value is None:
            raise PriceError(f"no '{field}' price known for model '{model}'; set it in [pricing]")
        merged[name] = value
    return merged


def _base(value: Any) -> float | None:
    if value is None:
        return None
    return float(value if isinstance(value, Decimal) else value.base)


def _tiers(model_price: Any) -> tuple[tuple[int, Rates], ...]:
    """Long-context tiers, merged across token kinds into one ladder by input size."""
    if model_price is None:
        return ()
    starts = sorted(
        {
            tier.start
            for field in _FIELDS.values()
            for tier in getattr(getattr(model_price, field, None), "tiers", None) or []
        }
    )
    base = {name: _base(getattr(model_price, field, None)) for name, field in _FIELDS.items()}
    ladder = []
    for start in starts:
        rates = {
            name: _at(getattr(model_price, field, None), start) for name, field in _FIELDS.items()
        }
        filled = {k: v if v is not None else (base[k] or base["input_per_mtok"] or 0.0)
                  for k, v in rates.items()}  # fmt: skip
        ladder.append((int(start), Rates(**filled)))
    return tuple(ladder)


def _at(value: Any, start: int) -> float | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return float(value)
    price = value.base
    for tier in value.tiers:
        if tier.start <= start:
            price = tier.price
    return float(price)


def _source(job: JobSpec, found: Any, batch: bool) -> str:
    if found is None:
        return "job file [pricing]"
    origin = f"genai-prices {genai_prices.__version__}: {found.provider.id}/{found.model.id}"
    origin += " (batch)" if batch else ""
    # ``is``, not ``in``: a price of 0.0 is an override (and 0.0 == False)
    given = [
        f.name
        for f in fields(job.pricing)
        if getattr(job.pricing, f.name) is not None and getattr(job.pricing, f.name) is not False
    ]
    return origin + (f" with [pricing] {', '.join(given)}" if given else "")


def _price_id(job: JobSpec) -> str | None:
    """genai-prices' id of the job's provider; None: find the model by its name alone."""
    entry = find(job.model.provider)
    return entry.price_id if entry is not None else None
