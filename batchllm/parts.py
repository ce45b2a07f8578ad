"""A run directory's parts read without its lock: in their order, checked, as a done index, and
what one run saved.

Readers (``query``, ``estimate``, the next run while it opens the directory) come here; writing
parts, the journal and the manifest is ``store``'s. Order never depends on the clock: parts go by
the number of the run that wrote each (its place in the manifest), then by their own sequence.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batchllm.index import DoneIndex, damaged
from batchllm.index_file import open_index

__all__ = ["check_parts", "parts_in_order", "read_done", "saved_counts", "stores"]


def read_done(run_dir: Path, fingerprint: str | None = None) -> DoneIndex:
    """The done index of a run directory's parts, its shards' included (a row's outcomes are all
    in one shard, so their parts read as one directory's); read-only: no lock needed."""
    return open_index(run_dir, *done_parts(run_dir, fingerprint))


def done_parts(run_dir: Path, fingerprint: str | None) -> tuple[list[Path], frozenset[str]]:
    """The parts the done index covers, oldest first, and the runs with ``fingerprint``."""
    parts: list[Path] = []
    runs: list[dict[str, Any]] = []
    for place in stores(run_dir):
        place_runs = _manifest_runs(place)
        runs += place_runs
        parts += parts_in_order(place, place_runs)
    same_job = frozenset(
        run["run_id"] for run in runs if fingerprint and run.get("fingerprint") == fingerprint
    )
    return parts, same_job


def stores(run_dir: Path) -> list[Path]:
    """The run directory, and the shard directories of a run on several processes."""
    return [run_dir, *sorted((run_dir / "shards").glob("[0-9][0-9][0-9]"))]


def check_parts(run_dir: Path) -> None:
    """Raise ``RunDirError`` naming the first part whose footer cannot be read."""
    for part in (run_dir / "results").glob("part-*.parquet"):
        try:
            pq.ParquetFile(part).close()
        except FileNotFoundError:
            continue
        except (OSError, pa.ArrowException) as exc:
            raise damaged(part, exc) from None


def saved_counts(results_dir: Path, run_id: str) -> dict[str, Any]:
    """What a run's parts hold: outcomes by status, requests sent, cost, the last finish."""
    counts: dict[str, Any] = {"ok": 0, "failed": 0, "invalid": 0, "sent": 0, "cost_usd": 0.0}
    last: int | None = None
    for part in results_dir.glob(f"part-{run_id}-*.parquet"):
        table = pq.read_table(part, columns=["status", "attempts", "cost_usd", "finished_at"])
        for status in ("ok", "failed", "invalid"):
            counts[status] += pc.sum(pc.equal(table["status"], status)).as_py() or 0
        counts["sent"] += pc.sum(pc.greater(table["attempts"], 0)).as_py() or 0
        counts["cost_usd"] += pc.sum(table["cost_usd"]).as_py() or 0.0
        latest = pc.max(table["finished_at"].cast(pa.int64())).as_py()
        last = latest if last is None or (latest is not None and latest > last) else last
    counts["cost_usd"] = round(counts["cost_usd"], 8)
    if last is not None:
        counts["ended_at"] = datetime.fromtimestamp(last / 1e6, UTC).isoformat()
    return counts


def parts_in_order(run_dir: Path, runs: list[dict[str, Any]] | None = None) -> list[Path]:
    """The run directory's parts, oldest first: by the number of the run that wrote each (its
    place in the manifest), then by the part's own sequence, never by time."""
    runs = _manifest_runs(run_dir) if runs is None else runs
    order = {run["run_id"]: run.get("run_number", index) for index, run in enumerate(runs, 1)}
    parts = (run_dir / "results").glob("part-*.parquet")
    return sorted(parts, key=lambda part: (order.get(_run_of(part), 0), part.name))


def _manifest_runs(run_dir: Path) -> list[dict[str, Any]]:
    manifest = run_dir / "manifest.json"
    if not manifest.exists():
        return []
    runs: list[dict[str, Any]] = orjson.loads(manifest.read_bytes()).get("runs", [])
    return runs


def _run_of(part: Path) -> str:
    """The run id in a part's name: ``part-RUN-00003`` or ``part-RUN-00001-00009`` -> ``RUN``."""
    return part.stem.split("-")[1]
