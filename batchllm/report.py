"""The report on a run directory: rows, tokens, cost, latency, attempts, rate limits, throughput.

Owns the figures behind ``batchllm report`` and their two renderings: text for a person, one JSON
object for cron. Figures about rows describe the current answers (the ``results`` view); money
actually spent and rate limits cover every run. Reads only, through the views of
``batchllm.query``; it does not run jobs, change the run directory or parse command lines.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import duckdb
import orjson

from batchllm.errors import UserError
from batchllm.job import JobSpec
from batchllm.outcome import FAILED, INVALID, OK
from batchllm.progress import money
from batchllm.query import connect, run_dir_of

#: runs listed in the report, newest first
RECENT_RUNS = 5
_STATUSES = (OK, FAILED, INVALID)
_LABEL = 13

_TOTALS_SQL = """
select count(*) as "rows",
    coalesce(sum(input_tokens), 0) as input, coalesce(sum(cached_tokens), 0) as cached,
    coalesce(sum(output_tokens), 0) as output, coalesce(sum(reasoning_tokens), 0) as reasoning,
    coalesce(sum(cache_write_tokens), 0) as cache_write,
    coalesce(sum(cost_usd), 0) as cost, avg(cost_usd) as cost_mean,
    quantile_cont(cost_usd, 0.95) as cost_p95, coalesce(sum(repair_cost_usd), 0) as repair_cost,
    quantile_cont(latency_ms, 0.5) as p50, quantile_cont(latency_ms, 0.95) as p95,
    quantile_cont(latency_ms, 0.99) as p99,
    coalesce(sum(attempts), 0) as attempts, count(*) filter (where attempts > 0) as requested,
    coalesce(sum(repairs), 0) as repairs, avg(attempts) as attempts_mean,
    (select coalesce(sum(cost_usd), 0) from all_results) as spent,
    (select coalesce(sum(rate_limited), 0) from runs) as rate_limited,
    (select coalesce(sum(rate_limit_wait_s), 0) from runs) as wait_s
from results
"""

_RUNS_SQL = f"""
select run_id, status, started_at, ended_at, "rows", sent, ok, failed, invalid, cost_usd,
    rate_limited, coalesce(stragglers_resent, 0) as stragglers_resent,
    epoch(ended_at::timestamptz) - epoch(started_at::timestamptz) as wall_s,
    (select count(*) from all_results a where a.run_id = runs.run_id) as finished
