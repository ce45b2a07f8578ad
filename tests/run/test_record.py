"""The run record: one value for the manifest entry, the runs view and the summary."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime

import pyarrow as pa

from batchllm import __version__
from batchllm.outcome import FAILED, OK, Outcome
from batchllm.run.record import Counters, RunRecord, record_of
from batchllm.tally import Tally


def _tally() -> Tally:
    tally = Tally(started=time.monotonic() - 30.0)
    for status in (OK, OK, OK, FAILED):
        tally.add(
            Outcome(
                row_key="k",
                request_key="r",
                run_id="x",
                status=status,
                finished_at=0,
                input_tokens=100,
                output_tokens=10,
                cost_usd=0.001234567891,
            )
        )
    tally.rows, tally.reused, tally.sent, tally.reused_failed = 10, 6, 4, 2
    return tally


def test_a_record_is_made_from_the_tally_and_the_counters() -> None:
    """Counts, cost, 429s, pauses and resends come from where the run counted them."""
    record = record_of(
        "r1", "run", "finished", _tally(), Counters(3, 1.23456, 2), limit=None, price_source="p"
    )
    assert (record.rows, record.reused, record.sent, record.ok, record.failed) == (10, 6, 4, 3, 1)
    assert (record.rate_limited, record.rate_limit_wait_s, record.stragglers_resent) == (
        3, 1.23456, 2,
    )  # fmt: skip
    assert (record.reused_failed, record.batchllm_version, record.kind) == (2, __version__, "run")


def test_a_running_record_has_no_end_and_a_finished_one_has() -> None:
    """While running, ended_at is empty; the start is the tally's start in wall-clock ISO."""
    running = record_of("r1", "run", "running", _tally(), Counters(), limit=5, price_source="p")
    assert running.ended_at is None and running.limit == 5
    started = datetime.fromisoformat(running.started_at)
    assert abs(started.timestamp() - (time.time() - 30.0)) < 5
    done = dataclasses.replace(running, status="finished", ended_at="2026-12-04T06:00:00+00:00")
    assert done.as_entry()["ended_at"] == "2026-12-04T06:00:00+00:00"


def test_the_manifest_entry_rounds_money_and_waits() -> None:
    """cost_usd keeps 8 digits and rate_limit_wait_s 3; every field is in the entry."""
    record = record_of(
        "r1", "run", "finished", _tally(), Counters(0, 1.23456, 0), limit=None, price_source="p"
    )
    entry = record.as_entry()
    assert entry["cost_usd"] == round(4 * 0.001234567891, 8)
    assert entry["rate_limit_wait_s"] == 1.235
    assert set(entry) == {field.name for field in dataclasses.fields(RunRecord)}


def test_the_runs_view_types_follow_the_fields() -> None:
    """Each field's annotation gives its column type: counts int64, money and waits double,
    text and optional text string."""
    schema = RunRecord.arrow_schema()
    assert schema.names == [field.name for field in dataclasses.fields(RunRecord)]
    types = dict(zip(schema.names, schema.types, strict=True))
    assert types["ok"] == types["limit"] == types["run_number"] == pa.int64()
    assert types["cost_usd"] == types["rate_limit_wait_s"] == pa.float64()
    assert types["run_id"] == types["ended_at"] == pa.string()


def test_the_summary_carries_the_record_and_the_tokens() -> None:
    """What run_job returns: the record's counts and cost, the tally's tokens and wall time."""
    tally = _tally()
    record = record_of("r1", "run", "finished", tally, Counters(), limit=None, price_source="p")
    summary = record.summary("triage", "/runs/triage", tally)
    assert (summary.job, summary.run_id, summary.run_dir) == ("triage", "r1", "/runs/triage")
    assert (summary.ok, summary.failed, summary.reused_failed) == (3, 1, 2)
    assert (summary.input_tokens, summary.output_tokens) == (400, 40)
    assert summary.wall_s >= 30.0
    assert summary.unresolved == 3
