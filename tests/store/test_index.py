"""The done index: batch lookups, reuse of stored replies across runs, and damaged parts."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

import batchllm
from batchllm.cli import main
from batchllm.index import build_index, hash_one, hash_strings
from batchllm.outcome import OK, Outcome, results_schema
from batchllm.run.pipeline import arun_job
from batchllm.simulate import SimServer
from batchllm.tally import RunOptions
from conftest import job_data, ticket_rows, write_csv, write_job


def _part(path: Path, outcomes: list[Outcome]) -> Path:
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([o.to_row() for o in outcomes], schema=results_schema([], []))
    pq.write_table(table, path)
    return path


def _outcome(row: str, request: str, status: str = OK, run: str = "r1") -> Outcome:
    return Outcome(
        row_key=row, request_key=request, run_id=run, status=status, finished_at=1,
        input_hash=f"in-{row}", output=f"reply to {request}",
    )  # fmt: skip


def test_the_vectorised_hash_and_the_one_at_a_time_hash_agree() -> None:
    """A string hashes the same in a batch (numpy) and alone (Python), whatever its length."""
    texts = ["", "a", "abcdefgh", "abcdefgh\x00", "é漢字🙂" * 7, "T00042", "x" * 100]
    assert [int(h) for h in hash_strings(texts)] == [hash_one(t) for t in texts]
    assert len(set(hash_strings(texts).tolist())) == len(texts)


def test_the_latest_outcome_of_a_pair_decides_whether_it_failed(tmp_path: Path) -> None:
    """Done pairs are found a batch at a time; a pair whose latest outcome failed is not done
    for --retry-failed, and one failed then ok is."""
    first = _part(tmp_path / "part-r1-00001.parquet", [
        _outcome("a", "q1"), _outcome("b", "q2", "failed"), _outcome("c", "q3", "failed"),
    ])  # fmt: skip
    second = _part(tmp_path / "part-r2-00001.parquet", [_outcome("c", "q3", run="r2")])
    index = build_index([first, second], frozenset({"r1", "r2"}))
    keys, requests = ["a", "b", "c", "d"], ["q1", "q2", "q3", "q1"]
    assert index.done_requests(keys, requests, retry_failed=False).tolist() == [1, 1, 1, 0]
    assert index.done_requests(keys, requests, retry_failed=True).tolist() == [1, 0, 1, 0]
    assert index.is_done_input("b", "in-b", retry_failed=False)
    assert not index.is_done_input("b", "in-b", retry_failed=True)
    assert index.has_answer("q1") and index.has_answer("q3") and not index.has_answer("q2")
    assert (index.answer("q3") or {})["run_id"] == "r2"


async def test_a_request_answered_in_an_earlier_run_is_not_sent_again(
    tmp_path: Path, sim: SimServer
) -> None:
    """A new row asking what an earlier run's row asked gets the stored reply at no cost;
    with --fresh it is sent."""
    rows = ticket_rows(20)
    write_csv(tmp_path / "input.csv", rows)
    job = batchllm.load_job(write_job(tmp_path, job_data(sim.url)))
    assert (await arun_job(job)).sent == 20
    again = [{"id": f"N{i}", "text": row["text"]} for i, row in enumerate(rows[:5])]
    write_csv(tmp_path / "input.csv", rows + again)
    second = await arun_job(job)
    assert (second.sent, second.ok, second.reused) == (0, 5, 20)
    assert sim.stats()["requests"] == 20
    shared = batchllm.query(
        job, "select sum(cost_usd) as cost, min(output) as output from results "
        "where row_key like 'N%'"
    ).to_pylist()[0]  # fmt: skip
    assert shared["cost"] == 0 and shared["output"]
    fresh = await arun_job(job, RunOptions(fresh=True))
    assert fresh.sent == 20  # the 25 rows ask 20 distinct requests
    assert sim.stats()["requests"] == 40


def _damage(job_path: Path, sim: SimServer, tmp_path: Path) -> Path:
    write_csv(tmp_path / "input.csv", ticket_rows(5))
    runner = CliRunner()
    assert runner.invoke(main, ["run", str(job_path)]).exit_code == 0
    part = next((tmp_path / "run" / "results").glob("part-*.parquet"))
    part.write_bytes(part.read_bytes()[:40])  # truncated: no footer
    return part


@pytest.mark.parametrize(
    "command",
    [
        ["run"],
        ["run", "--fresh"],
        ["estimate", "--sample", "0"],
        ["query", "select count(*) from results"],
        ["report"],
    ],
)
def test_a_damaged_part_is_a_one_line_error_before_any_request(
    tmp_path: Path, sim: SimServer, command: list[str]
) -> None:
    """A truncated results part: exit 2 and one line naming the part and what to do, and the
    provider sees no request."""
    job_path = write_job(tmp_path, job_data(sim.url))
    part = _damage(job_path, sim, tmp_path)
    before = sim.stats()["requests"]
    result = CliRunner().invoke(main, [command[0], str(job_path), *command[1:]])
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and str(part) in message
    assert "damaged results part" in message and "move it out" in message
    assert sim.stats()["requests"] == before


def test_an_empty_index_knows_nothing(tmp_path: Path) -> None:
    """No parts: empty, no pair done, no request answered, nothing to read back."""
    index = build_index([], frozenset())
    assert index.empty and len(index) == 0
    assert index.done_requests(["a"], ["q1"], retry_failed=False).tolist() == [0]
    assert not index.has_answer("q1") and index.answer("q1") is None
    assert index.answered(["q1", "q2"]).tolist() == [False, False]


def test_input_hashes_count_only_for_runs_of_the_same_job(tmp_path: Path) -> None:
    """(row, input hash) marks come only from runs with the job's fingerprint: the same data
    under a changed prompt is not done; (row, request) marks count whatever the run."""
    part = _part(tmp_path / "part-r1-00001.parquet", [_outcome("a", "q1")])
    same = build_index([part], frozenset({"r1"}))
    other = build_index([part], frozenset({"r9"}))
    assert same.is_done_input("a", "in-a", retry_failed=False)
    assert not other.is_done_input("a", "in-a", retry_failed=False)
    assert other.is_done("a", "q1", retry_failed=False)


def test_parts_added_as_they_are_written_are_found(tmp_path: Path) -> None:
    """A run's index learns each part as it is cut (newest wins), folding many parts together
    without losing any pair."""
    index = build_index([], frozenset({"r1"}))
    for n in range(12):
        outcomes = [_outcome(f"row{n}-{i}", f"q{n}-{i}") for i in range(5)]
        index.add_part(_part(tmp_path / f"part-r1-{n:05d}.parquet", outcomes))
    keys = [f"row{n}-{i}" for n in range(12) for i in range(5)]
    requests = [f"q{n}-{i}" for n in range(12) for i in range(5)]
    assert index.done_requests(keys, requests, retry_failed=False).all()
    assert len(index) == 60
    failed = _part(tmp_path / "part-r1-00099.parquet", [_outcome("row0-0", "q0-0", "failed")])
    index.add_part(failed)
    assert not index.is_done("row0-0", "q0-0", retry_failed=True)
    assert index.is_done("row0-1", "q0-1", retry_failed=True)


def test_the_stored_answer_of_a_request_is_read_back_whole(tmp_path: Path) -> None:
    """answer() reads the ok outcome of a request from its part: its output and its row; a
    request only ever failed has no answer."""
    part = _part(tmp_path / "part-r1-00001.parquet", [
        _outcome("a", "q1"), _outcome("b", "q2", "failed"),
    ])  # fmt: skip
    index = build_index([part], frozenset({"r1"}))
    answer = index.answer("q1")
    assert answer is not None
    assert (answer["output"], answer["row_key"], answer["status"]) == ("reply to q1", "a", OK)
    assert index.answer("q2") is None
    assert index.answered(["q1", "q2", "q3"]).tolist() == [True, False, False]
