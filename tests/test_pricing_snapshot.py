"""The prices a run directory's job resolved, kept in its prices.json and read back by later runs
without genai-prices; anything that decides a price changed, and it is looked up again."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import pytest

import batchllm
from batchllm.pricing import SNAPSHOT, context_window, resolve_price, tier_price
from batchllm.providers.base import Usage
from conftest import job_data, write_job

USAGE = Usage(input_tokens=1_000_000, output_tokens=1_000_000)


def _job(tmp_path: Path, *, run_dir: bool = True, **sections: dict) -> batchllm.JobSpec:
    model = {"provider": "openai", "name": "gpt-5-mini", "service_tier": "flex"}
    job = batchllm.load_job(write_job(tmp_path, job_data(None, model=model, **sections)))
    if run_dir:
        job.output_dir.mkdir(parents=True, exist_ok=True)
    return job


def test_prices_are_kept_in_the_run_directory_as_they_were_resolved(tmp_path: Path) -> None:
    """Online (with its flex and priority prices), batch and context window read back equal."""
    job = _job(tmp_path)
    online, batch, window = resolve_price(job), resolve_price(job, batch=True), context_window(job)
    assert (job.output_dir / SNAPSHOT).exists()
    assert len(orjson.loads((job.output_dir / SNAPSHOT).read_bytes())) == 3
    assert resolve_price(job) == online and online.served
    assert resolve_price(job, batch=True) == batch
    assert context_window(job) == window


def _in_fresh_process(tmp_path: Path, body: str) -> tuple[Any, bool]:
    """What ``body`` (a line of ``job`` and ``batchllm.pricing``'s names that sets ``price``)
    leaves in ``price``, as a dict, run in a new process; and whether it imported genai-prices."""
    script = (
        "import sys, orjson, dataclasses, batchllm\n"
        "from batchllm.pricing import context_window, resolve_price, tier_price\n"
        f"job = batchllm.load_job({str(tmp_path / 'job.toml')!r})\n"
        f"{body}\n"
        "print(orjson.dumps([dataclasses.asdict(price), 'genai_prices' in sys.modules]).decode())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, check=True, cwd=tmp_path
    )
    found, imported = orjson.loads(done.stdout)
    return found, bool(imported)


def test_a_later_run_reads_its_prices_without_genai_prices(tmp_path: Path) -> None:
    """A fresh process over the same directory never imports genai-prices (~25 MB)."""
    job = _job(tmp_path)
    expected = asdict(resolve_price(job))
    context_window(job)
    price, imported = _in_fresh_process(tmp_path, "price = resolve_price(job); context_window(job)")
    assert orjson.loads(orjson.dumps(expected)) == price
    assert not imported


def test_a_tier_s_price_is_kept_too(tmp_path: Path) -> None:
    """A deadline plan's flex price (``tier_price``) is read back from prices.json by a fresh
    process, without genai-prices, and equals the one looked up."""
    job = _job(tmp_path)
    expected = asdict(tier_price(job, "flex"))
    price, imported = _in_fresh_process(tmp_path, "price = tier_price(job, 'flex')")
    assert orjson.loads(orjson.dumps(expected)) == price
    assert not imported


def test_changed_job_prices_are_looked_up_again(tmp_path: Path) -> None:
    """Another [pricing] table in the same directory is priced anew, not read from the snapshot."""
    cheap = _job(tmp_path, pricing={"input_per_mtok": 1.0, "output_per_mtok": 3.0})
    assert resolve_price(cheap).cost(USAGE) == pytest.approx(4.0)
    dear = _job(tmp_path, pricing={"input_per_mtok": 2.0, "output_per_mtok": 6.0})
    assert resolve_price(dear).cost(USAGE) == pytest.approx(8.0)
    assert resolve_price(dear).served_as("flex").cost(USAGE) == pytest.approx(4.0)


def test_a_snapshot_of_other_versions_is_not_used(tmp_path: Path) -> None:
    """Prices resolved by another genai-prices or batchllm are looked up again."""
    job = _job(tmp_path)
    price = resolve_price(job)
    path = job.output_dir / SNAPSHOT
    stale = {}
    for key, value in orjson.loads(path.read_bytes()).items():
        decided_by = orjson.loads(key)
        decided_by["versions"] = ["0.0.1", "0.0.1"]
        stale[orjson.dumps(decided_by, option=orjson.OPT_SORT_KEYS).decode()] = {
            **value,
            "input_per_mtok": 999.0,
        }
    path.write_bytes(orjson.dumps(stale))
    assert resolve_price(job) == price


def test_an_unreadable_snapshot_is_looked_up_and_written_anew(tmp_path: Path) -> None:
    """A torn or foreign prices.json is no error: the price is looked up and the file rewritten."""
    job = _job(tmp_path)
    price = resolve_price(job)
    (job.output_dir / SNAPSHOT).write_bytes(b'{"torn')
    assert resolve_price(job) == price
    assert len(orjson.loads((job.output_dir / SNAPSHOT).read_bytes())) == 1


def test_no_run_directory_is_made_for_a_snapshot(tmp_path: Path) -> None:
    """Pricing a job whose run directory does not exist yet (estimate, validate) creates nothing."""
    job = _job(tmp_path, run_dir=False)
    resolve_price(job)
    assert not job.output_dir.exists()
