"""Gemini Batch Mode's file input against the simulator over loopback: a batch above the inline
size is uploaded as a JSON Lines file (Files API) and referenced by name, its results come back
in a responses file, and cancelling and collecting work as with inline requests."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

import batchllm
from batchllm.pricing import resolve_price
from batchllm.providers import DEFAULT_KEY_ENV
from batchllm.providers.base import Usage
from batchllm.providers.batches_gemini import INLINE_ENV, INLINE_MAX_BYTES
from batchllm.simulate import SimConfig, SimServer
from conftest import SimThread, job_data, run_by, ticket_rows, write_csv, write_job

KEY = "sim-gemini-file-key-01"
FAST = {"latency_ms": 1, "jitter_ms": 0, "api_key": KEY}
ROWS = 20


def _job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim: SimServer, *, inline_bytes: int | None,
    mode: str = "batch", **sections: dict[str, Any],
) -> batchllm.JobSpec:  # fmt: skip
    """ROWS rows to Gemini's batch API; ``inline_bytes``: the inline limit (None: the default)."""
    monkeypatch.setenv(DEFAULT_KEY_ENV["gemini"], KEY)
    if inline_bytes is not None:
        monkeypatch.setenv(INLINE_ENV, str(inline_bytes))
    write_csv(tmp_path / "input.csv", ticket_rows(ROWS))
    model = {"provider": "gemini", "name": "gemini-2.5-flash-lite",
             "base_url": sim.root + "/v1beta", "mode": mode}  # fmt: skip
    data = job_data(None, model=model, batch={"poll_s": 0.05, "max_poll_s": 0.2}, **sections)
    return batchllm.load_job(write_job(tmp_path, data))


def _book(job: batchllm.JobSpec) -> list[dict[str, Any]]:
    path = job.output_dir / "batches" / "book.json"
    return list(orjson.loads(path.read_bytes()).values())


def _at_batch_price(job: batchllm.JobSpec) -> int:
    price = resolve_price(job, batch=True)
    rows = batchllm.query(job, "select * from results").to_pylist()
    usages = (Usage(row["input_tokens"], row["output_tokens"]) for row in rows)
    return sum(
        r["cost_usd"] == pytest.approx(price.cost(u)) for r, u in zip(rows, usages, strict=True)
    )


async def test_a_batch_over_the_inline_size_goes_as_a_file(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a 1-byte inline limit the requests are uploaded, the batch names the file, and every
    row comes back from the responses file at the batch price, as inline ones do."""
    sim = sims.start(SimConfig(**FAST, batch_delay_s=0.1))
    job = _job(tmp_path, monkeypatch, sim, inline_bytes=1)
    summary = await batchllm.arun_job(job)
    assert (summary.ok, summary.failed) == (ROWS, 0)
    [entry] = _book(job)
    assert entry["file_id"].startswith("files/") and entry["state"] == "done"
    assert _at_batch_price(job) == ROWS
    stats = sim.stats()
    assert (stats["batches"], stats["ok"], stats["duplicates"]) == (1, ROWS, 0)


async def test_a_small_batch_travels_inline(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below the documented inline limit nothing is uploaded: the requests are in the create
    call."""
    assert INLINE_MAX_BYTES == 19 * 1024 * 1024
    sim = sims.start(SimConfig(**FAST, batch_delay_s=0.1))
    job = _job(tmp_path, monkeypatch, sim, inline_bytes=None)
    assert (await batchllm.arun_job(job)).ok == ROWS
    [entry] = _book(job)
    assert "file_id" not in entry
    assert _at_batch_price(job) == ROWS


async def test_a_file_batch_is_cancelled_at_the_switch_point_and_what_it_finished_kept(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deadline run with a 20 s batch given as a file: at the switch point it is cancelled,
    its responses file gives the rows it finished (batch price), the rest go online, no row is
    billed twice, and the deadline holds."""
    sim = sims.start(SimConfig(**FAST, batch_delay_s=20.0))
    deadline = time.time() + 15.0
    plan = {"deadline": datetime.fromtimestamp(deadline).astimezone().isoformat(),
            "reserve_s": 1.0}  # fmt: skip
    job = _job(tmp_path, monkeypatch, sim, inline_bytes=1, mode="online", plan=plan)
    await run_by(job, deadline, ROWS)
    stats = sim.stats()
    kept = ROWS - stats["batch_cancelled"]
    assert 0 < kept < ROWS
    assert _at_batch_price(job) == kept
    assert (stats["batches"], stats["ok"], stats["duplicates"]) == (1, ROWS, 0)
    [entry] = _book(job)
    assert entry["file_id"].startswith("files/") and entry["cancel"] == "sent"
