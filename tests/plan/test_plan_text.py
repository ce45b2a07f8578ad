"""The plan as ``estimate --deadline`` shows it, from plans the real planner makes."""

from __future__ import annotations

from batchllm.plan.planner import Situation, make_plan
from batchllm.plan.text import plan_lines

NOW = 1_800_000_000.0
HOUR = 3600.0


def _situation(**changes: object) -> Situation:
    values: dict[str, object] = {
        "rows": 50_000, "online_usd": 10.0, "batch_usd": 5.0, "rows_per_s": 20.0, "now": NOW,
        "deadline": NOW + 8 * HOUR,
    }  # fmt: skip
    values.update(changes)
    return Situation(**values)


def _line(lines: list[str], label: str) -> str:
    return next(line for line in lines if line.strip().startswith(label))


def test_a_batch_plan_shows_the_switch_point_and_the_guess_it_rests_on() -> None:
    """With time to spare: every row in a batch, the switch point with the online time, the
    batch time marked a guess when no batch has returned yet, and the worst case."""
    lines = plan_lines(make_plan(_situation()))
    assert "50,000 rows in a batch, online at the switch point" in _line(lines, "plan")
    assert "rows still in a batch move online" in _line(lines, "switch point")
    assert "(~42 min online for every row)" in _line(lines, "switch point")
    assert "(a guess: no batch returned yet)" in _line(lines, "batch time")
    assert _line(lines, "worst case").endswith("(the batch returns nothing, every row online)")
    assert not any("REFUSED" in line for line in lines)


def test_history_replaces_the_guess() -> None:
    """When this job's batches have returned before, the batch time says it comes from them."""
    lines = plan_lines(make_plan(_situation(batch_s=1800.0)))
    assert "~30 min (what this job's batches took)" in _line(lines, "batch time")


def test_an_online_plan_says_how_long_online_takes() -> None:
    """Too little time for a batch: every row online, with the time it takes."""
    lines = plan_lines(make_plan(_situation(deadline=NOW + 3000)))  # online needs ~2,500 s
    assert _line(lines, "plan").endswith("50,000 rows online (~42 min)")
    assert not any(line.strip().startswith("switch point") for line in lines)


def test_an_impossible_deadline_is_shown_refused_with_the_reason() -> None:
    """Not even online can make it: the screen ends with REFUSED and why."""
    lines = plan_lines(make_plan(_situation(deadline=NOW + 600)))
    assert lines[-1].strip().startswith("REFUSED")
    assert len(lines[-1]) > len("  REFUSED         ")


def test_the_deadline_and_the_finish_are_dated() -> None:
    """The deadline and the expected finish are full local dates with their zone."""
    lines = plan_lines(make_plan(_situation()))
    deadline = _line(lines, "deadline")
    finish = _line(lines, "expected finish")
    for line in (deadline, finish):
        day, time = line.split()[-3:-1]
        assert day.count("-") == 2 and time.count(":") == 2


def test_a_flex_plan_shows_every_tier_and_when_the_standard_tier_takes_over() -> None:
    """Flex asked for, no batch: the tiers with their prices, the rows expected at flex, and
    the moment refused rows go at the standard tier."""
    lines = plan_lines(make_plan(_situation(batch_usd=None, flex=True, flex_usd=5.0)))
    assert _line(lines, "tiers") == "  tiers           flex $5.0000, online $10.0000"
    assert "rows online at flex" in _line(lines, "plan")
    assert "go at the standard tier" in _line(lines, "standard from")
    assert "every row at the standard tier" in _line(lines, "worst case")


def test_a_flex_tier_not_asked_for_is_priced_and_marked_unused() -> None:
    """The screen says what flex would cost and how to ask for it."""
    lines = plan_lines(make_plan(_situation(flex_usd=5.0)))
    assert _line(lines, "tiers").endswith('flex $5.0000 (unused: [model] service_tier = "flex"), '
                                          "online $10.0000")  # fmt: skip
    assert "batch $5.0000" in _line(lines, "tiers")
