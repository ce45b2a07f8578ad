"""Runs with a deadline against the simulator's Batch API over loopback: the batch when it comes
back in time, the switch point when it does not, and kill -9 at each step of a switch.

The simulator answers every body once at most unless asked twice: ``ok`` counts billed replies
and ``duplicates`` replies to a body already answered, so ``ok == rows`` and ``duplicates == 0``
say no row was paid twice.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

import batchllm
from batchllm.cli import main
from batchllm.plan.setup import with_deadline
from batchllm.pricing import resolve_price
from batchllm.providers import DEFAULT_KEY_ENV
from batchllm.providers.base import Usage
from batchllm.simulate import SimConfig, SimServer
from conftest import REPO, SimThread, job_data, run_by, ticket_rows, write_csv, write_job

KEY = "sim-deadline-key-00001"
FAST = {"latency_ms": 1, "jitter_ms": 0, "api_key": KEY}
ROWS = 20
#: a deadline whose switch point is 15 - 5 x 1.5 - 1 = 6.5 s away (room for a slow start), and
#: a batch too slow for it
SWITCH_DEADLINE_S = 15.0
SLOW_BATCH_S = 20.0
#: provider -> (its base URL's path on a simulator, a model with a batch price)
PROVIDERS = {
    "openai": ("/v1", "gpt-4o-mini"),
    "anthropic": ("", "claude-haiku-4-5"),
    "gemini": ("/v1beta", "gemini-2.5-flash-lite"),
}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().isoformat()


def _job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim: SimServer, deadline_in_s: float,
    provider: str = "openai", **sections: dict[str, Any],
) -> batchllm.JobSpec:  # fmt: skip
    """20 rows, 8 at a time online (4 rows/s with the 2 s latency guess: 5 s for all)."""
    monkeypatch.setenv(DEFAULT_KEY_ENV[provider], KEY)
    write_csv(tmp_path / "input.csv", ticket_rows(ROWS))
    plan = {"deadline": _iso(time.time() + deadline_in_s), "reserve_s": 1.0}
    path, model = PROVIDERS[provider]
    data = job_data(
        None,
        model={"provider": provider, "name": model, "base_url": sim.root + path},
        batch={"poll_s": 0.05, "max_poll_s": 0.2},
        plan=plan | sections.pop("plan", {}),
        **sections,
    )
    return batchllm.load_job(write_job(tmp_path, data))


def _priced(job: batchllm.JobSpec) -> tuple[int, int]:
    """Rows priced at the batch price, and at the online price."""
    online, batch = resolve_price(job), resolve_price(job, batch=True)
    at_batch = at_online = 0
    for row in batchllm.query(job, "select * from results").to_pylist():
        usage = Usage(row["input_tokens"], row["output_tokens"])
        at_batch += row["cost_usd"] == pytest.approx(batch.cost(usage))
        at_online += row["cost_usd"] == pytest.approx(online.cost(usage))
    return at_batch, at_online


def _book(job: batchllm.JobSpec) -> list[dict[str, Any]]:
    path = job.output_dir / "batches" / "book.json"
    return list(orjson.loads(path.read_bytes()).values()) if path.exists() else []


def _every_row_once(job: batchllm.JobSpec) -> None:
    every = batchllm.query(job, "select status, count(*) as n from all_results group by 1")
    assert every.to_pylist() == [{"status": "ok", "n": ROWS}]


async def test_a_batch_back_in_time_gives_every_row_at_the_batch_price(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An hour to go and a batch that takes 0.1 s: one batch, every row at the batch price."""
    sim = sims.start(SimConfig(**FAST, batch_delay_s=0.1))
    job = _job(tmp_path, monkeypatch, sim, 3600)
    summary = await batchllm.arun_job(job)
    assert (summary.ok, summary.failed) == (ROWS, 0)
    assert _priced(job) == (ROWS, 0)
    stats = sim.stats()
    assert (stats["batches"], stats["ok"], stats["duplicates"]) == (1, ROWS, 0)
    history = orjson.loads((job.output_dir / "batches" / "history.json").read_bytes())
    assert [(h["provider"], h["requests"]) for h in history] == [("openai", ROWS)]


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_a_stalled_batch_is_cancelled_at_the_switch_point_and_the_rest_sent_online(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """A 20 s batch, a switch point 6.5 s in: what it finished is kept at the batch price, the
    rest goes online, done before the deadline, and no row is billed twice (each batch API)."""
    sim = sims.start(SimConfig(**FAST, batch_delay_s=SLOW_BATCH_S))
    deadline = time.time() + SWITCH_DEADLINE_S
    job = _job(tmp_path, monkeypatch, sim, SWITCH_DEADLINE_S, provider)
    await run_by(job, deadline, ROWS)
    stats = sim.stats()
    kept = ROWS - stats["batch_cancelled"]
    assert 0 < kept < ROWS
    assert _priced(job) == (kept, ROWS - kept)
    assert (stats["batches"], stats["ok"], stats["duplicates"]) == (1, ROWS, 0)
    [entry] = _book(job)
    assert (entry["state"], entry["cancel"]) == ("done", "sent")


def _run_and_kill(job: batchllm.JobSpec, ready: Callable[[], bool]) -> None:
    """``batchllm run`` in another process, killed -9 once ``ready()``."""
    log = job.path.with_suffix(".log")
    command = [sys.executable, "-m", "batchllm", "-q", "run", str(job.path)]
    with log.open("wb") as err, subprocess.Popen(command, cwd=REPO, stderr=err) as run:
        limit = time.monotonic() + 30
        while not ready():  # a bounded poll: the run is another process
            assert run.poll() is None, f"the run ended too soon: {log.read_text()}"
            assert time.monotonic() < limit, "the run did not get there within 30 s"
            time.sleep(0.01)
        run.send_signal(signal.SIGKILL)


def _cancel_asked(job: batchllm.JobSpec, sim: SimServer) -> bool:
    return any("cancel" in e for e in _book(job))


def _collected(job: batchllm.JobSpec, sim: SimServer) -> bool:
    """The batch collected and booked done, its rows moved online; then the pause of
    ``_between_requests``."""
    return any(e["state"] == "done" for e in _book(job)) and _between_requests()


def _online(job: batchllm.JobSpec, sim: SimServer) -> bool:
    """Two rows answered online; then the pause of ``_between_requests``."""
    stats = sim.stats()
    kept = ROWS - stats["batch_cancelled"]
    return bool(stats["batch_cancelled"]) and stats["ok"] >= kept + 2 and _between_requests()


def _between_requests() -> bool:
    """A pause shorter than the rpm's spacing (0.25 s), so the kill lands between requests: a
    request in flight at a kill is billed by any provider, whatever the client does."""
    time.sleep(0.1)
    return True


@pytest.mark.parametrize("step", [_cancel_asked, _collected, _online])
def test_killed_at_a_step_of_the_switch_every_row_is_saved_once_and_paid_once(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch,
    step: Callable[[batchllm.JobSpec, SimServer], bool],
) -> None:  # fmt: skip
    """kill -9 once the cancel is asked (before the batch is cancelled), once it is collected,
    or while the rest goes online (rpm-limited); run again: every row once, none billed twice."""
    sim = sims.start(SimConfig(**FAST, batch_delay_s=SLOW_BATCH_S))
    limits = {"concurrency": 8, "rpm": 240}
    job = _job(tmp_path, monkeypatch, sim, SWITCH_DEADLINE_S, limits=limits)
    _run_and_kill(job, lambda: step(job, sim))
    again = with_deadline(job, _iso(time.time()), soft=True)  # past: every row goes online
    summary = batchllm.run_job(again)
    assert summary.failed == 0
    _every_row_once(job)
    stats = sim.stats()
    assert (stats["batches"], stats["ok"], stats["duplicates"]) == (1, ROWS, 0)


def test_an_impossible_deadline_exits_3_before_sending_anything(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 s left for 5 s of online work: exit 3, the plan printed, nothing sent; --deadline-soft
    runs anyway."""
    sim = sims.start(SimConfig(**FAST, batch_delay_s=0.1))
    job = _job(tmp_path, monkeypatch, sim, 2)
    result = CliRunner().invoke(main, ["run", str(job.path)])
    assert result.exit_code == 3, result.output
    assert "deadline cannot be met" in result.output
    assert sim.stats()["requests"] == 0
    soft = CliRunner().invoke(main, ["run", str(job.path), "--deadline-soft"])
    assert soft.exit_code == 0, soft.output


def test_a_budget_below_the_plan_exits_3_before_sending_anything(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deadline that can be met, but not within --max-cost: exit 3, nothing sent."""
    sim = sims.start(SimConfig(**FAST, batch_delay_s=0.1))
    job = _job(tmp_path, monkeypatch, sim, 3600)
    result = CliRunner().invoke(main, ["run", str(job.path), "--max-cost", "0.000001"])
    assert result.exit_code == 3, result.output
    assert "within the budget" in result.output
    assert sim.stats()["requests"] == 0


def test_estimate_with_a_deadline_prints_the_plan(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``estimate --deadline`` shows tiers, switch point, expected and worst-case cost, finish."""
    sim = sims.start(SimConfig(**FAST, batch_delay_s=0.1))
    job = _job(tmp_path, monkeypatch, sim, 3600)
    result = CliRunner().invoke(
        main, ["estimate", str(job.path), "--sample", "0", "--deadline", _iso(time.time() + 7200)]
    )
    assert result.exit_code == 0, result.output
    for words in ("rows in a batch", "switch point", "worst case", "expected finish"):
        assert words in result.output
    assert sim.stats()["requests"] == 0


def test_a_deadline_on_the_ray_backend_is_a_usage_error(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan watches one process's batches: --backend ray with a deadline exits 2."""
    sim = sims.start(SimConfig(**FAST, batch_delay_s=0.1))
    job = _job(tmp_path, monkeypatch, sim, 3600)
    result = CliRunner().invoke(main, ["run", str(job.path), "--backend", "ray"])
    assert result.exit_code == 2, result.output
    assert "local backend" in result.output
    assert sim.stats()["requests"] == 0
