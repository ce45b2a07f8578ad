"""Which shard a row belongs to, where each shard keeps its outcomes, and the plan on disk.

A row goes to shard ``hash(row key) mod shards``; the row key is its id (or a hash of its
content), so a row's earlier outcomes, its duplicate ids and rows of identical content always meet
in one shard, and a re-run with the same number of shards maps every row to the same shard. Each
shard is a normal run directory, ``<output dir>/shards/NNN``. ``shards.json`` at the top records
the shard count; a later run with another count is refused (its rows would move between shards
and their earlier outcomes would not be found). ``ShardSource`` reads one shard's rows of the
input, its keys found column-wise. It does not run anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from batchllm.errors import RunDirError
from batchllm.job import InputSpec, JobSpec
from batchllm.job.spec import EndpointSpec
from batchllm.keys import batch_keys, row_key
from batchllm.source import BATCH_ROWS, RowBatch, Source

PLAN_FILE = "shards.json"
SHARDS_DIR = "shards"


def shard_of(key: str, shards: int) -> int:
    """The shard of the row with this key, stable across processes, machines and runs."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def shard_dir(output_dir: Path, shard: int) -> Path:
    return output_dir / SHARDS_DIR / f"{shard:03d}"


def shard_job(job: JobSpec, shard: int, shards: int) -> JobSpec:
    """The job as one shard of ``shards`` runs it: the same, writing into the shard's own
    directory, with its share of each pool endpoint's limits (``shard_endpoint``)."""
    uri = job.output.uri and f"{job.output.uri.rstrip('/')}/{SHARDS_DIR}/{shard:03d}"
    output = dataclasses.replace(job.output, dir=shard_dir(job.output_dir, shard), uri=uri)
    endpoints = tuple(shard_endpoint(e, shards) for e in job.model.endpoints)
    model = dataclasses.replace(job.model, endpoints=endpoints)
    return dataclasses.replace(job, output=output, model=model)


def shard_endpoint(endpoint: EndpointSpec, shards: int) -> EndpointSpec:
    """One shard's share of a pool endpoint: its concurrency, rpm and tpm divided by the shards
    (at least 1 each), so that every shard together keeps to the server's figures (rows spread
    evenly over the shards by their keys' hashes, and so does their load)."""

    def share(figure: int | None) -> int | None:
        return None if figure is None else max(1, figure // shards)

    concurrency = max(1, endpoint.concurrency // shards)
    return dataclasses.replace(
        endpoint, concurrency=concurrency, rpm=share(endpoint.rpm), tpm=share(endpoint.tpm)
    )


class ShardSource(Source):
    """The input as one shard reads it: only the rows of its first ``limit`` (all when None)
    that belong to ``shard``. A batch's keys come column-wise from its ids (``batch_keys``), so
    another shard's row costs its key's hash and no Python row; a row without an id (its key is
    its content's), and every row of a batch whose ids are not text or integers, is made into a
    dict to find its key, as a run would. ``batches`` stays the whole input's (the checks of an
    input read it: a shard with no rows is not an empty input)."""

    def __init__(self, spec: InputSpec, shard: int, shards: int, limit: int | None) -> None:
        self.shard, self.shards, self.limit = shard, shards, limit
        super().__init__(spec)

    @property
    def spans(self) -> bool:
        """Read from a byte offset on only when the shard reads to the input's end (no limit)."""
        return self.limit is None and super().spans

    def row_batches(
        self, batch_rows: int = BATCH_ROWS, span: tuple[int, int] | None = None
    ) -> Iterator[RowBatch]:
        remaining = self.limit
        for rows in super().row_batches(batch_rows, span):
            if remaining is not None:
                rows, remaining = _first(rows, remaining)
            mine = self._mine(rows)
            if mine.bad or (mine.batch is not None and mine.batch.num_rows):
                yield mine
            if remaining == 0:
                return

    def count_rows(self) -> int:
        """The shard's rows, counted by reading the input (its keys are in no footer)."""
        return sum(
            len(rows.bad) + (rows.batch.num_rows if rows.batch is not None else 0)
            for rows in self.row_batches(1 << 16)
        )

    def _mine(self, rows: RowBatch) -> RowBatch:
        """The rows of ``rows`` (lines that cannot be read too) that belong to this shard."""
        bad = [row for row in rows.bad if shard_of(row.key or "", self.shards) == self.shard]
        if rows.batch is None or not rows.batch.num_rows:
            return RowBatch(None, bad, rows.lossy)
        keys = self._keys(rows)
        mask = np.fromiter(
            (shard_of(key, self.shards) == self.shard for key in keys), np.bool_, len(keys)
        )
        return RowBatch(rows.batch.filter(pa.array(mask)), bad, rows.lossy)

    def _keys(self, rows: RowBatch) -> list[str]:
        """Each row's key, as ``row_key`` gives it."""
        assert rows.batch is not None
        id_column = self.spec.id_column
        keyed = None if rows.lossy else batch_keys(rows.batch, id_column)
        if keyed is None:
            return [row_key(item.data, id_column) for item in self.to_rows(rows)]
        ids, missing = keyed
        keys: list[str] = ids.to_pylist()
        if missing.any():
            at = np.flatnonzero(missing)
            for index, item in zip(at.tolist(), self.to_rows(rows, at), strict=True):
                keys[index] = row_key(item.data, id_column)
        return keys


def _first(rows: RowBatch, count: int) -> tuple[RowBatch, int]:
    """The first ``count`` rows of ``rows`` (its unreadable lines first, as ``Source.rows``
    gives them), and how many are left to take after it."""
    bad = rows.bad[:count]
    batch = rows.batch
    if batch is not None:
        batch = batch.slice(0, count - len(bad))
    taken = len(bad) + (batch.num_rows if batch is not None else 0)
    return RowBatch(batch, bad, rows.lossy), count - taken


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
