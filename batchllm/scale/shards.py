"""Which shard a row belongs to, where each shard keeps its outcomes, and the plan on disk.

A row goes to shard ``hash(row key) mod shards``; the row key is its id (or a hash of its
content), so a row's earlier outcomes, its duplicate ids and rows of identical content always meet
in one shard, and a re-run with the same number of shards maps every row to the same shard. Each
shard is a normal run directory, ``<output dir>/shards/NNN``. ``shards.json`` at the top records
the shard count; a later run with another count is refused (its rows would move between shards
and their earlier outcomes would not be found). It does not run anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from batchllm.errors import RunDirError
from batchllm.job import JobSpec
from batchllm.keys import row_key
from batchllm.source import InputRow, Source

PLAN_FILE = "shards.json"
SHARDS_DIR = "shards"


def shard_of(key: str, shards: int) -> int:
    """The shard of the row with this key, stable across processes, machines and runs."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def shard_dir(output_dir: Path, shard: int) -> Path:
    return output_dir / SHARDS_DIR / f"{shard:03d}"


def shard_job(job: JobSpec, shard: int) -> JobSpec:
    """The job as one shard runs it: the same, writing into the shard's own directory."""
    uri = job.output.uri and f"{job.output.uri.rstrip('/')}/{SHARDS_DIR}/{shard:03d}"
    output = dataclasses.replace(job.output, dir=shard_dir(job.output_dir, shard), uri=uri)
    return dataclasses.replace(job, output=output)


def shard_rows(job: JobSpec, shard: int, shards: int, limit: int | None) -> Iterator[InputRow]:
    """The rows of the input (its first ``limit`` rows, if given) that belong to ``shard``."""
    source = Source(job.input)
    id_column = job.input.id_column
    remaining = limit
    for rows in source.rows():
        if remaining is not None:
            rows = rows[:remaining]
            remaining -= len(rows)
        for row in rows:
            key = row.key or row_key(row.data, id_column)
            if shard_of(key, shards) == shard:
                yield InputRow(row.data, row.problem, key)
        if remaining == 0:
            return


def settle_plan(output_dir: Path, job_name: str, shards: int) -> None:
    """Record the shard count, or refuse one that differs from the directory's."""
    path = output_dir / PLAN_FILE
    plan = read_plan(output_dir)
    if plan is not None and plan.get("shards") != shards:
        raise RunDirError(
            f"{output_dir} holds a run in {plan.get('shards')} shards; run it with "
            f"--shards {plan.get('shards')}, or give the job another [output] dir"
        )
    if plan is None and (output_dir / "manifest.json").exists():
        raise RunDirError(
            f"{output_dir} holds a run of the local backend; give the job another [output] dir"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    body = orjson.dumps({"format": 1, "job": job_name, "shards": shards})
    temp = path.with_suffix(".tmp")
    temp.write_bytes(body)
    temp.replace(path)


def read_plan(output_dir: Path) -> dict[str, Any] | None:
    """The directory's shard plan, or None for a run directory of one process. A working
    directory filled from object storage has the driver's manifest, which names the count."""
    try:
        plan = orjson.loads((output_dir / PLAN_FILE).read_bytes())
    except FileNotFoundError:
        try:
            manifest = orjson.loads((output_dir / "manifest.json").read_bytes())
        except FileNotFoundError:
            return None
        shards = manifest.get("shards") if isinstance(manifest, dict) else None
        return {"shards": shards} if shards else None
    return plan if isinstance(plan, dict) else None


def shard_dirs(output_dir: Path) -> list[Path]:
    """The shard directories of a sharded run directory, in shard order."""
    return sorted(p for p in (output_dir / SHARDS_DIR).glob("[0-9][0-9][0-9]") if p.is_dir())
