"""The sharded run's driver record: its lock, its run numbers and the shards' counts added up."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from batchllm.errors import RunDirError
from batchllm.job import JobSpec, load_job
from batchllm.scale.driver import DriverRecord, added, shard_total, worst_status
from conftest import job_data, ticket_rows, write_csv, write_job


def _job(tmp_path: Path) -> JobSpec:
    write_csv(tmp_path / "input.csv", ticket_rows(1))
    return load_job(write_job(tmp_path, job_data(None)))


def test_a_rerun_shard_counts_each_row_once() -> None:
    """A shard run again after its worker died: every attempt's requests and outcomes, the last
    attempt's rows, and what the first stored is not counted as reused."""
    first = {"rows": 50, "reused": 0, "sent": 22, "ok": 20, "cost_usd": 0.2, "status": "running"}
    again = {"rows": 100, "reused": 20, "sent": 80, "ok": 80, "cost_usd": 0.8, "status": "finished"}
    total = shard_total([first, again])
    assert (total["rows"], total["reused"], total["sent"], total["ok"]) == (100, 0, 102, 100)
    assert total["status"] == "finished" and total["cost_usd"] == pytest.approx(1.0)
    both = added([total, {**again, "rate_limit_wait_s": 2.5}])
    assert (both["ok"], both["rate_limit_wait_s"]) == (180, 2.5)
    assert worst_status(["finished", "interrupted", "budget"]) == "budget"
    assert worst_status(["finished", "finished"]) == "finished"


def test_the_driver_holds_the_run_directory(tmp_path: Path) -> None:
    """A second driver (or a local run) on the same directory is refused while one holds it."""
    job = _job(tmp_path)
    record = DriverRecord(job)
    try:
        with pytest.raises(RunDirError, match="another batchllm run"):
            DriverRecord(job)
    finally:
        record.close()
    DriverRecord(job).close()  # free again once closed


def test_a_killed_driver_s_run_is_reconciled_from_its_shards(tmp_path: Path) -> None:
    """A run left ``running`` becomes ``interrupted`` with what its shards recorded, and the
    next run takes the next number."""
    job = _job(tmp_path)
    record = DriverRecord(job)
    record.begin("R1", "fp", {"status": "running", "ok": 0}, 2)
    record.close()
    for shard, ok in ((0, 5), (1, 7)):
        place = job.output_dir / "shards" / f"{shard:03d}"
        place.mkdir(parents=True)
        entry = {"run_id": "R1", "status": "running", "ok": ok, "sent": ok, "rows": ok}
        (place / "manifest.json").write_bytes(orjson.dumps({"runs": [entry]}))

    record = DriverRecord(job)
    record.begin("R2", "fp", {"status": "running", "ok": 0}, 2)
    record.finish({"status": "finished", "ok": 3, "run_number": 99})
    record.close()

    runs = orjson.loads((job.output_dir / "manifest.json").read_bytes())["runs"]
    assert [(r["run_id"], r["run_number"], r["status"], r["ok"]) for r in runs] == [
        ("R1", 1, "interrupted", 12),
        ("R2", 2, "finished", 3),
    ]
