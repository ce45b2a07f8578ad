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

genai-prices' tables take ~25 MB once imported, for the one or two prices a job needs. So the
prices a run directory's job resolved (and its model's context window) are kept in the directory,
in ``prices.json``, keyed by what decides them: the model, provider, ``[pricing]``, service tier,
and the versions of genai-prices and batchllm. The next run over that directory reads them from
there and never imports genai-prices; anything else changed, and it is looked up again. The
snapshot is written only into a directory that exists, and only ever as a whole file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

import orjson

from batchllm._version import __version__
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
#: the run directory's file of the prices its job resolved
SNAPSHOT = "prices.json"

T = TypeVar("T")


def resolve_price(job: JobSpec, *, batch: bool = False) -> Price:
    """The job's price: ``[pricing]`` on top of genai-prices (its batch variant if asked);
    with a ``service_tier``, online prices know the flex and priority prices too."""
    kind = "batch" if batch else "online"
    return _snapshot(job, kind, lambda: asdict(_resolve_price(job, batch)), _price_from)


def _resolve_price(job: JobSpec, batch: bool) -> Price:
    price = _resolve(job, batch)
    if batch or job.model.service_tier is None:
        return price
    return replace(
        price, served=tuple((tier, _tier_price(job, tier, price)) for tier in _TIER_FACTORS)
    )


def tier_price(job: JobSpec, tier: str, standard: Price | None = None) -> Price:
    """The price of a reply served at ``tier`` ("flex", "priority"; others: standard), kept in
    the run directory's snapshot as the job's own prices are (``standard``, the job's standard
    price if the caller has it, saves looking it up again)."""
    return _snapshot(
        job, f"tier {tier}", lambda: asdict(_tier_price(job, tier, standard)), _price_from
    )


def _tier_price(job: JobSpec, tier: str, standard: Price | None) -> Price:
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
    return _snapshot(job, "context_window", lambda: _context_window(job), _window_from)


def _context_window(job: JobSpec) -> int | None:
    from genai_prices import Usage as PriceUsage
    from genai_prices import calc_price

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
    from genai_prices import Usage as PriceUsage
    from genai_prices import calc_price

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
    import genai_prices

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


def _snapshot(job: JobSpec, kind: str, compute: Callable[[], Any], load: Callable[[Any], T]) -> T:
    """``load`` of the run directory's snapshot of ``kind`` for this job, else of ``compute()``
    (then kept in the snapshot, when the directory exists)."""
    path = job.output_dir / SNAPSHOT
    key = _snapshot_key(job, kind)
    entries = _read_snapshot(path)
    if key in entries:
        return load(entries[key])
    value = compute()
    if path.parent.is_dir():
        _write_snapshot(path, {**entries, key: value})
    return load(value)


def _snapshot_key(job: JobSpec, kind: str) -> str:
    """What decides a price: the job's model and ``[pricing]``, and the code and data pricing it."""
    model = job.model
    decided_by = {
        "kind": kind,
        "model": [model.provider, model.name, model.service_tier],
        "pricing": asdict(job.pricing),
        "versions": [version("genai-prices"), __version__],
    }
    return orjson.dumps(decided_by, option=orjson.OPT_SORT_KEYS).decode()


def _read_snapshot(path: Path) -> dict[str, Any]:
    try:
        entries = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}  # none yet, or unreadable: looked up again and written anew
    return entries if isinstance(entries, dict) else {}


def _write_snapshot(path: Path, entries: dict[str, Any]) -> None:
    tmp = path.with_name(f"{SNAPSHOT}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):  # only a shortcut: without it, prices are looked up
        tmp.write_bytes(orjson.dumps(entries))
        os.replace(tmp, path)
    tmp.unlink(missing_ok=True)


def _price_from(data: dict[str, Any]) -> Price:
    rates = {name: float(data[name]) for name in _FIELDS}
    tiers = tuple((int(start), Rates(**tier)) for start, tier in data["tiers"])
    served = tuple((str(name), _price_from(price)) for name, price in data["served"])
    return Price(**rates, source=str(data["source"]), tiers=tiers, served=served)


def _window_from(data: Any) -> int | None:
    return int(data) if isinstance(data, int) else None
