"""The probes: scenarios that measure single commands, not throughput.

``memory`` runs ``batchllm run --limit N`` and ``batchllm estimate --sample 0`` on a large
generated input and on a smaller one (both cached and reused), for their peak memory.
``resume`` fabricates a run directory of a run stopped short of the end (``inputs``), then
resumes it with ``batchllm run``, for the time until the first new request. Each command is a
``Step``: its process measured from outside, and what the simulator and the results saw.
Judging the steps is ``batchllm.bench.goals``' job.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import orjson

from batchllm.bench.inputs import OLD_RUN_ID, cached_input, fabricate_run, make_rows, write_input
from batchllm.bench.process import BenchError, Simulator, batchllm_command, run_measured, simulator
from batchllm.bench.process import tail as log_tail
from batchllm.bench.scenarios import Scenario
from batchllm.job import load_job
from batchllm.query import query

#: input sizes of ``memory`` (small, large) in a full and in a quick run
MEMORY_SIZES = {False: (100_000, 1_000_000), True: (20_000, 100_000)}
#: rows ``memory`` runs of each input (``run --limit``)
RUN_LIMIT = 5000
#: rows left to do in ``resume``'s run directory (the input's last rows)
RESUME_PENDING = 1000


@dataclass(frozen=True, slots=True)
class Step:
    """One measured command of a probe.

    ``to_do``: the requests it should send; ``requests``: those the simulator answered;
    ``ok``: ok rows it wrote (``None`` for a command that writes no results); ``start_s``: process
    start → its first request.
    """

    scenario: str
    step: str
    input_rows: int
    input_mb: float
    to_do: int
    requests: int
    ok: int | None
    wall_s: float
    cpu_s: float
    peak_mb: float
    start_s: float | None
    #: a figure of the step's own (the ``nightly`` size ratio)
    value: float | None = None


def run_probe(scenario: Scenario, quick: bool, cache: Path) -> list[Step]:
    """Run a ``memory`` or ``resume`` scenario; ``cache`` holds the generated large inputs."""
    if scenario.kind == "memory":
        return [step for n in MEMORY_SIZES[quick] for step in _memory(scenario, n, cache)]
    if scenario.kind == "resume":
        return [_resume(scenario, scenario.quick_rows if quick else scenario.rows)]
    raise ValueError(f"not a probe: {scenario.name} ({scenario.kind})")


def _memory(scenario: Scenario, n: int, cache: Path) -> list[Step]:
    # Generated before the simulator starts: the first full run spends a minute or two on it.
    path = cached_input(cache, n).resolve()
    with _workspace(scenario) as (work, sim):
        job = scenario.job_file(sim.url, input_path=str(path)).write(work)
        measure = _Measure(scenario, sim, job, n)
        run = measure.run(f"run --limit {RUN_LIMIT:,}", RUN_LIMIT, "--limit", str(RUN_LIMIT))
        estimate = measure.estimate("estimate --sample 0")
    return [run, estimate]


def _resume(scenario: Scenario, n: int) -> Step:
    with _workspace(scenario) as (work, sim):
        write_input(work / "input.csv", make_rows(n))
        job = scenario.job_file(sim.url).write(work)
        done = fabricate_run(job, RESUME_PENDING)
        measure = _Measure(scenario, sim, job, n)
        return measure.run(f"run ({done:,} of {n:,} done)", n - done)


@contextmanager
def _workspace(scenario: Scenario) -> Iterator[tuple[Path, Simulator]]:
    """A temporary directory and a simulator for ``scenario``, both gone afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"batchllm-bench-{scenario.name}-") as tmp:
        work = Path(tmp)
        with simulator(scenario.sim_flags(), work / "sim.log") as sim:
            yield work, sim
        sim.check_stopped()


_NEW_SQL = """
select (count(*) filter (status = 'ok'))::bigint as ok,
       min(epoch_us(finished_at) - latency_ms * 1000)::double / 1e6 as first_request
from all_results where run_id <> '{old}'
"""


@dataclass(frozen=True, slots=True)
class _Measure:
    """Runs commands of one job against one simulator, each measured as a ``Step``."""

    scenario: Scenario
    sim: Simulator
    job: Path
    input_rows: int

    def run(self, name: str, to_do: int, *options: str) -> Step:
        """``batchllm run JOB OPTIONS``; rows of runs before it (``OLD_RUN_ID``) do not count."""
        step, started_at = self._step(name, to_do, "run", *options)
        found = query(self.job, _NEW_SQL.format(old=OLD_RUN_ID)).to_pylist()[0]
        first = found["first_request"]
        start_s = None if first is None else first - started_at
        return replace(step, ok=found["ok"], start_s=start_s)

    def estimate(self, name: str) -> Step:
        """``batchllm estimate JOB --sample 0 --json``, checked to have counted every row."""
        step, _ = self._step(name, 0, "estimate", "--sample", "0", "--json")
        text = (self.job.parent / "estimate.log").read_text(encoding="utf-8")
        counted = orjson.loads(text[text.index("{\n") :])["rows"]
        if counted != self.input_rows:
            raise BenchError(f"estimate counted {counted:,} rows of {self.input_rows:,}")
        return step

    def _step(self, name: str, to_do: int, command: str, *options: str) -> tuple[Step, float]:
        before = self.sim.stats()["requests"]
        log = self.job.parent / f"{command}.log"
        usage = run_measured(batchllm_command(command, str(self.job), *options), log)
        if usage.exit_code != 0:
            raise BenchError(f"batchllm {command} exited {usage.exit_code}: {log_tail(log)}")
        step = Step(
            scenario=self.scenario.name,
            step=name,
            input_rows=self.input_rows,
            input_mb=_input_mb(self.job),
            to_do=to_do,
            requests=self.sim.stats()["requests"] - before,
            ok=None,
            wall_s=usage.wall_s,
            cpu_s=usage.cpu_s,
            peak_mb=usage.peak_rss_mb,
            start_s=None,
        )
        return step, usage.started_at


def _input_mb(job: Path) -> float:
    return load_job(job).input.path.stat().st_size / 1e6
