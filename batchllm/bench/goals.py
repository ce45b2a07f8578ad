"""What the benchmarks' observations come to: the figures of each scenario, and the goals.

Owns turning a throughput scenario's observation into figures (ideal time under the limits,
utilization, 429 share, CPU and memory per row) and checking every goal: those of each scenario
on its own, and the ratios between scenarios of the same run (``overhead`` against
``raw-aiohttp`` and ``overhead-schema``), and the probes' steps (``memory``, ``resume``).
It measures nothing and prints nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from batchllm.bench.probes import Step
from batchllm.bench.scenarios import Observation


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
    """The binding limit and the time it allows at best: rows at RPM, tokens at TPM (those
    used, or with a provider that does not refund, input plus ``max_tokens`` a reply)."""
    rpm, tpm = obs.scenario.rpm, obs.tpm
    tokens = obs.replies.tokens
    if not obs.scenario.refund_unused:
        tokens = obs.replies.input_tokens + obs.replies.ok * obs.scenario.max_tokens
    candidates = [
        ("rpm", obs.rows / (rpm / 60) if rpm else None),
        ("tpm", tokens / (tpm / 60) if tpm else None),
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
        Goal(f.scenario, "utilization >= 0.98", num(f.util, 3), (f.util or 0) >= 0.98),
        Goal(
            f.scenario,
            "whole-process utilization >= 0.95",
            num(f.proc_util, 3),
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


def _norefund_goals(f: Figures) -> list[Goal]:
    return [
        Goal(f.scenario, "the token limit binds", f"bound = {f.bound}", f.bound == "tpm"),
        Goal(f.scenario, "utilization >= 0.97", num(f.util, 3), (f.util or 0) >= 0.97),
        Goal(
            f.scenario,
            "rate-limit errors <= 0.5% of requests",
            f"{f.rate_limited_pct:.2f}% ({f.rate_limited} of {f.requests})",
            f.rate_limited_pct <= 0.5,
        ),
    ]


def _fault_goals(f: Figures) -> list[Goal]:
    once = f.ok == f.rows and f.outcomes == f.rows and f.duplicates == 0
    detail = f"{f.ok} ok of {f.rows} rows, {f.outcomes} outcomes, {f.duplicates} duplicates"
    return [
        Goal(f.scenario, "every row ok exactly once", detail, once),
        Goal(f.scenario, "utilization >= 0.85", num(f.util, 3), (f.util or 0) >= 0.85),
    ]


def _schema_goals(f: Figures) -> list[Goal]:
    detail = f"{f.ok} ok of {f.rows} rows"
    return [
        Goal(
            f.scenario, "every reply valid (ok, none invalid or truncated)", detail, f.ok == f.rows
        )
    ]


_GOALS: dict[str, Callable[[Figures], list[Goal]]] = {
    "rpm-bound": _limit_goals,
    "tpm-bound": _tpm_goals,
    "tpm-norefund": _norefund_goals,
    "faults": _fault_goals,
    "overhead-schema": _schema_goals,
    "overhead-images": _schema_goals,
}
#: the share of ``overhead``'s rows/s that ``overhead-schema`` must keep
SCHEMA_SPEED = 0.9
#: ``overhead-images``: peak RSS ceiling, MB, and CPU per row at most this times ``overhead``'s
IMAGES_PEAK_MB = 250.0
IMAGES_CPU = 3.0
#: peak RSS ceiling on the large input of ``memory``, MB
MEMORY_PEAK_MB = 200.0
#: "flat": peak RSS on the large input at most this many times that on the small one
MEMORY_GROWTH = 1.1
#: most seconds from process start to the first new request in ``resume``
RESUME_START_S = 3.0


def goals(results: Sequence[Figures], steps: Sequence[Step] = ()) -> list[Goal]:
    """Every goal the figures and steps of one benchmark run allow checking, in report order."""
    found = [goal for f in results if f.scenario in _GOALS for goal in _GOALS[f.scenario](f)]
    by_name = {f.scenario: f for f in results}
    if "overhead" in by_name and "raw-aiohttp" in by_name:
        found.append(_overhead(by_name["overhead"], by_name["raw-aiohttp"]))
    if "overhead" in by_name and "overhead-schema" in by_name:
        found.append(_schema_cost(by_name["overhead-schema"], by_name["overhead"]))
    if "overhead-images" in by_name:
        found += _image_goals(by_name["overhead-images"], by_name.get("overhead"))
    found += _memory_goals([s for s in steps if s.scenario == "memory"])
    found += [goal for s in steps if s.scenario == "resume" for goal in _resume_goals(s)]
    found += [goal for s in steps if s.scenario.startswith("nightly") for goal in _nightly(s)]
    return found


def _overhead(ours: Figures, raw: Figures) -> Goal:
    speed, cpu = _speed_and_cpu(ours, raw)
    figure = (
        f"{speed:.2f} ({ours.rows_per_s:,.0f} vs {raw.rows_per_s:,.0f}/s); "
        f"CPU per 1k rows {cpu:.2f}x ({ours.cpu_ms_per_1k:,.0f} vs {raw.cpu_ms_per_1k:,.0f} ms)"
    )
    return Goal("overhead", "batchllm rows/s ÷ raw aiohttp req/s", figure, None)


def _schema_cost(schema: Figures, plain: Figures) -> Goal:
    speed, cpu = _speed_and_cpu(schema, plain)
    figure = (
        f"{speed:.2f} ({schema.rows_per_s:,.0f} vs {plain.rows_per_s:,.0f}/s); "
        f"CPU per 1k rows {cpu:.2f}x ({schema.cpu_ms_per_1k:,.0f} vs {plain.cpu_ms_per_1k:,.0f} ms)"
    )
    text = f"rows/s ÷ overhead rows/s >= {SCHEMA_SPEED}"
    return Goal("overhead-schema", text, figure, speed >= SCHEMA_SPEED)


def _image_goals(images: Figures, plain: Figures | None) -> list[Goal]:
    found = [
        Goal(
            "overhead-images",
            f"peak RSS <= {IMAGES_PEAK_MB:.0f} MB",
            f"{images.peak_mb:.0f} MB on {images.rows:,} rows",
            images.peak_mb <= IMAGES_PEAK_MB,
        )
    ]
    if plain is not None:
        _, cpu = _speed_and_cpu(images, plain)
        found.append(
            Goal(
                "overhead-images",
                f"CPU per row ÷ overhead's <= {IMAGES_CPU}",
                f"{cpu:.2f} ({images.cpu_ms_per_1k:,.0f} vs {plain.cpu_ms_per_1k:,.0f} ms per 1k)",
                cpu <= IMAGES_CPU,
            )
        )
    return found


def _speed_and_cpu(ours: Figures, base: Figures) -> tuple[float, float]:
    speed = ours.rows_per_s / base.rows_per_s if base.rows_per_s else 0.0
    cpu = ours.cpu_ms_per_1k / base.cpu_ms_per_1k if base.cpu_ms_per_1k else 0.0
    return speed, cpu


def _memory_goals(steps: Sequence[Step]) -> list[Goal]:
    if not steps:
        return []
    large = max(s.input_rows for s in steps)
    found = [
        Goal(
            "memory",
            f"{s.step}: peak RSS on {s.input_rows:,} rows <= {MEMORY_PEAK_MB:.0f} MB",
            f"{s.peak_mb:.0f} MB",
            s.peak_mb <= MEMORY_PEAK_MB,
        )
        for s in steps
        if s.input_rows == large
    ]
    return found + [_growth(s, steps) for s in steps if s.input_rows == large]


def _growth(big: Step, steps: Sequence[Step]) -> Goal:
    small = min((s for s in steps if s.step == big.step), key=lambda s: s.input_rows)
    growth = big.peak_mb / small.peak_mb if small.input_rows < big.input_rows else float("nan")
    return Goal(
        "memory",
        f"{big.step}: peak RSS flat, {big.input_rows:,} ÷ {small.input_rows:,} rows "
        f"<= {MEMORY_GROWTH}",
        f"{growth:.2f} ({big.peak_mb:.0f} vs {small.peak_mb:.0f} MB)",
        growth <= MEMORY_GROWTH,
    )


def _resume_goals(s: Step) -> list[Goal]:
    start = "-" if s.start_s is None else f"{s.start_s:.2f} s"
    sent = f"{s.requests:,} requests, {s.ok or 0:,} ok, {s.to_do:,} to do"
    whole = f"wall {s.wall_s:.2f} s, CPU {s.cpu_s:.2f} s, peak RSS {s.peak_mb:.0f} MB"
    return [
        Goal(
            "resume",
            f"process start -> first new request <= {RESUME_START_S:.0f} s",
            start,
            s.start_s is not None and s.start_s <= RESUME_START_S,
        ),
        Goal("resume", "sends only the rows not done", sent, s.requests == s.ok == s.to_do),
        Goal("resume", f"the whole resumed run ({s.input_rows:,} rows)", whole, None),
    ]


#: ``nightly`` goals by input size (up to): seconds to the first new request, peak RSS MB,
#: seconds of ``count(*) group by status`` over ``results``
NIGHTLY_GOALS = {1_000_000: (2.0, 200.0, 1.0), 10_000_000: (12.0, 400.0, 5.0)}
#: the run directory after many nights, at most this many times one part of its rows
NIGHTLY_SIZE = 1.1


def _nightly(s: Step) -> list[Goal]:
    start_s, peak_mb, query_s = next(
        (goal for rows, goal in sorted(NIGHTLY_GOALS.items()) if s.input_rows <= rows),
        NIGHTLY_GOALS[max(NIGHTLY_GOALS)],
    )
    if s.value is not None:
        text = f"{s.step} <= {NIGHTLY_SIZE} x one part of its rows"
        return [Goal(s.scenario, text, f"{s.value:.2f}", s.value <= NIGHTLY_SIZE)]
    if s.step.startswith("longest compaction"):
        figure = f"{s.wall_s:.1f} s, {s.cpu_s:.1f} CPU-s, peak {s.peak_mb:.0f} MB"
        return [Goal(s.scenario, s.step, figure, None)]
    if s.step.startswith("count"):
        text = f"{s.step} <= {query_s:.0f} s (median of 3)"
        return [Goal(s.scenario, text, f"{s.wall_s:.2f} s", s.wall_s <= query_s)]
    start = "-" if s.start_s is None else f"{s.start_s:.2f} s"
    sent = f"{s.requests:,} requests, {s.ok or 0:,} ok, {s.to_do:,} new rows"
    return [
        Goal(
            s.scenario,
            f"{s.step}: process start -> first new request <= {start_s:.0f} s",
            start,
            s.start_s is not None and s.start_s <= start_s,
        ),
        Goal(
            s.scenario, f"peak RSS <= {peak_mb:.0f} MB", f"{s.peak_mb:.0f} MB", s.peak_mb <= peak_mb
        ),
        Goal(s.scenario, "sends only the new rows", sent, s.requests == s.ok == s.to_do),
    ]


def num(value: float | None, places: int) -> str:
    """A figure for the report, ``-`` where it does not apply."""
    return "-" if value is None else f"{value:.{places}f}"
