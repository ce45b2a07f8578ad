"""The run directory's parts: outcomes held until a part is cut, and a slow run's small parts
merged at its end, crash-safely."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson

import batchllm
from batchllm.compact import MERGE_FROM
from batchllm.outcome import results_schema, row_failure
from batchllm.pending import BATCH_ROWS
from batchllm.store import Store

RUN_ID = "20261126T120000.000000Z"


async def _write_slowly(run_dir: Path, outcomes: int, part_rows: int) -> Store:
    """A store that cuts a part at every outcome, like a slow run; parts all on disk at return."""
    store = Store(run_dir, "job", results_schema([], []), part_rows=part_rows, part_seconds=0)
    store.begin_run(RUN_ID, {"status": "running"}, "fingerprint")
    for i in range(outcomes):
        store.write(row_failure(RUN_ID, f"R{i:04d}", {}, "no", "input"))
    await store.flush()
    assert len(_parts(run_dir)) == outcomes
    return store


def _parts(run_dir: Path) -> list[str]:
    return sorted(path.name for path in (run_dir / "results").glob("part-*.parquet"))


def _keys(run_dir: Path) -> list[str]:
    table = batchllm.query(run_dir, "select row_key from all_results order by row_key")
    return table.column(0).to_pylist()


async def test_small_parts_are_merged_into_parts_of_part_rows(tmp_path: Path) -> None:
    """250 one-row parts end as parts of 100, 100 and 50 rows, every outcome once."""
    store = await _write_slowly(tmp_path, 250, part_rows=100)
    await store.finish_run({"status": "finished"})
    store.close()
    assert _parts(tmp_path) == [
        f"part-{RUN_ID}-00001-00100.parquet",
        f"part-{RUN_ID}-00101-00200.parquet",
        f"part-{RUN_ID}-00201-00250.parquet",
    ]
    assert _keys(tmp_path) == [f"R{i:04d}" for i in range(250)]
    assert not (tmp_path / "merge.json").exists()


async def test_a_merge_cut_after_its_part_landed_is_finished_on_open(tmp_path: Path) -> None:
    """Merged part, sources and merge.json all on disk (a crash before the deletes): the next open
    deletes the sources, so no outcome appears twice."""
    store = await _write_slowly(tmp_path, 30, part_rows=100)
    sources = _parts(tmp_path)
    shutil.copytree(tmp_path / "results", tmp_path / "before")
    await store.finish_run({"status": "finished"})
    store.close()
    [merged] = _parts(tmp_path)
    for name in sources:
        shutil.copy(tmp_path / "before" / name, tmp_path / "results" / name)
    marker = {"target": merged, "sources": sources}
    (tmp_path / "merge.json").write_bytes(orjson.dumps(marker))
    assert len(_keys(tmp_path)) == 60  # the crash state: every outcome twice
    Store(tmp_path, "job", results_schema([], [])).close()
    assert _parts(tmp_path) == [merged]
    assert _keys(tmp_path) == [f"R{i:04d}" for i in range(30)]
    assert not (tmp_path / "merge.json").exists()


async def test_a_merge_cut_before_its_part_landed_keeps_the_sources(tmp_path: Path) -> None:
    """merge.json with only a half-written merged part: the next open drops that, keeps the rest."""
    store = await _write_slowly(tmp_path, 30, part_rows=100)
    sources = _parts(tmp_path)
    store.close()
    target = f"part-{RUN_ID}-00001-00030.parquet"
    (tmp_path / "results" / target).with_suffix(".parquet.tmp").write_bytes(b"PAR1 half")
    (tmp_path / "merge.json").write_bytes(orjson.dumps({"target": target, "sources": sources}))
    Store(tmp_path, "job", results_schema([], [])).close()
    assert _parts(tmp_path) == sources
    assert not list((tmp_path / "results").glob("*.tmp"))
    assert _keys(tmp_path) == [f"R{i:04d}" for i in range(30)]


async def test_a_few_small_parts_are_left_as_they_are(tmp_path: Path) -> None:
    """Fewer than MERGE_FROM small parts are no burden to read: no merge, no rewrite."""
    store = await _write_slowly(tmp_path, MERGE_FROM - 1, part_rows=100)
    parts = _parts(tmp_path)
    await store.finish_run({"status": "finished"})
    store.close()
    assert _parts(tmp_path) == parts and len(parts) == MERGE_FROM - 1


async def test_a_merge_that_fails_leaves_the_parts_and_the_run_finished(tmp_path: Path) -> None:
    """Merging only tidies: when it cannot write, the run still ends well with its small parts."""
    store = await _write_slowly(tmp_path, 10, part_rows=100)
    parts = _parts(tmp_path)
    (tmp_path / "results" / f"part-{RUN_ID}-00001-00010.parquet.tmp").mkdir()  # blocks the write
    await store.finish_run({"status": "finished"})
    store.close()
    assert _parts(tmp_path) == parts
    assert _keys(tmp_path) == [f"R{i:04d}" for i in range(10)]
    runs = batchllm.query(tmp_path, "select status from runs").to_pylist()
    assert runs == [{"status": "finished"}]


async def test_a_part_spanning_several_pending_batches_keeps_every_outcome_in_order(
    tmp_path: Path,
) -> None:
    """Outcomes held as Arrow batches between cuts: parts hold every outcome once, in order."""
    written = 3 * BATCH_ROWS + 7
    store = Store(tmp_path, "job", results_schema([], []), part_rows=2 * BATCH_ROWS + 1)
    store.begin_run(RUN_ID, {"status": "running"}, "fingerprint")
    for i in range(written):
        store.write(row_failure(RUN_ID, f"R{i:05d}", {}, "no", "input"))
    await store.finish_run({"status": "finished"})
    store.close()
    assert len(_parts(tmp_path)) == 2
    rows = batchllm.query(tmp_path, "select row_key, error from all_results order by seq")
    assert rows.column("row_key").to_pylist() == [f"R{i:05d}" for i in range(written)]
    assert set(rows.column("error").to_pylist()) == {"no"}


async def test_a_journal_of_several_batches_left_by_a_run_becomes_its_part(tmp_path: Path) -> None:
    """A run stopped before its cut leaves only the journal: the next open makes it a whole part."""
    written = BATCH_ROWS + 10
    store = Store(tmp_path, "job", results_schema([], []))
    store.begin_run(RUN_ID, {"status": "running"}, "fingerprint")
    for i in range(written):
        store.write(row_failure(RUN_ID, f"R{i:05d}", {}, "no", "input"))
    store.close()
    assert not _parts(tmp_path) and list((tmp_path / "journal").glob("*.jsonl"))
    Store(tmp_path, "job", results_schema([], [])).close()
    assert _parts(tmp_path) == [f"part-{RUN_ID}-00001.parquet"]
    assert not list((tmp_path / "journal").glob("*.jsonl"))
    assert _keys(tmp_path) == [f"R{i:05d}" for i in range(written)]
