"""Compaction: parts rewritten into a current and a history part, with history kept or not, and a
crash at each of its steps leaving a readable, complete run directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import batchllm
from batchllm.compact import MARKER, SEQ_BITS, compact
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


def test_compaction_keeps_the_latest_of_many_outcomes_of_many_rows(tmp_path: Path) -> None:
    """3,000 rows over three runs, a third of them answered twice and a sixth three times (their
    keys' hashes in every sorting range): the current part holds each row's latest outcome only,
    the history part every other one, and nothing is lost or kept twice."""
    run_dir, runs = tmp_path / "run", ["20260101T000000.000000Z", "20260102T000000.000000Z",
                                       "20260103T000000.000000Z"]  # fmt: skip
    (run_dir / "results").mkdir(parents=True)
    manifest = {"runs": [{"run_id": run, "run_number": n} for n, run in enumerate(runs, 1)]}
    (run_dir / "manifest.json").write_bytes(orjson.dumps(manifest))
    for number, (run, rows) in enumerate(zip(runs, (3000, 1000, 500), strict=True), 1):
        keys = [f"row-{i:05d}" for i in range(0, 3 * rows, 3)] if number > 1 else None
        keys = keys or [f"row-{i:05d}" for i in range(rows)]
        seqs = [(number << SEQ_BITS) | i for i in range(len(keys))]
        table = pa.table({"row_key": keys, "run_id": [run] * len(keys), "seq": seqs})
        pq.write_table(table, run_dir / "results" / f"part-{run}-00001.parquet")

    compact(run_dir, parts_in_order(run_dir), "20260104T000000.000000Z", keep_history=True)

    current = pq.read_table(next((run_dir / "results").glob("*-current.parquet"))).to_pylist()
    history = pq.read_table(next((run_dir / "results").glob("*-history.parquet"))).to_pylist()
    latest = {row["row_key"]: row["run_id"] for row in current}
    assert len(current) == len(latest) == 3000
    expected = {f"row-{i:05d}": runs[2 if i % 3 == 0 and i < 1500 else 1 if i % 3 == 0 else 0]
                for i in range(3000)}  # fmt: skip
    assert latest == expected
    assert len(history) == 1500  # 1,000 first answers superseded, and 500 second ones
    assert len({(row["row_key"], row["run_id"]) for row in history + current}) == 4500


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
