"""The scenarios beyond one machine: shards on a local Ray, and one process against a pool.

Owns running ``pool`` (one ``batchllm run`` against several simulators, each an endpoint of the
job's pool with its own concurrency, their stats added up), whether Ray is installed (the Ray
scenarios are skipped without it), and the goals of ``ray-limit``, ``ray-overhead`` and ``pool``.
``ray-limit`` and ``ray-overhead`` themselves run like any throughput scenario
(``batchllm.bench.scenarios``), their job file asking for ``[run] backend = "ray"``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import tempfile
from collections.abc import Sequence
from pathlib import Path

from batchllm.bench.goals import Figures, Goal, num
from batchllm.bench.inputs import make_rows, write_input
from batchllm.bench.process import (
    BenchError,
    batchllm_command,
    machine_cpu_s,
    own_cpu_s,
    run_measured,
    simulator,
    tail,
)
from batchllm.bench.scenarios import SCENARIOS, Observation, Scenario, read_replies

#: ``ray-limit``: the least utilization of the shared limit, and the most 429s (% of requests)
RAY_UTIL = 0.95
RAY_429_PCT = 0.5
#: ``ray-overhead``: client CPU per row at most this times ``overhead``'s
RAY_CPU = 1.3
#: ``pool``: rows/s at least this share of the endpoints' summed capacity
POOL_SHARE = 0.9


class Skipped(Exception):
    """A scenario that cannot run on this install (say, Ray is missing)."""


def check_runnable(scenario: Scenario) -> None:
    """Raise ``Skipped`` for a Ray scenario when Ray is not installed."""
    if scenario.shards is not None and importlib.util.find_spec("ray") is None:
        raise Skipped("Ray is not installed (pip install 'batchllm-jobs[ray]')")


def run_pool(scenario: Scenario, quick: bool) -> Observation:
    """One ``batchllm run`` against ``len(scenario.pool)`` simulators, one endpoint each."""
    busy_before = machine_cpu_s() - own_cpu_s()
    rows = make_rows(scenario.quick_rows if quick else scenario.rows)
    with tempfile.TemporaryDirectory(prefix=f"batchllm-bench-{scenario.name}-") as tmp:
        work = Path(tmp)
        write_input(work / "input.csv", rows)
        with contextlib.ExitStack() as stack:
            sims = [
                stack.enter_context(simulator(scenario.sim_flags(), work / f"sim-{i}.log"))
                for i in range(len(scenario.pool))
            ]
            urls = tuple(sim.url for sim in sims)
            job = scenario.job_file(urls[0], urls=urls).write(work)
            log = work / "client.log"
            usage = run_measured(batchllm_command("run", str(job)), log)
            if usage.exit_code != 0:
                raise BenchError(f"batchllm run exited {usage.exit_code}: {tail(log)}")
            replies = read_replies(job)
            each = [sim.stats() for sim in sims]
        for sim in sims:
            sim.check_stopped()
    stats = {key: sum(s[key] for s in each) for key in each[0]}
    sim_cpu = sum(sim.cpu_s for sim in sims)
    others = machine_cpu_s() - own_cpu_s() - busy_before - usage.cpu_s - sim_cpu
    return Observation(scenario, len(rows), None, usage, replies, stats, sim_cpu, others)


def pool_capacity(scenario: Scenario) -> float:
    """Requests a second the pool's endpoints take at most: concurrency over mean latency."""
    return sum(scenario.pool) / (scenario.latency_ms / 1000.0)


# --- goals -----------------------------------------------------------------------------------


def fleet_goals(results: Sequence[Figures]) -> list[Goal]:
    """The goals of the scenarios beyond one machine that ran."""
    by_name = {f.scenario: f for f in results}
    found: list[Goal] = []
    if "ray-limit" in by_name:
        found += _ray_limit(by_name["ray-limit"])
    if "ray-overhead" in by_name:
        found += _ray_overhead(by_name["ray-overhead"], by_name.get("overhead"))
    if "pool" in by_name:
        found.append(_pool(by_name["pool"]))
    return found


def _ray_limit(f: Figures) -> list[Goal]:
    once = f.ok == f.rows and f.outcomes == f.rows and f.duplicates == 0
    detail = f"{f.ok} ok of {f.rows} rows, {f.outcomes} outcomes, {f.duplicates} duplicates"
    return [
        Goal(f.scenario, f"utilization >= {RAY_UTIL}", num(f.util, 3), (f.util or 0) >= RAY_UTIL),
        Goal(
            f.scenario,
            f"rate-limit errors <= {RAY_429_PCT}% of requests",
            f"{f.rate_limited_pct:.2f}% ({f.rate_limited} of {f.requests})",
            f.rate_limited_pct <= RAY_429_PCT,
        ),
        Goal(f.scenario, "every row ok exactly once", detail, once),
    ]


def _ray_overhead(ray: Figures, local: Figures | None) -> list[Goal]:
    rows = f"{ray.ok} ok of {ray.rows} rows, {ray.rows_per_s:,.0f} rows/s"
    found = [Goal(ray.scenario, "every row ok", rows, ray.ok == ray.rows)]
    if local is not None and local.cpu_ms_per_1k:
        ratio = ray.cpu_ms_per_1k / local.cpu_ms_per_1k
        figure = f"{ratio:.2f} ({ray.cpu_ms_per_1k:,.0f} vs {local.cpu_ms_per_1k:,.0f} ms per 1k)"
        text = f"client CPU per row ÷ overhead's (local backend) <= {RAY_CPU}"
        found.append(Goal(ray.scenario, text, figure, ratio <= RAY_CPU))
    return found


def _pool(f: Figures) -> Goal:
    scenario = next(s for s in SCENARIOS if s.name == f.scenario)
    capacity = pool_capacity(scenario)
    share = f.rows_per_s / capacity
    figure = f"{share:.3f} ({f.rows_per_s:,.0f} rows/s of {capacity:,.0f})"
    return Goal(f.scenario, f"rows/s ÷ the endpoints' capacity >= {POOL_SHARE}", figure,
                share >= POOL_SHARE)  # fmt: skip
