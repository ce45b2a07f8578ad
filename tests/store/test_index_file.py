"""The done index kept on disk: the same answers as one built from the parts, parts added or
compacted since, a damaged file, and a writer killed part way."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from structlog.testing import capture_logs

import batchllm
from batchllm import index_file
from batchllm.index import DoneIndex, build_index
from batchllm.index_file import INDEX_FILE, open_index, save_index
from batchllm.outcome import OK, Outcome, results_schema
from batchllm.parts import read_done
from batchllm.run.pipeline import arun_job
from batchllm.simulate import SimServer
from conftest import job_data, ticket_rows, write_csv, write_job

RUNS = frozenset({"r1", "r2", "r3"})
ROWS = [f"k{i}" for i in range(40)]


def _part(path: Path, outcomes: list[Outcome]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([o.to_row() for o in outcomes], schema=results_schema([], []))
    pq.write_table(table, path, row_group_size=7)
    return path


def _outcome(row: str, request: str, status: str = OK, run: str = "r1") -> Outcome:
    return Outcome(
        row_key=row, request_key=request, run_id=run, status=status, finished_at=1,
        input_hash=f"in-{row}", output=f"reply to {request} by {run}",
    )  # fmt: skip


def _parts(run_dir: Path) -> list[Path]:
    runs = [{"run_id": run} for run in sorted(RUNS)]
    (run_dir / "manifest.json").write_bytes(orjson.dumps({"runs": runs}))
    results = run_dir / "results"
    first = [
        _outcome(row, f"q{i % 30}", "failed" if i % 7 == 0 else OK)
        for i, row in enumerate(ROWS[:30])
    ]
    second = [_outcome(row, f"q{i}", run="r2") for i, row in enumerate(ROWS[::3])]
    third = [_outcome(row, "q99", "failed", run="r3") for row in ROWS[30:]]
    return [
        _part(results / "part-r1-00001.parquet", first),
        _part(results / "part-r2-00001.parquet", second),
        _part(results / "part-r3-00001.parquet", third),
    ]  # fmt: skip


def _answers(index: DoneIndex) -> list[object]:
    requests = [f"q{i % 40}" for i in range(len(ROWS))] + ["q99"] * 3
    keys = ROWS + ROWS[:3]
    inputs = [f"in-{key}" for key in keys]
    return [
        index.done_requests(keys, requests, retry_failed=False).tolist(),
        index.done_requests(keys, requests, retry_failed=True).tolist(),
        index.done_inputs(keys, inputs, retry_failed=True).tolist(),
        index.answered(requests).tolist(),
        [(index.answer(request) or {}).get("output") for request in requests],
    ]


def test_an_index_read_from_its_file_answers_as_one_built_from_the_parts(tmp_path: Path) -> None:
    """Every question asked of the memory-mapped file gets the answer a fresh build gives."""
    parts = _parts(tmp_path)
    save_index(tmp_path, parts, RUNS)
    reused = open_index(tmp_path, parts, RUNS)
    assert reused._fixed == 1  # the file's arrays, not a build
    assert len(reused) == len(build_index(parts, RUNS))
    assert _answers(reused) == _answers(build_index(parts, RUNS))


def test_parts_written_since_the_file_are_read_and_merged_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file covering the first parts serves them, the later parts are read as layers, and the
    file written next merges them in (a few rows at a time) with the same answers."""
    monkeypatch.setattr(index_file, "_SLICE", 3)
    parts = _parts(tmp_path)
    save_index(tmp_path, parts[:1], RUNS)
    assert _answers(open_index(tmp_path, parts, RUNS)) == _answers(build_index(parts, RUNS))
    save_index(tmp_path, parts[:2], RUNS)
    save_index(tmp_path, parts, RUNS)
    merged = open_index(tmp_path, parts, RUNS)
    assert len(merged._layers) == 1 and merged._fixed == 1
    assert len(merged) == len(build_index(parts, RUNS))
    assert _answers(merged) == _answers(build_index(parts, RUNS))


