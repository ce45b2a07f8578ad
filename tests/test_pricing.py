"""Cost per reply from the provider's own usage, checked against hand-computed figures."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import batchllm
from batchllm.errors import PriceError
from batchllm.pricing import resolve_price
from batchllm.providers.anthropic import parse_usage
from batchllm.providers.openai import OpenAIChat
from conftest import job_data, write_job


def _job(tmp_path: Path, model: str, **sections: dict) -> batchllm.JobSpec:
    return batchllm.load_job(write_job(tmp_path, job_data(None, model={"name": model}, **sections)))


def test_openai_cached_and_reasoning_tokens_are_priced_as_billed(tmp_path: Path) -> None:
    """OpenAI: cached tokens sit inside prompt_tokens at the cached rate; reasoning is output."""
    price = resolve_price(_job(tmp_path, "gpt-4o-mini"))
    reply = {
        "choices": [{"message": {"content": "x"}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 2000,
            "completion_tokens": 300,
            "prompt_tokens_details": {"cached_tokens": 1024},
            "completion_tokens_details": {"reasoning_tokens": 100},
        },
    }
    usage = OpenAIChat(None, None).parse(200, {}, orjson.dumps(reply)).usage
    # 976 uncached x 0.15 + 1024 cached x 0.075 + 300 output x 0.60, per million
    assert price.cost(usage) == pytest.approx((976 * 0.15 + 1024 * 0.075 + 300 * 0.60) / 1e6)


def test_anthropic_cache_writes_and_reads_are_priced_outside_input(tmp_path: Path) -> None:
    """Anthropic: cache writes and reads sit beside input_tokens and have their own prices."""
    price = resolve_price(_job(tmp_path, "claude-sonnet-4-5"))
    usage = parse_usage(
        {
            "input_tokens": 21,
            "output_tokens": 393,
            "cache_creation_input_tokens": 188086,
            "cache_read_input_tokens": 0,
            "output_tokens_details": {"thinking_tokens": 40},
        }
    )
    assert (usage.input_tokens, usage.cache_write_tokens, usage.reasoning_tokens) == (
        188107,
        188086,
        40,
    )
    # 21 x $3 + 188,086 x $3.75 (5-minute write) + 393 x $15, per million
    assert price.cost(usage) == pytest.approx((21 * 3 + 188086 * 3.75 + 393 * 15) / 1e6)
    read = parse_usage({"input_tokens": 50, "output_tokens": 10, "cache_read_input_tokens": 5000})
    assert price.cost(read) == pytest.approx((50 * 3 + 5000 * 0.3 + 10 * 15) / 1e6)


def test_a_long_context_tier_reprices_the_whole_request(tmp_path: Path) -> None:
    """Above 200K input tokens every token of that request pays the tier's price."""
    price = resolve_price(_job(tmp_path, "claude-sonnet-4-5"))
    big = batchllm.providers.base.Usage(input_tokens=250_000, output_tokens=1000)
    small = batchllm.providers.base.Usage(input_tokens=150_000, output_tokens=1000)
    assert price.cost(big) == pytest.approx((250_000 * 6 + 1000 * 22.5) / 1e6)
    assert price.cost(small) == pytest.approx((150_000 * 3 + 1000 * 15) / 1e6)
    halves = price.cost(small) + price.cost(batchllm.providers.base.Usage(100_000, 0))
    assert halves < price.cost(batchllm.providers.base.Usage(250_000, 1000))


def test_batch_prices_come_from_the_price_table(tmp_path: Path) -> None:
    """The batch variant is half the standard price for OpenAI's batch API."""
    job = _job(tmp_path, "gpt-4o-mini")
    standard, batch = resolve_price(job), resolve_price(job, batch=True)
    assert batch.input_per_mtok == pytest.approx(standard.input_per_mtok / 2)
    assert batch.output_per_mtok == pytest.approx(standard.output_per_mtok / 2)
    assert "(batch)" in batch.source


def test_job_file_prices_override_the_table(tmp_path: Path) -> None:
    """[pricing] wins over the bundled prices, and the source says so."""
    job = _job(tmp_path, "gpt-4o-mini", pricing={"input_per_mtok": 1.0, "output_per_mtok": 2.0})
    price = resolve_price(job)
    assert (price.input_per_mtok, price.output_per_mtok, price.cached_input_per_mtok) == (1, 2, 1)
    assert price.source == "job file [pricing]"


def test_an_unknown_model_is_an_error_unless_unpriced_runs_are_allowed(tmp_path: Path) -> None:
    """No price and no override stops the job; allow_unpriced runs it at cost 0."""
    with pytest.raises(PriceError, match="no price known for model 'acme-1'"):
        resolve_price(_job(tmp_path, "acme-1"))
    price = resolve_price(_job(tmp_path, "acme-1", pricing={"allow_unpriced": True}))
    assert price.source.startswith("unpriced")
    assert price.cost(batchllm.providers.base.Usage(1000, 1000)) == 0.0
