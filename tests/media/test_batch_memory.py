"""Memory of a batch being gathered: its request lines go to disk as they are rendered, so the
base64 of its images is not held until the batch is written."""

from __future__ import annotations

import asyncio
import base64
import os
import tracemalloc
from pathlib import Path

import pytest
from test_media_run import KEY, TEMPLATE, _server

import batchllm
from batchllm.providers import DEFAULT_KEY_ENV
from batchllm.run.pipeline import arun_job
from batchllm.simulate import SimServer
from conftest import SimThread, job_data, write_csv, write_job
from media_files import noisy_jpeg

ROWS = 150


def _booked(batches: Path) -> bool:
    """Whether a batch file has its final name (the batch is written and booked)."""
    return batches.exists() and any(name.endswith(".jsonl") for name in os.listdir(batches))


async def _peak_while_gathering(batches: Path, done: asyncio.Event) -> int:
    """The most Python memory traced while no batch file has its final name yet."""
    peak = 0
    while not done.is_set() and not _booked(batches):
        peak = max(peak, tracemalloc.get_traced_memory()[0])
        await asyncio.sleep(0.002)
    return peak


def _batch_job(folder: Path, sim: SimServer, count: int) -> tuple[batchllm.JobSpec, int]:
    """A batch job over ``count`` distinct noisy photos; the job and its images' base64 size."""
    folder.mkdir(exist_ok=True)
    photos = [noisy_jpeg(folder / f"n{i}.jpg", (160, 120)) for i in range(count)]
    rows = [{"id": f"N{i}", "photo": photo.name} for i, photo in enumerate(photos)]
    write_csv(folder / "input.csv", rows)
    data = job_data(
        None,
        prompt={"template": TEMPLATE},
        model={"provider": "openai", "name": "gpt-4o-mini", "base_url": sim.root + "/v1",
               "mode": "batch"},
        batch={"poll_s": 0.05, "max_poll_s": 0.2},
    )  # fmt: skip
    encoded = sum(len(base64.b64encode(photo.read_bytes())) for photo in photos)
    return batchllm.load_job(write_job(folder, data)), encoded


# aiohttp warns of any request body over 1 MB given as bytes, as the batch file upload is
@pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")
async def test_a_batch_of_images_is_written_as_it_is_gathered(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a batch of image rows is gathered, the memory it holds stays a small fraction of
    its images' base64 (the lines are on disk, not in a list)."""
    sim = _server(sims, batch_delay_s=0.05)
    monkeypatch.setenv(DEFAULT_KEY_ENV["openai"], KEY)
    warm_up, _ = _batch_job(tmp_path / "warm-up", sim, 2)  # one-time imports and caches
    assert (await arun_job(warm_up)).ok == 2
    job, encoded = _batch_job(tmp_path / "measured", sim, ROWS)
    done = asyncio.Event()
    tracemalloc.start()
    try:
        watch = asyncio.create_task(_peak_while_gathering(job.output.dir / "batches", done))
        await asyncio.sleep(0)
        start = tracemalloc.get_traced_memory()[0]
        summary = await arun_job(job)
        done.set()
        peak = await watch
    finally:
        tracemalloc.stop()
    assert (summary.ok, summary.failed) == (ROWS, 0)
    assert (peak - start) / encoded < 0.25
