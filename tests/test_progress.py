"""The progress line and the end-of-run summary: what a person watching a run reads."""

from __future__ import annotations

import io
import time

import pytest

from batchllm.outcome import FAILED, INVALID, OK, Outcome
from batchllm.progress import ProgressLine, summary_text
from batchllm.tally import RunSummary, Tally


def _outcome(status: str, cost: float = 0.001, tokens: int = 100) -> Outcome:
    return Outcome(
        row_key="k", request_key="r", run_id="run", status=status, finished_at=0,
        input_tokens=tokens, output_tokens=tokens // 2, cached_tokens=tokens // 4, cost_usd=cost,
    )  # fmt: skip


def _summary(**changes: object) -> RunSummary:
    values: dict[str, object] = {
        "job": "triage", "run_id": "r1", "run_dir": "/runs/triage", "status": "finished",
        "rows": 300,
        "reused": 200, "sent": 100, "ok": 97, "failed": 3, "invalid": 0, "input_tokens": 12_000,
        "output_tokens": 3_000, "cached_tokens": 1_000, "cost_usd": 0.0123, "wall_s": 10.0,
        "price_source": "genai-prices 1: openai/gpt-4o-mini",
    }  # fmt: skip
    values.update(changes)
    return RunSummary(**values)


def test_the_tally_counts_outcomes_by_status_with_their_usage() -> None:
    """ok, failed and invalid outcomes are counted apart; tokens and cost add up."""
    tally = Tally()
    for status in (OK, OK, FAILED, INVALID):
        tally.add(_outcome(status))
    assert (tally.ok, tally.failed, tally.invalid, tally.done) == (2, 1, 1, 4)
    assert (tally.input_tokens, tally.output_tokens, tally.cached_tokens) == (400, 200, 100)
    assert tally.cost_usd == pytest.approx(0.004)


def test_the_progress_line_shows_rows_bar_rate_cost_and_eta() -> None:
    """With a known total: done/total, a 20-character bar and percentage, rows/s, the spend so
    far with its projection, and an ETA."""
    stream = io.StringIO()
    tally = Tally(total=200, started=time.monotonic() - 10)
    for _ in range(50):
        tally.add(_outcome(OK, cost=0.002))
    tally.reused = 50
    ProgressLine(stream)(tally)
    line = stream.getvalue()
    assert line.startswith("\r100/200 rows")
    assert "[##########..........]  50%" in line
    assert "5 rows/s" in line
    assert "$0.1000 → ~$0.3000, $0.6000/min" in line
    assert "ETA 20.0s" in line


def test_failures_appear_on_the_line_only_when_there_are_some() -> None:
    """The failed count is shown once a row has failed or come back invalid."""
    stream = io.StringIO()
    line = ProgressLine(stream)
    tally = Tally()
    tally.add(_outcome(OK))
    line(tally)
    assert "failed" not in stream.getvalue()
    tally.add(_outcome(FAILED))
    tally.add(_outcome(INVALID))
    line(tally)
    assert "2 failed" in stream.getvalue().split("\r")[-1]


def test_a_shorter_line_overwrites_all_of_the_longer_one_before_it() -> None:
    """Each redraw pads to the previous width, so no stale characters remain; close ends it."""
    stream = io.StringIO()
    line = ProgressLine(stream)
    long_tally = Tally(total=10_000)
    long_tally.add(_outcome(FAILED))
    line(long_tally)
    first = stream.getvalue()
    line(Tally())
    second = stream.getvalue()[len(first) :]
    assert len(second) >= len(first)
    line.close()
    assert stream.getvalue().endswith("\n")


def test_close_without_a_line_writes_nothing() -> None:
    """A run that never drew a line (no terminal) leaves the stream untouched."""
    stream = io.StringIO()
    ProgressLine(stream).close()
    assert stream.getvalue() == ""


def test_the_summary_says_rows_tokens_cost_and_where_the_results_are() -> None:
    """Three lines: rows by outcome, tokens and cost with the price source, wall time and the
    results directory."""
    lines = summary_text(_summary()).splitlines()
    assert lines[0] == "triage: 300 rows: 97 ok, 3 failed, 200 already done"
    assert lines[1] == (
        "tokens: 12,000 in (1,000 cached), 3,000 out; cost $0.0123 "
        "(genai-prices 1: openai/gpt-4o-mini)"
    )
    assert lines[2] == "wall 10.0s (10 rows/s); results in /runs/triage"
    assert lines[3] == "3 rows failed or invalid in the results; --retry-failed sends them again"


def test_the_summary_counts_failures_left_by_earlier_runs() -> None:
    """Rows reused from earlier runs whose result is failed count in what is left to retry."""
    text = summary_text(_summary(ok=0, failed=0, reused=300, reused_failed=87, sent=0))
    assert "300 already done (87 of them failed or invalid)" in text
    assert "87 rows failed or invalid in the results" in text


def test_a_clean_summary_has_no_retry_line() -> None:
    """Nothing failed, now or before: no line about --retry-failed; invalid shown only if any."""
    text = summary_text(_summary(failed=0, ok=100))
    assert "--retry-failed" not in text and "invalid" not in text
    assert "2 invalid" in summary_text(_summary(invalid=2))


@pytest.mark.parametrize(
    ("wall", "shown"), [(3.25, "wall 3.2s"), (75, "wall 1m15s"), (3 * 3600 + 125, "wall 3h02m")]
)
def test_durations_read_as_seconds_minutes_or_hours(wall: float, shown: str) -> None:
    """Short runs in seconds, longer ones in minutes and seconds, long ones in hours."""
    assert shown in summary_text(_summary(wall_s=wall))


def test_the_failure_rate_counts_earlier_failures_too() -> None:
    """failure_rate is failed and invalid rows, this run's and earlier ones', over finished."""
    summary = _summary(ok=90, failed=5, invalid=5, reused=100, reused_failed=10)
    assert summary.unresolved == 20
    assert summary.failure_rate == pytest.approx(20 / 200)
    assert _summary(ok=0, failed=0, invalid=0, reused=0).failure_rate == 0.0
