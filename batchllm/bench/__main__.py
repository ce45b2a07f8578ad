"""``python -m batchllm.bench``: how close batchllm runs to its rate limits, and at what cost.

Owns the command line, running the chosen scenarios one after another, and the report: tables
on stdout, the goal lines, and the same as JSON. The scenarios live in
``batchllm.bench.scenarios`` (throughput) and ``batchllm.bench.probes`` (``memory``,
``resume``); their figures and goals in ``batchllm.bench.goals``.
Benchmarks report, they do not gate: the exit code is 1 only when a scenario could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from batchllm.bench.deadline import Night, deadline_goals, deadline_table, run_nights
from batchllm.bench.fleet import Skipped, check_runnable, fleet_goals, run_pool
from batchllm.bench.goals import Figures, Goal, figures, goals, num
from batchllm.bench.nightly import run_nightly
from batchllm.bench.probes import Step, run_probe
from batchllm.bench.scenarios import SCENARIOS, THROUGHPUT, Scenario, raw_main, run_scenario

DEFAULT_JSON = Path("bench/results/latest.json")
DEFAULT_CACHE = Path("bench/results/cache")
_Row = TypeVar("_Row", Figures, Step)

# --- report ----------------------------------------------------------------------------------

_MAIN_COLUMNS: tuple[tuple[str, Callable[[Figures], str]], ...] = (
    ("scenario", lambda f: f.scenario),
    ("rows", lambda f: str(f.rows)),
    ("ok", lambda f: str(f.ok)),
    ("bound", lambda f: f.bound),
    ("ideal_s", lambda f: num(f.ideal_s, 2)),
    ("active_s", lambda f: num(f.active_s, 2)),
    ("wall_s", lambda f: num(f.wall_s, 2)),
    ("util", lambda f: num(f.util, 3)),
    ("proc_util", lambda f: num(f.proc_util, 3)),
    ("429s", lambda f: str(f.rate_limited)),
    ("429%", lambda f: f"{f.rate_limited_pct:.2f}"),
    ("dup", lambda f: str(f.duplicates)),
    ("cpu_ms/1k", lambda f: f"{f.cpu_ms_per_1k:.0f}"),
    ("peak_MB", lambda f: f"{f.peak_mb:.0f}"),
    ("rows/s", lambda f: f"{f.rows_per_s:.0f}"),
)
_PHASE_COLUMNS: tuple[tuple[str, Callable[[Figures], str]], ...] = (
    ("scenario", lambda f: f.scenario),
    ("start_s", lambda f: num(f.start_s, 2)),
    ("steady", lambda f: num(f.steady, 3)),
    ("tail_s", lambda f: num(f.tail_s, 2)),
    ("end_s", lambda f: num(f.end_s, 2)),
    ("requests", lambda f: str(f.requests)),
    ("attempts", lambda f: str(f.attempts)),
    ("5xx", lambda f: str(f.server_errors)),
    ("hangs", lambda f: str(f.hangs)),
    ("sim_cpu_s", lambda f: num(f.sim_cpu_s, 1)),
    ("other_cpu_s", lambda f: num(f.other_cpu_s, 1)),
)
_STEP_COLUMNS: tuple[tuple[str, Callable[[Step], str]], ...] = (
    ("scenario", lambda s: s.scenario),
    ("step", lambda s: s.step),
    ("input_rows", lambda s: str(s.input_rows)),
    ("input_MB", lambda s: f"{s.input_mb:.0f}"),
    ("to_do", lambda s: str(s.to_do)),
    ("requests", lambda s: str(s.requests)),
    ("ok", lambda s: "-" if s.ok is None else str(s.ok)),
    ("wall_s", lambda s: num(s.wall_s, 2)),
    ("cpu_s", lambda s: num(s.cpu_s, 2)),
    ("peak_MB", lambda s: f"{s.peak_mb:.0f}"),
    ("start_s", lambda s: num(s.start_s, 2)),
)


def table(rows: Sequence[_Row], columns: Sequence[tuple[str, Callable[[_Row], str]]]) -> str:
    cells = [[name for name, _ in columns]]
    cells += [[cell(row) for _, cell in columns] for row in rows]
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


@dataclass(slots=True)
class Report:
    """What one benchmark run found: throughput figures, probe steps, scenarios that broke."""

    results: list[Figures] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    #: the ``deadline`` scenario's simulated nights
    nights: list[Night] = field(default_factory=list)

    def goals(self) -> list[Goal]:
        found = goals(self.results, self.steps) + fleet_goals(self.results)
        return found + (deadline_goals(self.nights) if self.nights else [])


def write_json(path: Path, quick: bool, report: Report) -> None:
    found = {
        "machine": machine(),
        "quick": quick,
        "results": [asdict(f) for f in report.results],
        "steps": [asdict(s) for s in report.steps],
        "nights": [asdict(n) for n in report.nights],
        "goals": [asdict(g) for g in report.goals()],
        "errors": report.errors,
        "skipped": report.skipped,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(found, indent=2) + "\n", encoding="utf-8")


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    names = [s.name for s in SCENARIOS]
    parser = argparse.ArgumentParser(
        prog="python -m batchllm.bench",
        description="Benchmarks against the simulated provider, in separate processes.",
        epilog="The overhead ratios need 'overhead' with 'raw-aiohttp' or 'overhead-schema'.",
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
    parser.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE,
        metavar="DIR",
        help=f"where the memory scenario keeps its generated inputs (default: {DEFAULT_CACHE})",
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
    report = Report()
    for scenario in SCENARIOS:
        if scenario.name in (args.scenario or []) or not (args.scenario or scenario.opt_in):
            _run(scenario, args, report)
    _print(report)
    if args.quick:
        print("(quick run: small samples and start-up weigh heavily; goals apply to full runs)")
    write_json(args.json, args.quick, report)
    print(f"\nwritten to {args.json}")
    return 1 if report.errors else 0


def _run(scenario: Scenario, args: argparse.Namespace, report: Report) -> None:
    rows = scenario.quick_rows if args.quick else scenario.rows
    print(f"running {scenario.name} ({rows:,} rows) ...", file=sys.stderr, flush=True)
    try:
        check_runnable(scenario)
        if scenario.kind == "deadline":
            report.nights += run_nights(args.quick)
        elif scenario.pool:
            report.results.append(figures(run_pool(scenario, args.quick)))
        elif scenario.kind in THROUGHPUT:
            report.results.append(figures(run_scenario(scenario, args.quick)))
        elif scenario.kind == "nightly":
            report.steps += run_nightly(scenario, rows, args.cache)
        else:
            report.steps += run_probe(scenario, args.quick, args.cache)
    except Skipped as skip:
        report.skipped[scenario.name] = str(skip)
    except Exception as exc:  # one broken scenario must not hide the others' figures
        report.errors[scenario.name] = f"{type(exc).__name__}: {exc}"


def _print(report: Report) -> None:
    if report.results:
        print(table(report.results, _MAIN_COLUMNS))
        print()
        print(table(report.results, _PHASE_COLUMNS))
        print()
    if report.steps:
        print(table(report.steps, _STEP_COLUMNS))
        print()
    if report.nights:
        print(deadline_table(report.nights))
        print()
    for goal in report.goals():
        print(goal_line(goal))
    for name, reason in report.skipped.items():
        print(f"SKIP  {name}: skipped, {reason}")
    for name, error in report.errors.items():
        print(f"ERROR {name}: {error}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
