"""OpenAI's service tiers priced by the tier a reply was served at: the price table's flex and
priority variants, the batch price for a flex it does not list, and [pricing] prices scaled."""

from __future__ import annotations

from pathlib import Path

import pytest

import batchllm
from batchllm.pricing import resolve_price, tier_price
from batchllm.providers.base import Usage
from conftest import job_data, write_job

USAGE = Usage(input_tokens=1_000_000, output_tokens=1_000_000)


def _job(
    tmp_path: Path, model: str, tier: str | None = "flex", **sections: dict
) -> batchllm.JobSpec:
    section = {"provider": "openai", "name": model, "service_tier": tier}
    return batchllm.load_job(write_job(tmp_path, job_data(None, model=section, **sections)))


def test_a_listed_flex_price_is_used(tmp_path: Path) -> None:
    """gpt-5-mini has a flex variant in the table: flex replies pay it, half the standard."""
    job = _job(tmp_path, "gpt-5-mini")
    price = resolve_price(job)
    assert price.served_as("flex").cost(USAGE) == pytest.approx(tier_price(job, "flex").cost(USAGE))
    assert price.served_as("flex").cost(USAGE) == pytest.approx(price.cost(USAGE) / 2)
    assert "(flex)" in price.served_as("flex").source


def test_a_flex_price_the_table_lacks_is_the_batch_price(tmp_path: Path) -> None:
    """gpt-4o-mini lists no flex: flex replies pay its batch price (OpenAI's flex rate)."""
    job = _job(tmp_path, "gpt-4o-mini")
    batch = resolve_price(job, batch=True)
    assert resolve_price(job).served_as("flex").cost(USAGE) == pytest.approx(batch.cost(USAGE))


def test_default_and_unknown_tiers_pay_the_standard_price(tmp_path: Path) -> None:
    """A reply served at default, or saying nothing, is priced as before."""
    price = resolve_price(_job(tmp_path, "gpt-4o-mini"))
    for served in ("default", None, "scale"):
        assert price.served_as(served) is price


def test_job_prices_are_halved_for_flex_and_doubled_for_priority(tmp_path: Path) -> None:
    """With [pricing] prices, flex is half of them and priority (unlisted) twice."""
    job = _job(tmp_path, "gpt-4o-mini",
               pricing={"input_per_mtok": 1.0, "output_per_mtok": 3.0})  # fmt: skip
    price = resolve_price(job)
    assert price.cost(USAGE) == pytest.approx(4.0)
    assert price.served_as("flex").cost(USAGE) == pytest.approx(2.0)
    assert price.served_as("priority").cost(USAGE) == pytest.approx(8.0)


def test_without_a_service_tier_nothing_else_is_priced(tmp_path: Path) -> None:
    """A job that asks for no tier keeps one price for every reply."""
    price = resolve_price(_job(tmp_path, "gpt-4o-mini", tier=None))
    assert price.served == () and price.served_as("flex") is price
