"""Compaction: parts rewritten into a current and a history part, with history kept or not, and a
crash at each of its steps leaving a readable, complete run directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest

import batchllm
from batchllm.compact import MARKER, compact
from batchllm.parts import parts_in_order
from batchllm.run.pipeline import arun_job
from batchllm.simulate import SimServer
from batchllm.store import Store
from conftest import job_data, ticket_rows, write_csv, write_job

_LATEST = "select row_key, status, output, run_id from results order by row_key"
_ALL = "select row_key, run_id, seq from all_results order by seq"


async def _two_nights(tmp_path: Path, sim: SimServer, keep_history: bool = True) -> Path:
    """Night one: 10 rows; night two: rows 0-4 changed (asked again) and 5 new rows."""
    rows = ticket_rows(15)
    write_csv(tmp_path / "input.csv", rows[:10])
    data = job_data(sim.url, output={"dir": "run", "keep_history": keep_history})
    job = batchllm.load_job(write_job(tmp_path, data))
    await arun_job(job)
    changed = [{**row, "text": row["text"] + " (edited)"} for row in rows[:5]]
    write_csv(tmp_path / "input.csv", changed + rows[5:])
    assert (await arun_job(job)).sent == 10
    return tmp_path / "job.toml"


def _compact(run_dir: Path, keep_history: bool) -> None:
    compact(run_dir, parts_in_order(run_dir), "20990101T000000.000000Z", keep_history=keep_history)


@pytest.mark.parametrize("keep_history", [True, False])
async def test_compaction_keeps_every_latest_outcome_and_history_when_asked(
    tmp_path: Path, sim: SimServer, keep_history: bool
) -> None:
    """After compaction ``results`` is unchanged; ``all_results`` keeps the 5 superseded
    outcomes with keep_history and drops them without; the run directory holds at most two
    parts, and a third night still reuses every done row."""
    job = await _two_nights(tmp_path, sim, keep_history)
    run_dir = tmp_path / "run"
    latest, every = batchllm.query(job, _LATEST), batchllm.query(job, _ALL)
    assert every.num_rows == 20 and latest.num_rows == 15
    _compact(run_dir, keep_history)
    parts = sorted(p.name for p in (run_dir / "results").glob("*.parquet"))
    assert len(parts) == (2 if keep_history else 1)
    assert batchllm.query(job, _LATEST) == latest
    kept = batchllm.query(job, _ALL)
    assert kept.num_rows == (20 if keep_history else 15)
    third = await arun_job(batchllm.load_job(job))
    assert (third.sent, third.reused) == (0, 15)
    assert batchllm.query(job, _LATEST) == latest


async def test_results_after_compaction_see_later_outcomes(tmp_path: Path, sim: SimServer) -> None:
    """A row asked again after compaction: ``results`` shows its new outcome, not the
    compacted one."""
    job = await _two_nights(tmp_path, sim)
    _compact(tmp_path / "run", True)
    rows = ticket_rows(15)
    write_csv(tmp_path / "input.csv", [{**rows[7], "text": "new text"}, *rows[8:]])
    assert (await arun_job(batchllm.load_job(job))).sent == 1
    found = batchllm.query(job, "select run_id, count(*) over () as n from results "
                                "where row_key = 'T00007'").to_pylist()  # fmt: skip
    runs = batchllm.query(job, "select run_id from runs order by run_number").to_pylist()
    assert found == [{"run_id": runs[-1]["run_id"], "n": 1}]


def _crash_states(run_dir: Path, work: Path) -> dict[str, Path]:
    """Copies of ``run_dir`` as a kill at each step of a compaction would leave it."""
    before = work / "before"
    shutil.copytree(run_dir, before)
    after = work / "after"
    shutil.copytree(run_dir, after)
    _compact(after, True)
    sources = sorted(p.name for p in (before / "results").glob("*.parquet"))
    targets = sorted(p.name for p in (after / "results").glob("*.parquet"))
    marker = {"targets": targets, "sources": sources}
    states = {}

    def state(name: str, landed: list[str], tmp: list[str], kept: list[str], mark: bool) -> None:
        path = work / name
        shutil.copytree(before, path)
        results = path / "results"
        for source in sources:
            if source not in kept:
                (results / source).unlink()
        for target in landed:
            shutil.copy(after / "results" / target, results / target)
        for target in tmp:
            shutil.copy(after / "results" / target, results / f"{target[:-8]}.parquet.tmp")
        if mark:
            import orjson

            (path / MARKER).write_bytes(orjson.dumps(marker))
        states[name] = path

    state("writing", [], targets[:1], sources, mark=False)
    state("marked", [], targets, sources, mark=True)
    state("one-landed", targets[:1], targets[1:], sources, mark=True)
    state("all-landed", targets, [], sources, mark=True)
    state("deleting", targets, [], sources[1:], mark=True)
    return states


async def test_a_crash_at_each_step_of_compaction_leaves_a_complete_directory(
    tmp_path: Path, sim: SimServer
) -> None:
    """Killed while writing, after its marker, after each rename, or while deleting its sources:
    opening the directory leaves the same results and history, and no marker or temp file."""
    job = await _two_nights(tmp_path, sim)
    latest, every = batchllm.query(job, _LATEST), batchllm.query(job, _ALL)
    work = tmp_path / "states"
    work.mkdir()
    for name, path in _crash_states(tmp_path / "run", work).items():
        Store(path, "test-job", pa.schema([])).close()
        assert not (path / MARKER).exists(), name
        assert not list((path / "results").glob("*.tmp")), name
        assert batchllm.query(path, _LATEST) == latest, name
        assert batchllm.query(path, _ALL) == every, name
