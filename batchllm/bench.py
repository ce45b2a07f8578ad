"""``python -m batchllm.bench``: how close batchllm runs to its rate limits, and at what cost.

Owns the command line, turning observations into figures (ideal time under the limits,
utilization, 429 share, CPU and memory per row), the goals and the report: a table on stdout and
the same as JSON. The scenarios and the processes they run live in ``batchllm.bench_scenarios``.
Benchmarks report, they do not gate: the exit code is 1 only when a scenario could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchllm.bench_scenarios import SCENARIOS, Observation, raw_main, run_scenario

DEFAULT_JSON = Path("bench/results/latest.json")


@dataclass(frozen=True, slots=True)
class Figures:
    """One scenario's results; times in seconds, ``None`` where a figure does not apply.

    ``start_s`` runs from process start to the first request, ``end_s`` from the last reply to
    process exit, ``tail_s`` from the 99th-percentile reply to the last. ``steady`` is the
    throughput between the 10th and 90th percentile replies as a share of the ideal rate.
    ``other_cpu_s`` is CPU used meanwhile by processes outside the benchmark (noise).
    """

    scenario: str
    rows: int
    ok: int
    failed: int
    outcomes: int
    attempts: int
    bound: str
    rpm: int | None
    tpm: int | None
    ideal_s: float | None
    wall_s: float
    active_s: float
    start_s: float
    tail_s: float
    end_s: float
    util: float | None
    proc_util: float | None
    steady: float | None
    requests: int
    rate_limited: int
    rate_limited_pct: float
    duplicates: int
    server_errors: int
    hangs: int
    cpu_ms_per_1k: float
    peak_mb: float
    rows_per_s: float
    sim_cpu_s: float
    other_cpu_s: float


def figures(obs: Observation) -> Figures:
    """Derive the report's figures from one scenario's observation."""
    r, sim = obs.replies, obs.sim
    bound, ideal = ideal_time(obs)
    active = r.last_reply - r.first_request
    middle = r.p90_reply - r.p10_reply
    return Figures(
        scenario=obs.scenario.name,
        rows=obs.rows,
        ok=r.ok,
        failed=r.rows - r.ok,
        outcomes=r.outcomes,
        attempts=r.attempts,
        bound=bound,
        rpm=obs.scenario.rpm,
        tpm=obs.tpm,
        ideal_s=ideal,
        wall_s=obs.client.wall_s,
        active_s=active,
        start_s=r.first_request - obs.client.started_at,
        tail_s=r.last_reply - r.p99_reply,
        end_s=obs.client.started_at + obs.client.wall_s - r.last_reply,
        util=_ratio(ideal, active),
        proc_util=_ratio(ideal, obs.client.wall_s),
        steady=_ratio(None if ideal is None else 0.8 * ideal, middle),
        requests=sim["requests"],
        rate_limited=sim["rate_limited"],
        rate_limited_pct=100.0 * sim["rate_limited"] / max(1, sim["requests"]),
        duplicates=sim["duplicates"],
        server_errors=sim["errors"],
        hangs=sim["hangs"],
        cpu_ms_per_1k=1e6 * obs.client.cpu_s / max(1, obs.rows),
        peak_mb=obs.client.peak_rss_mb,
        rows_per_s=obs.rows / active if active > 0 else 0.0,
        sim_cpu_s=obs.sim_cpu_s,
        other_cpu_s=max(0.0, obs.other_cpu_s),
    )


def ideal_time(obs: Observation) -> tuple[str, float | None]:
    """The binding limit and the time it allows at best: rows at RPM, tokens used at TPM."""
    rpm, tpm = obs.scenario.rpm, obs.tpm
    candidates = [
        ("rpm", obs.rows / (rpm / 60) if rpm else None),
        ("tpm", obs.replies.tokens / (tpm / 60) if tpm else None),
    ]
    known = [(bound, seconds) for bound, seconds in candidates if seconds is not None]
    if not known:
        return "none", None
    return max(known, key=lambda pair: pair[1])


def _ratio(numerator: float | None, denominator: float) -> float | None:
    if numerator is None or denominator <= 0:
        return None
    return numerator / denominator


# --- goals -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Goal:
    scenario: str
    text: str
    figure: str
    passed: bool | None  # None: a figure to read, not a goal


def _limit_goals(f: Figures) -> list[Goal]:
    return [
        Goal(f.scenario, "utilization >= 0.98", _num(f.util, 3), (f.util or 0) >= 0.98),
        Goal(
            f.scenario,
            "whole-process utilization >= 0.95",
            _num(f.proc_util, 3),
            (f.proc_util or 0) >= 0.95,
        ),
        Goal(
            f.scenario,
            "rate-limit errors <= 0.5% of requests",
            f"{f.rate_limited_pct:.2f}% ({f.rate_limited} of {f.requests})",
            f.rate_limited_pct <= 0.5,
        ),
    ]


def _tpm_goals(f: Figures) -> list[Goal]:
    binding = Goal(f.scenario, "the token limit binds", f"bound = {f.bound}", f.bound == "tpm")
    return [binding, *_limit_goals(f)]


def _fault_goals(f: Figures) -> list[Goal]:
    once = f.ok == f.rows and f.outcomes == f.rows and f.duplicates == 0
    detail = f"{f.ok} ok of {f.rows} rows, {f.outcomes} outcomes, {f.duplicates} duplicates"
    return [
        Goal(f.scenario, "every row ok exactly once", detail, once),
        Goal(f.scenario, "utilization >= 0.85", _num(f.util, 3), (f.util or 0) >= 0.85),
    ]


_GOALS: dict[str, Callable[[Figures], list[Goal]]] = {
    "rpm-bound": _limit_goals,
    "tpm-bound": _tpm_goals,
    "faults": _fault_goals,
}


def goals(results: Sequence[Figures]) -> list[Goal]:
    found = [goal for f in results if f.scenario in _GOALS for goal in _GOALS[f.scenario](f)]
    by_name = {f.scenario: f for f in results}
    if "overhead" in by_name and "raw-aiohttp" in by_name:
        found.append(_overhead(by_name["overhead"], by_name["raw-aiohttp"]))
    return found


def _overhead(ours: Figures, raw: Figures) -> Goal:
    speed = ours.rows_per_s / raw.rows_per_s if raw.rows_per_s else 0.0
    cpu = ours.cpu_ms_per_1k / raw.cpu_ms_per_1k if raw.cpu_ms_per_1k else 0.0
    figure = (
        f"{speed:.2f} ({ours.rows_per_s:,.0f} vs {raw.rows_per_s:,.0f}/s); "
        f"CPU per 1k rows {cpu:.2f}x ({ours.cpu_ms_per_1k:,.0f} vs {raw.cpu_ms_per_1k:,.0f} ms)"
    )
    return Goal("overhead", "batchllm rows/s ÷ raw aiohttp req/s", figure, None)


# --- report ----------------------------------------------------------------------------------

_MAIN_COLUMNS: tuple[tuple[str, Callable[[Figures], str]], ...] = (
    ("scenario", lambda f: f.scenario),
    ("rows", lambda f: str(f.rows)),
    ("ok", lambda f: str(f.ok)),
    ("bound", lambda f: f.bound),
    ("ideal_s", lambda f: _num(f.ideal_s, 2)),
    ("active_s", lambda f: _num(f.active_s, 2)),
    ("wall_s", lambda f: _num(f.wall_s, 2)),
    ("util", lambda f: _num(f.util, 3)),
    ("proc_util", lambda f: _num(f.proc_util, 3)),
    ("429s", lambda f: str(f.rate_limited)),
    ("429%", lambda f: f"{f.rate_limited_pct:.2f}"),
    ("dup", lambda f: str(f.duplicates)),
    ("cpu_ms/1k", lambda f: f"{f.cpu_ms_per_1k:.0f}"),
    ("peak_MB", lambda f: f"{f.peak_mb:.0f}"),
    ("rows/s", lambda f: f"{f.rows_per_s:.0f}"),
)
_PHASE_COLUMNS: tuple[tuple[str, Callable[[Figures], str]], ...] = (
    ("scenario", lambda f: f.scenario),
    ("start_s", lambda f: _num(f.start_s, 2)),
    ("steady", lambda f: _num(f.steady, 3)),
    ("tail_s", lambda f: _num(f.tail_s, 2)),
    ("end_s", lambda f: _num(f.end_s, 2)),
    ("requests", lambda f: str(f.requests)),
    ("attempts", lambda f: str(f.attempts)),
    ("5xx", lambda f: str(f.server_errors)),
    ("hangs", lambda f: str(f.hangs)),
    ("sim_cpu_s", lambda f: _num(f.sim_cpu_s, 1)),
    ("other_cpu_s", lambda f: _num(f.other_cpu_s, 1)),
)


def _num(value: float | None, places: int) -> str:
    return "-" if value is None else f"{value:.{places}f}"


def table(
    results: Sequence[Figures], columns: Sequence[tuple[str, Callable[[Figures], str]]]
) -> str:
    cells = [[name for name, _ in columns]]
    cells += [[cell(f) for _, cell in columns] for f in results]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def goal_line(goal: Goal) -> str:
    verdict = {True: "PASS", False: "FAIL", None: "INFO"}[goal.passed]
    return f"{verdict}  {goal.scenario}: {goal.text}: {goal.figure}"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_json(path: Path, quick: bool, results: Sequence[Figures], errors: dict[str, str]) -> None:
    report = {
        "machine": machine(),
        "quick": quick,
        "results": [asdict(f) for f in results],
        "goals": [asdict(g) for g in goals(results)],
        "errors": errors,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    names = [s.name for s in SCENARIOS]
    parser = argparse.ArgumentParser(
        prog="python -m batchllm.bench",
        description="Benchmarks against the simulated provider, in separate processes.",
        epilog="The overhead ratio needs both 'overhead' and 'raw-aiohttp'.",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=names,
        metavar="NAME",
        help=f"run only this one (repeatable; default: all): {', '.join(names)}",
    )
    parser.add_argument("--quick", action="store_true", help="small row counts: a smoke run")
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        metavar="PATH",
        help=f"where to write the JSON report (default: {DEFAULT_JSON})",
    )
    # The yardstick client re-invokes this module: --raw URL N CONCURRENCY.
    parser.add_argument("--raw", nargs=3, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.raw:
        url, n, concurrency = args.raw
        raw_main(url, int(n), int(concurrency))
        return 0
    chosen = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    results: list[Figures] = []
    errors: dict[str, str] = {}
    for scenario in chosen:
        rows = scenario.quick_rows if args.quick else scenario.rows
        print(f"running {scenario.name} ({rows:,} rows) ...", file=sys.stderr, flush=True)
        try:
            results.append(figures(run_scenario(scenario, args.quick)))
        except Exception as exc:  # one broken scenario must not hide the others' figures
            errors[scenario.name] = f"{type(exc).__name__}: {exc}"
    _report(results, errors)
    if args.quick:
        print("(quick run: small samples and start-up weigh heavily; goals apply to full runs)")
    write_json(args.json, args.quick, results, errors)
    print(f"\nwritten to {args.json}")
    return 1 if errors else 0


def _report(results: Sequence[Figures], errors: dict[str, str]) -> None:
    if results:
        print(table(results, _MAIN_COLUMNS))
        print()
        print(table(results, _PHASE_COLUMNS))
        print()
    for goal in goals(results):
        print(goal_line(goal))
    for name, error in errors.items():
        print(f"ERROR {name}: {error}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