from runs order by started_at::timestamptz desc limit {RECENT_RUNS}
"""


@dataclass(frozen=True, slots=True)
class Tokens:
    input: int
    cached: int
    output: int
    reasoning: int
    cache_write: int


@dataclass(frozen=True, slots=True)
class Cost:
    """``total_usd`` is what the current answers cost; ``spent_all_runs_usd`` counts every run."""

    total_usd: float
    spent_all_runs_usd: float
    mean_per_row_usd: float | None
    p95_per_row_usd: float | None
    by_status: dict[str, float]
    repairs_usd: float
    # providers bill no failed attempt, so retries cost nothing by construction
    retries_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class Latency:
    p50: float | None
    p95: float | None
    p99: float | None


@dataclass(frozen=True, slots=True)
class Attempts:
    """HTTP requests behind the current answers: first tries, retries and re-asks."""

    total: int
    retries: int
    repairs: int
    mean_per_row: float | None


@dataclass(frozen=True, slots=True)
class RateLimits:
    """429s received and seconds admission was paused, over every run."""

    count: int
    wait_s: float


@dataclass(frozen=True, slots=True)
class Throughput:
    """Rows the latest run finished over its wall time; None while it has no end."""

    run_id: str | None
    rows: int
    wall_s: float | None
    rows_per_s: float | None


@dataclass(frozen=True, slots=True)
class RunLine:
    run_id: str
    status: str
    started_at: str | None
    ended_at: str | None
    rows: int
    sent: int
    ok: int
    failed: int
    invalid: int
    cost_usd: float
    rate_limited: int
    #: requests given up at the run's end as far slower than the rest, and sent again
    stragglers_resent: int
    wall_s: float | None
    #: outcomes this run wrote (rows sent or failed before sending; reused rows are not written)
    finished: int


@dataclass(frozen=True, slots=True)
class Report:
    run_dir: str
    rows: int
    by_status: dict[str, int]
    errors_by_type: dict[str, int]
    tokens: Tokens
    cost: Cost
    latency_ms: Latency
    attempts: Attempts
    rate_limits: RateLimits
    throughput: Throughput
    runs: tuple[RunLine, ...]


def build_report(target: str | Path | JobSpec) -> Report:
    """The report on a job's run directory; ``UserError`` when it has no results yet."""
    run_dir = run_dir_of(target)
    # the directory itself, so a job file is not loaded twice; a job whose directory does not
    # exist yet is left to connect(), which says "no results yet"
    con = connect(run_dir if run_dir.is_dir() else target)
    try:
        return _report(con, str(run_dir))
    except duckdb.Error as exc:
        raise UserError(f"report failed: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


def report_json(report: Report) -> str:
    """The report as one JSON object on one line, keys in a fixed order."""
    return orjson.dumps(asdict(report)).decode()


def report_text(report: Report) -> str:
    """The report as one screen of text, a section a line or two."""
    limits = report.rate_limits
    sections = [
        ("Rows", _rows_lines(report)),
        ("Tokens", _tokens_lines(report.tokens)),
        ("Cost", _cost_lines(report.cost)),
        ("Latency", [", ".join(f"{k} {_ms(v)}" for k, v in asdict(report.latency_ms).items())]),
        ("Attempts", [_attempts_line(report.attempts)]),
        ("Rate limits", [f"{limits.count:,} 429s, admission paused {limits.wait_s:,.2f}s"]),
        ("Throughput", [_throughput_line(report.throughput)]),
        ("Runs", [_run_line(run) for run in report.runs] or ["none recorded"]),
    ]
    body = [_section(name, lines) for name, lines in sections]
    return "\n".join([f"{report.run_dir}: {report.rows:,} rows", *body])


def _report(con: duckdb.DuckDBPyConnection, run_dir: str) -> Report:
    totals = _rows(con, _TOTALS_SQL)[0]
    statuses = _rows(
        con, "select status, count(*) as n, sum(cost_usd) as cost from results group by 1"
    )
    runs = tuple(RunLine(**row) for row in _rows(con, _RUNS_SQL))
    return Report(
        run_dir=run_dir,
        rows=int(totals["rows"]),
        by_status=dict.fromkeys(_STATUSES, 0) | {r["status"]: int(r["n"]) for r in statuses},
        errors_by_type=_errors_by_type(con),
        tokens=Tokens(**{f.name: int(totals[f.name]) for f in fields(Tokens)}),
        cost=_cost(totals, statuses),
        latency_ms=Latency(*(_float(totals[k]) for k in ("p50", "p95", "p99"))),
        attempts=_attempts(totals),
        rate_limits=RateLimits(int(totals["rate_limited"]), round(float(totals["wait_s"]), 3)),
        throughput=_throughput(runs),
        runs=runs,
    )


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _errors_by_type(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    sql = (
        "select error_type, count(*) as n from results where status <> 'ok' "
        "group by 1 order by 2 desc, 1"
    )
    return {str(r["error_type"]): int(r["n"]) for r in _rows(con, sql)}


def _cost(totals: dict[str, Any], statuses: list[dict[str, Any]]) -> Cost:
    by_status = {r["status"]: _usd(r["cost"]) for r in statuses}
    return Cost(
        total_usd=_usd(totals["cost"]),
        spent_all_runs_usd=_usd(totals["spent"]),
        mean_per_row_usd=None if totals["cost_mean"] is None else _usd(totals["cost_mean"]),
        p95_per_row_usd=None if totals["cost_p95"] is None else _usd(totals["cost_p95"]),
        by_status=dict.fromkeys(_STATUSES, 0.0) | by_status,
        repairs_usd=_usd(totals["repair_cost"]),
    )


def _usd(value: Any) -> float:
    # DuckDB sums floats in parallel, in no fixed order, so the last bits vary between two
    # reports on the same results; a hundred-millionth of a cent is far below any price
    return round(float(value), 10)


def _attempts(totals: dict[str, Any]) -> Attempts:
    total, repairs = int(totals["attempts"]), int(totals["repairs"])
    return Attempts(
        total=total,
        retries=total - int(totals["requested"]) - repairs,
        repairs=repairs,
        mean_per_row=_float(totals["attempts_mean"]),
    )


def _throughput(runs: tuple[RunLine, ...]) -> Throughput:
    if not runs:
        return Throughput(run_id=None, rows=0, wall_s=None, rows_per_s=None)
    last = runs[0]
    rate = last.finished / last.wall_s if last.wall_s else None
    return Throughput(run_id=last.run_id, rows=last.finished, wall_s=last.wall_s, rows_per_s=rate)


def _section(name: str, lines: list[str]) -> str:
    labels = [name, *[""] * (len(lines) - 1)]
    return "\n".join(f"{label:<{_LABEL}}{line}" for label, line in zip(labels, lines, strict=True))


def _rows_lines(report: Report) -> list[str]:
    counts = ", ".join(f"{n:,} {status}" for status, n in report.by_status.items())
    errors = ", ".join(f"{kind} {n:,}" for kind, n in report.errors_by_type.items())
    return [counts, *([f"errors: {errors}"] if errors else [])]


def _tokens_lines(tokens: Tokens) -> list[str]:
    return [
        f"{tokens.input:,} in ({tokens.cached:,} cached), {tokens.output:,} out "
        f"({tokens.reasoning:,} reasoning), {tokens.cache_write:,} cache writes"
    ]


def _cost_lines(cost: Cost) -> list[str]:
    by_status = ", ".join(f"{status} {money(usd)}" for status, usd in cost.by_status.items())
    return [
        f"{money(cost.total_usd)} for these results, {money(cost.spent_all_runs_usd)} spent "
        "over all runs",
        f"per row: mean {_money(cost.mean_per_row_usd)}, p95 {_money(cost.p95_per_row_usd)}",
        f"by status: {by_status}",
        f"repairs {money(cost.repairs_usd)}; retries {money(cost.retries_usd)} "
        "(failed attempts are not billed)",
    ]


def _attempts_line(attempts: Attempts) -> str:
    mean = "n/a" if attempts.mean_per_row is None else f"{attempts.mean_per_row:.2f}"
    return (
        f"{attempts.total:,} attempts: {attempts.retries:,} retries, "
        f"{attempts.repairs:,} repairs; {mean} per row"
    )


def _throughput_line(throughput: Throughput) -> str:
    if throughput.rows_per_s is None or throughput.wall_s is None:
        return "n/a (the last run has not ended)"
    return (
        f"{throughput.rows_per_s:,.1f} rows/s in the last run "
        f"({throughput.rows:,} rows in {throughput.wall_s:,.1f}s)"
    )


def _run_line(run: RunLine) -> str:
    wall = "" if run.wall_s is None else f", {run.wall_s:,.1f}s"
    return (
        f"{run.run_id} {run.status}: {run.sent:,}/{run.rows:,} sent, {run.ok:,} ok, "
        f"{run.failed:,} failed, {run.invalid:,} invalid, {money(run.cost_usd)}{wall}"
        + (f", {run.rate_limited:,} 429s" if run.rate_limited else "")
        + (f", stragglers resent: {run.stragglers_resent:,}" if run.stragglers_resent else "")
    )


def _money(usd: float | None) -> str:
    return "n/a" if usd is None else money(usd)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"
