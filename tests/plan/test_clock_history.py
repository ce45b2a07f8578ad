"""Reading a deadline, and remembering how long this job's batches took."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from batchllm.plan.clock import deadline_at, deadline_problem
from batchllm.plan.history import History


def _local(text: str) -> float:
    return datetime.fromisoformat(text).astimezone().timestamp()


def test_a_clock_time_is_the_next_such_time() -> None:
    """06:00 read at 23:00 is tomorrow's 06:00; read at 05:00 it is today's."""
    late = _local("2026-12-04T23:00:00")
    early = _local("2026-12-04T05:00:00")
    assert deadline_at("06:00", late) == _local("2026-12-05T06:00:00")
    assert deadline_at("06:00", early) == _local("2026-12-04T06:00:00")
    assert deadline_at(" 6:30 ", early) == _local("2026-12-04T06:30:00")


def test_the_exact_minute_now_is_tomorrow() -> None:
    """A deadline of the very minute it is read would be already passed: the next day's."""
    now = _local("2026-12-04T06:00:00")
    assert deadline_at("06:00", now) == now + timedelta(days=1).total_seconds()


def test_an_iso_time_is_taken_as_given() -> None:
    """An ISO date and time is that moment (local unless it names a zone)."""
    assert deadline_at("2026-12-05T06:00", 0.0) == _local("2026-12-05T06:00:00")
    assert (
        deadline_at("2026-12-05T06:00+00:00", 0.0)
        == datetime.fromisoformat("2026-12-05T06:00:00+00:00").timestamp()
    )


@pytest.mark.parametrize("text", ["24:00", "6", "tomorrow", "06:60", "2026-13-01T06:00"])
def test_what_is_not_a_deadline_says_what_is_expected(text: str) -> None:
    """Anything else is refused with the two forms a deadline takes."""
    problem = deadline_problem(text)
    assert problem is not None and "expected HH:MM or an ISO date and time" in problem
    assert deadline_problem("06:00") is None


def test_a_new_job_has_no_batch_history(tmp_path: Path) -> None:
    """No batches collected yet: no typical time (the plan then uses its guess)."""
    assert History(tmp_path).typical_s("openai", 1000) is None


def test_the_typical_time_is_the_median_of_batches_of_about_this_size(tmp_path: Path) -> None:
    """Batches within 4x of the size count; the median of their times; others are ignored
    while some are close."""
    history = History(tmp_path)
    for requests, seconds in ((1000, 600), (1200, 900), (900, 3000), (100_000, 20_000)):
        history.add("openai", requests, seconds, "completed")
    history.add("anthropic", 1000, 60, "ended")
    assert history.typical_s("openai", 1000) == 900
    assert history.typical_s("openai", 90_000) == 20_000
    assert history.typical_s("anthropic", 1000) == 60


def test_without_a_close_size_any_batch_of_the_provider_counts(tmp_path: Path) -> None:
    """A size never seen: the median over all the provider's batches; another provider's none."""
    history = History(tmp_path)
    history.add("openai", 10, 100, "completed")
    history.add("openai", 20, 300, "completed")
    assert history.typical_s("openai", 50_000) == 200
    assert history.typical_s("gemini", 10) is None


def test_the_history_is_kept_in_the_run_directory(tmp_path: Path) -> None:
    """What one run adds, the next run reads back (batches/history.json, written whole)."""
    History(tmp_path).add("openai", 500, 1234.5678, "cancelled")
    again = History(tmp_path)
    assert again.entries == [
        {"provider": "openai", "requests": 500, "status": "cancelled", "seconds": 1234.568}
    ]
    assert (tmp_path / "batches" / "history.json").exists()
    assert not list((tmp_path / "batches").glob("*.tmp"))