def test_a_file_built_from_the_parts_a_few_row_groups_at_a_time_answers_as_a_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built a few row groups at a time, each merged into the file, the file answers as one
    index built from all parts at once."""
    monkeypatch.setattr(index_file, "_BUILD_ROWS", 10)
    monkeypatch.setattr(index_file, "_SLICE", 4)
    parts = _parts(tmp_path)
    save_index(tmp_path, parts, RUNS)
    assert _answers(open_index(tmp_path, parts, RUNS)) == _answers(build_index(parts, RUNS))
    assert len(open_index(tmp_path, parts, RUNS)) == len(build_index(parts, RUNS))


def test_parts_compacted_or_removed_since_the_file_make_a_rebuild(tmp_path: Path) -> None:
    """A file whose parts are not the directory's first ones (one gone, one rewritten) is not
    used: the index is built from the parts, and the next file written is theirs."""
    parts = _parts(tmp_path)
    save_index(tmp_path, parts, RUNS)
    gone = [parts[0], parts[2]]
    parts[1].unlink()
    assert open_index(tmp_path, gone, RUNS)._fixed == 0
    assert _answers(open_index(tmp_path, gone, RUNS)) == _answers(build_index(gone, RUNS))
    _part(parts[0], [_outcome("k1", "q1", run="r3")])  # rewritten, as compaction does
    assert open_index(tmp_path, gone, RUNS)._fixed == 0
    save_index(tmp_path, gone, RUNS)
    assert _answers(open_index(tmp_path, gone, RUNS)) == _answers(build_index(gone, RUNS))


def test_other_runs_counting_by_input_make_a_rebuild(tmp_path: Path) -> None:
    """The file records which runs count as done by input and every run then known: with other
    known runs counting it is not used; runs begun since it was written change nothing."""
    parts = _parts(tmp_path)
    save_index(tmp_path, parts, frozenset({"r1"}))
    assert open_index(tmp_path, parts, RUNS)._fixed == 0
    none = open_index(tmp_path, parts, frozenset())
    assert _answers(none) == _answers(build_index(parts, frozenset()))
    later = frozenset({"r1", "r4"})  # a run begun after the file, of the same job
    assert open_index(tmp_path, parts, later)._fixed == 1
    assert _answers(open_index(tmp_path, parts, later)) == _answers(build_index(parts, later))


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "garbage footer", "empty"])
def test_a_damaged_file_is_rebuilt_from_the_parts_with_a_warning(
    tmp_path: Path, damage: str
) -> None:
    """A truncated or overwritten index file is never an error: a warning, then a build."""
    parts = _parts(tmp_path)
    save_index(tmp_path, parts, RUNS)
    path = tmp_path / INDEX_FILE
    data = path.read_bytes()
    broken = {
        "truncated": data[: len(data) // 2],
        "zeroed": b"\0" * len(data),
        "garbage footer": data[:-40] + b"{not json" + data[-31:],
        "empty": b"",
    }[damage]
    path.write_bytes(broken)
    with capture_logs() as logs:
        index = open_index(tmp_path, parts, RUNS)
    assert index._fixed == 0
    assert [log["event"] for log in logs] == ["index.rebuilt"]
    assert logs[0]["log_level"] == "warning"
    assert _answers(index) == _answers(build_index(parts, RUNS))
    save_index(tmp_path, parts, RUNS)
    assert open_index(tmp_path, parts, RUNS)._fixed == 1


async def test_runs_write_the_file_and_a_killed_writer_leaves_exactly_once(
    tmp_path: Path, sim: SimServer
) -> None:
    """A run's end leaves the index file; what a writer killed part way leaves (its temporary
    files, beside the old file) changes nothing: the next run sends only the new rows."""
    rows = ticket_rows(30)
    write_csv(tmp_path / "input.csv", rows[:20])
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    assert (await arun_job(job)).sent == 20
    run_dir = job.output_dir
    path = run_dir / INDEX_FILE
    assert path.exists() and read_done(run_dir, job.fingerprint)._fixed == 1
    old = path.read_bytes()
    (run_dir / f"{INDEX_FILE}.tmp4242").write_bytes(old[: len(old) // 3])
    (run_dir / f"{INDEX_FILE}.tmp4242.answers").write_bytes(old[:100])
    write_csv(tmp_path / "input.csv", rows)
    second = await arun_job(job)
    assert (second.sent, second.ok) == (10, 10)
    assert sorted(p.name for p in run_dir.glob(f"{INDEX_FILE}*")) == [INDEX_FILE]
    assert (await arun_job(job)).sent == 0
    shutil.copy(path, tmp_path / "kept")
    path.write_bytes(old[:-5])  # a file cut short however it happened
    with capture_logs() as logs:
        assert (await arun_job(job)).sent == 0
    assert "index.rebuilt" in [log["event"] for log in logs]
    assert sim.stats()["requests"] == 30
    assert read_done(run_dir, job.fingerprint)._fixed == 1


def test_a_file_replaced_between_its_footer_and_its_mapping_is_not_used(tmp_path: Path) -> None:
    """A reader without the lock that sees the file replaced after reading its footer builds
    from the parts rather than map the new file with the old file's offsets."""
    parts = _parts(tmp_path)
    save_index(tmp_path, parts[:1], RUNS)
    footer = index_file._read_footer(tmp_path / INDEX_FILE)
    (tmp_path / INDEX_FILE).unlink()
    save_index(tmp_path, parts, RUNS)
    with pytest.raises(index_file.Stale):
        index_file._mapped(tmp_path / INDEX_FILE, footer)
