"""The plan as a pure function of rows, prices, capacity, history, budget and a made-up clock."""

from __future__ import annotations

import pytest

from batchllm.plan.clock import deadline_at
from batchllm.plan.planner import FLEX_SLOWDOWN, GUESS_BATCH_S, Situation, make_plan, rows_per_s

NOW = 1_800_000_000.0
HOUR = 3600.0


def _situation(**changes: object) -> Situation:
    values: dict[str, object] = {
        "rows": 50_000, "online_usd": 100.0, "batch_usd": 50.0, "rows_per_s": 50_000 / 2700,
        "now": NOW, "deadline": NOW + 3 * HOUR,
    }  # fmt: skip
    return Situation(**{**values, **changes})  # type: ignore[arg-type]  # test values


def test_with_time_to_spare_every_row_goes_to_a_batch_with_a_switch_point() -> None:
    """3 h left, 45 min online: batch everything; switch when 1.5 x 45 min + reserve are left."""
    plan = make_plan(_situation())
    assert (plan.batch_rows, plan.online_rows, plan.problem) == (50_000, 0, None)
    assert plan.switch_at == pytest.approx(NOW + 3 * HOUR - 1.5 * 2700 - 60)
    assert plan.expected_usd == 50.0  # the guessed hour fits before the switch point
    assert plan.worst_usd == 100.0
    assert plan.expected_finish == NOW + GUESS_BATCH_S


def test_history_slower_than_the_switch_point_prices_the_part_moved_online() -> None:
    """Batches that took 4 h: about half is kept at the batch price, the rest goes online."""
    plan = make_plan(_situation(batch_s=4 * HOUR))
    window = 3 * HOUR - 1.5 * 2700 - 60
    kept = window / (4 * HOUR)
    assert plan.batch_s_known
    assert plan.expected_usd == pytest.approx(kept * 50 + (1 - kept) * 100)
    assert plan.expected_finish == pytest.approx(NOW + window + (1 - kept) * 2700)


def test_too_little_time_for_a_batch_sends_every_row_online() -> None:
    """With only the online time left (and its margin), no batch is tried."""
    plan = make_plan(_situation(deadline=NOW + 1 * HOUR))
    assert (plan.batch_rows, plan.online_rows, plan.switch_at) == (0, 50_000, None)
    assert plan.problem is None and plan.expected_usd == 100.0


def test_an_impossible_deadline_is_refused() -> None:
    """Online alone needs 45 min and 30 min are left: the plan says so."""
    plan = make_plan(_situation(deadline=NOW + 1800))
    assert plan.problem is not None and "cannot be met" in plan.problem


def test_a_budget_under_the_expected_cost_is_refused_and_under_the_worst_is_noted() -> None:
    """Below the batch price: refused; between batch and online: a note on the risk."""
    assert make_plan(_situation(budget_usd=40.0)).problem is not None
    plan = make_plan(_situation(budget_usd=60.0))
    assert plan.problem is None and plan.note is not None
    assert make_plan(_situation(deadline=NOW + HOUR, budget_usd=60.0)).problem is not None


def test_no_batch_price_or_cheapest_off_means_online() -> None:
    """Without a batch tier, or with ``cheapest = false``, every row goes online."""
    assert not make_plan(_situation(batch_usd=None)).batch
    assert not make_plan(_situation(cheapest=False)).batch


def test_capacity_is_the_tightest_limit() -> None:
    """Rows a second: the smallest of rpm, tpm over tokens per row, and concurrency / latency."""
    assert rows_per_s(600, None, 100, 1000, 1.0) == 10.0
    assert rows_per_s(None, 60_000, 100, 1000, 1.0) == 1.0
    assert rows_per_s(None, None, 8, 1000, 2.0) == 4.0


def test_a_clock_deadline_is_the_next_such_time() -> None:
    """``06:00`` after 06:00 is tomorrow's; an ISO time is itself."""
    morning = deadline_at("2026-12-05T05:00:00+00:00", 0)
    assert deadline_at("2026-12-05T06:00:00+00:00", morning) == morning + HOUR
    at = deadline_at("06:00", morning)
    assert morning < at <= morning + 24 * HOUR
    with pytest.raises(ValueError, match="HH:MM"):
        deadline_at("tomorrow", 0)


def test_online_rows_go_at_flex_until_the_standard_tier_is_needed() -> None:
    """No batch, flex asked for: rows go at flex (half as fast) until the switch point's margin
    before the deadline, the rest at the standard tier; expected cost between the two."""
    plan = make_plan(_situation(batch_usd=None, flex=True, flex_usd=50.0, rows_per_s=10.0))
    window = 3 * HOUR - 1.5 * 5000 - 60
    assert plan.standard_from == pytest.approx(NOW + window)
    assert plan.flex_rows == int(window * 10.0 / FLEX_SLOWDOWN)
    share = plan.flex_rows / 50_000
    assert plan.expected_usd == pytest.approx(share * 50 + (1 - share) * 100)
    assert (plan.worst_usd, plan.problem) == (100.0, None)


def test_flex_with_time_for_every_row_costs_the_flex_price() -> None:
    """With hours to spare flex is expected to answer every row, at its price."""
    plan = make_plan(_situation(batch_usd=None, flex=True, flex_usd=50.0, deadline=NOW + 9 * HOUR))
    assert (plan.flex_rows, plan.expected_usd) == (50_000, pytest.approx(50.0))


def test_a_priced_flex_tier_the_job_does_not_ask_for_changes_nothing() -> None:
    """flex_usd alone is shown, not used: no standard-from point, the online cost stands."""
    plan = make_plan(_situation(batch_usd=None, flex_usd=50.0))
    assert (plan.standard_from, plan.flex_rows, plan.expected_usd) == (None, 0, 100.0)
    assert plan.flex_usd == 50.0
