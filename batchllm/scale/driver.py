"""The record a sharded run's driver keeps: one run in the run directory, as a local run has.

``DriverRecord`` holds the run directory's lock (the same ``.lock`` a local run takes, so a
local run and a driver never share a directory at once) and its ``manifest.json``, in the
format ``store`` writes: one entry per run with its number, status, counts and cost. The shards
of a run use the driver's run id (a shard run again after its worker died adds ``.N``), so the
entry names the outcomes of every shard and the ``runs`` view of a sharded directory lists the
driver's runs, not each shard's. A run still ``running`` when the lock is taken was a killed
driver: it is marked ``interrupted`` with what its shards recorded. For an output on object
storage the manifest goes up in the directory's commit record (``objects.Publisher``).

It does not run shards (``ray_backend``) nor write outcomes (each shard's ``store``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import structlog

from batchllm.compact import atomic_write
from batchllm.job import JobSpec
from batchllm.scale.objects import Publisher
from batchllm.scale.shards import shard_dir, shard_dirs
from batchllm.store import load_manifest, lock_run_dir

log = structlog.get_logger("batchllm")

#: counts a driver's entry adds up over its shards' entries
SUMMED = (
    "rows", "reused", "sent", "ok", "failed", "invalid", "cost_usd", "rate_limited",
    "stragglers_resent", "reused_failed",
)  # fmt: skip
#: a shard's status that wins over another's when the driver's is chosen (first: most serious)
SEVERITY = ("fatal", "storage_error", "input_error", "error", "budget", "interrupted", "running")


class DriverRecord:
    """The sharded run directory's lock and manifest, held by the driver for one run."""

    def __init__(self, job: JobSpec) -> None:
        self.path = job.output_dir
        self.job_name = job.name
        self._lock_fd = lock_run_dir(self.path)
        self._publisher = Publisher(job.output.uri, self.path) if job.output.uri else None
        try:
            if self._publisher is not None:
                self._publisher.prepare()
            self.manifest = self._load()
        except BaseException:
            self.close()
            raise
        self.run_id = ""

    def begin(self, run_id: str, fingerprint: str, entry: dict[str, Any], shards: int) -> None:
        """Reconcile runs a killed driver left, then record this one as ``running`` (and the
        shard count, which a directory filled from object storage reads back)."""
        runs: list[dict[str, Any]] = self.manifest["runs"]
        for killed in (run for run in runs if run.get("status") == "running"):
            killed.update(status="interrupted", **added(shard_totals(self.path, killed["run_id"])))
            log.warning("ray.run_reconciled", run_id=killed["run_id"], ok=killed["ok"])
        number = 1 + max((run.get("run_number", 0) for run in runs), default=0)
        self.run_id = run_id
        self.manifest["fingerprint"] = fingerprint
        self.manifest["shards"] = shards
        runs.append({**entry, "run_id": run_id, "run_number": number, "fingerprint": fingerprint})
        self._save()

    def finish(self, entry: dict[str, Any]) -> None:
        """The run's final entry (its number stays the one ``begin`` gave it)."""
        current = self.manifest["runs"][-1]
        current.update({**entry, "run_number": current["run_number"]})
        self._save()

    def close(self) -> None:
        os.close(self._lock_fd)

    def _load(self) -> dict[str, Any]:
        return load_manifest(self.path, self.job_name)

    def _save(self) -> None:
        atomic_write(
            self.path / "manifest.json", orjson.dumps(self.manifest, option=orjson.OPT_INDENT_2)
        )
        if self._publisher is not None:
            self._publisher()


def shard_entries(
    output_dir: Path, run_id: str, *, only: int | None = None
) -> list[dict[str, Any]]:
    """The shards' manifest entries of the driver's run ``run_id`` (and of its shards' reruns);
    ``only``: of that shard."""
    places = shard_dirs(output_dir) if only is None else [shard_dir(output_dir, only)]
    found = []
    for place in places:
        found += attempts_of(_manifest_runs(place), run_id)
    return found


def shard_totals(output_dir: Path, run_id: str) -> list[dict[str, Any]]:
    """One entry a shard for the driver's run ``run_id``, from the shards' manifests here."""
    totals = [shard_total(attempts_of(_manifest_runs(p), run_id)) for p in shard_dirs(output_dir)]
    return [total for total in totals if total]


def attempts_of(runs: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """A shard's entries for the driver's run ``run_id``: its first attempt, then its reruns."""
    return [r for r in runs if r["run_id"] == run_id or r["run_id"].startswith(f"{run_id}.")]


def shard_total(attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """A shard's attempts at one run as one entry: the last attempt's rows and status, every
    attempt's requests, outcomes and cost (rows an earlier attempt finished are not reused)."""
    if not attempts:
        return {}
    last, earlier = attempts[-1], attempts[:-1]
    total = dict(last)
    for name in (
        "sent",
        "ok",
        "failed",
        "invalid",
        "cost_usd",
        "rate_limited",
        "stragglers_resent",
    ):
        total[name] = sum(entry.get(name) or 0 for entry in attempts)
    before = sum(entry.get(k) or 0 for entry in earlier for k in ("ok", "failed", "invalid"))
    total["reused"] = max(0, (last.get("reused") or 0) - before)
    return total


def _manifest_runs(place: Path) -> list[dict[str, Any]]:
    try:
        runs = orjson.loads((place / "manifest.json").read_bytes()).get("runs", [])
    except (OSError, orjson.JSONDecodeError):
        return []
    return runs if isinstance(runs, list) else []


def added(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The counts of the shards' entries (``shard_total``) as one run's."""
    listed = list(entries)
    sums: dict[str, Any] = {name: sum(e.get(name) or 0 for e in listed) for name in SUMMED}
    sums["cost_usd"] = round(sums["cost_usd"], 8)
    # the shards wait side by side: the run was held back as long as its longest-held shard
    sums["rate_limit_wait_s"] = round(
        max((e.get("rate_limit_wait_s") or 0 for e in listed), default=0), 3
    )
    return sums


def worst_status(statuses: Iterable[str]) -> str:
    """The status of a run whose shards ended with ``statuses``."""
    ranked = [s for s in SEVERITY if s in set(statuses)]
    return ranked[0] if ranked else "finished"
