"""The estimate's screen: each line says what a person deciding to spend needs."""

from __future__ import annotations

import dataclasses

import pytest

from batchllm.estimate import Estimate, estimate_text
from batchllm.estimate.model import CACHE_MIN_TOKENS

BASE = Estimate(
    job="triage", rows=10_000, rows_to_do=9_000, requests_to_send=8_500, input_tokens=1_700_000,
    token_counter="estimated at ~4 bytes a token, calibrated by the pilot (x1.03)",
    pilot_rows=200, pilot_cost_usd=0.0123, interval=0.031, expected_cost_usd=0.5678,
    low_cost_usd=0.55, high_cost_usd=0.59, worst_case_cost_usd=1.2, batch_expected_cost_usd=0.2839,
    cached_expected_cost_usd=None, shared_prefix_tokens=120, expected_seconds=5400.0,
    expected_invalid_rows=12, expected_failed_rows=3,
    price_source="genai-prices 0.2.3: openai/gpt-4o-mini",
)  # fmt: skip


def _lines(estimate: Estimate) -> list[str]:
    return estimate_text(estimate).splitlines()


def test_the_first_lines_count_rows_requests_and_tokens() -> None:
    """Rows, rows to do, distinct requests and input tokens; then how tokens were counted."""
    lines = _lines(BASE)
    assert lines[0] == (
        "triage: 10,000 rows, 9,000 to do, 8,500 distinct requests, ~1,700,000 input tokens"
    )
    assert lines[1] == "  tokens estimated at ~4 bytes a token, calibrated by the pilot (x1.03)"


def test_the_pilot_line_says_what_it_spent_and_that_it_is_kept() -> None:
    """With a pilot: rows sent, money spent, kept for the run; without: the worst case rules."""
    assert _lines(BASE)[2] == "  pilot: 200 rows sent, $0.0123 spent (kept: the run reuses them)"
    without = dataclasses.replace(BASE, pilot_rows=0, pilot_cost_usd=0.0, interval=None)
    assert _lines(without)[2] == "  no pilot: expected = worst case"
    assert "interval" not in estimate_text(without)


def test_the_cost_lines_show_expected_range_worst_case_and_batch() -> None:
    """Expected cost with its interval, the range, the worst case, the batch price."""
    text = estimate_text(BASE)
    assert "  expected cost   $0.5678 (95% interval ±3.1%)" in text
    assert "  range           $0.5500 to $0.5900" in text
    assert "  worst case      $1.2000 (every reply at max_tokens)" in text
    assert "  batch mode      $0.2839" in text


def test_missing_figures_say_why_they_are_missing() -> None:
    """No max_tokens: the worst case is unbounded; no batch price; no caching saving and why."""
    bare = dataclasses.replace(BASE, worst_case_cost_usd=None, batch_expected_cost_usd=None)
    text = estimate_text(bare)
    assert "no max_tokens: unbounded" in text
    assert "no batch price known" in text
    assert f"the shared prefix is ~120 tokens, under {CACHE_MIN_TOKENS:,}" in text


def test_a_caching_saving_is_shown_when_there_is_one() -> None:
    """A long shared prefix: the cost with prompt caching."""
    cached = dataclasses.replace(BASE, cached_expected_cost_usd=0.31, shared_prefix_tokens=2_000)
    assert "  prompt caching  $0.3100" in estimate_text(cached)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "unknown (no limits and no pilot)"), (45.2, "45 s"), (119, "119 s"),
     (600, "10 min"), (7199, "120 min"), (5.5 * 3600, "5.5 h")],
)  # fmt: skip
def test_the_time_is_given_in_a_readable_unit(seconds: float | None, shown: str) -> None:
    """Seconds under two minutes, minutes under two hours, hours beyond; unknown says why."""
    text = estimate_text(dataclasses.replace(BASE, expected_seconds=seconds))
    assert f"  expected time   {shown}" in text


def test_the_last_lines_expect_bad_rows_and_name_the_prices() -> None:
    """Expected invalid and failed rows (from the pilot), and where the prices come from."""
    lines = _lines(BASE)
    assert lines[-2] == "  invalid rows    ~12; failed rows ~3"
    assert lines[-1] == "  prices          genai-prices 0.2.3: openai/gpt-4o-mini"
