"""The command line: parse options, call one function, map errors to exit codes.

Commands that are not the product (``batchllm simulate``) come from the ``batchllm.commands``
entry point group, so this module never imports them.
"""

from __future__ import annotations

import asyncio
import sys
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import click

from batchllm import __version__, log
from batchllm.errors import BatchllmError
from batchllm.job import load_job, with_mode
from batchllm.memory import frugal
from batchllm.progress import ProgressLine, summary_text
from batchllm.scale.backend import arun, with_run
from batchllm.tally import RunOptions

COMMANDS_GROUP = "batchllm.commands"
EXIT_CODES = """\b
Exit codes:
  0    success
  1    finished, but failed rows in the results above --max-failure-rate
       (rows failed in earlier runs count too)
  2    usage, job-file or input error (also an input unreadable mid-run:
       the replies received before it are saved)
  3    budget reached
  4    fatal provider error (bad key, exhausted quota, provider down,
       every request refused alike: wrong model or base_url)
  5    storage error (the run directory cannot be written: disk full)
  130  interrupted (run the same command again to resume)
"""


class _Commands(click.Group):
    """The built-in commands, plus those the ``batchllm.commands`` entry point group names
    (``batchllm simulate`` comes from there), each imported only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        point = _plugins().get(cmd_name)
        if command is None and point is not None:
            loaded = point.load()
            command = loaded if isinstance(loaded, click.Command) else None
        return command


def _plugins() -> dict[str, EntryPoint]:
    return {point.name: point for point in entry_points(group=COMMANDS_GROUP)}


def _deadline_options(command: Any) -> Any:
    """``--deadline`` and ``--deadline-soft`` (``[plan]`` in the job file)."""
    command = click.option(
        "--deadline-soft",
        is_flag=True,
        help="Run even when the plan says the deadline or the budget cannot be kept.",
    )(command)
    return click.option(
        "--deadline",
        metavar="HH:MM|ISO",
        help="Be done by then at the lowest price: batch, then online at the switch point.",
    )(command)


def _with_deadline(job: Any, deadline: str | None, soft: bool) -> Any:
    from batchllm.plan.setup import with_deadline

    try:
        return with_deadline(job, deadline, soft)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@click.group(cls=_Commands, epilog=EXIT_CODES)
@click.version_option(__version__, prog_name="batchllm")
@click.option(
    "--log-format",
    type=click.Choice(["auto", "console", "json"]),
    default="auto",
    help="Log lines: console on a terminal, JSON otherwise (auto).",
)
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors in the log.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(log_format: str, quiet: bool, verbose: bool) -> None:
    """Run an LLM over every row of a table: rate-limited, resumable, costed, queryable."""
    log.configure(log_format, quiet=quiet, verbose=verbose)
    frugal()


@main.command(epilog=EXIT_CODES)
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option("--limit", type=click.IntRange(min=1), help="Run the first N input rows only.")
@click.option("--fresh", is_flag=True, help="Start over: send every row again in a new run.")
@click.option("--retry-failed", is_flag=True, help="Send the rows that failed before again.")
@click.option(
    "--max-failure-rate",
    type=click.FloatRange(0, 1),
    help="Exit 1 when a larger share of rows failed (default: the job's).",
)
@click.option(
    "--max-cost",
    type=click.FloatRange(min=0, min_open=True),
    metavar="USD",
    help="Stop admitting requests before this run's spend could pass USD (exit 3).",
)
@click.option(
    "--mode",
    type=click.Choice(["online", "batch"]),
    help="online requests, or the provider's batch API at its batch price (default: the job's).",
)
@click.option(
    "--progress/--no-progress", default=None, help="Progress line (default: on a terminal)."
)
@click.option(
    "--backend",
    type=click.Choice(["local", "ray"]),
    help="Send from this process, or from shards on Ray (default: the job's [run] backend).",
)
@click.option("--shards", type=click.IntRange(1, 4096), help="Shards of a Ray run.")
@click.option("--address", help="The Ray cluster to join (default: a local Ray).")
@_deadline_options
def run(
    job_file: str,
    limit: int | None,
    fresh: bool,
    retry_failed: bool,
    max_failure_rate: float | None,
    max_cost: float | None,
    mode: str | None,
    progress: bool | None,
    backend: str | None,
    shards: int | None,
    address: str | None,
    deadline: str | None,
    deadline_soft: bool,
) -> None:
    """Run JOB_FILE: every input row becomes a request; results go to Parquet."""
    job = _with_deadline(_guard(load_job, job_file), deadline, deadline_soft)
    if mode is not None:
        job = _guard(with_mode, job, mode)
    job = with_run(job, backend, shards, address)
    options = RunOptions(limit=limit, fresh=fresh, retry_failed=retry_failed, max_cost_usd=max_cost)
    show = sys.stderr.isatty() if progress is None else progress
    line = ProgressLine() if show else None
    try:
        summary = _guard(asyncio.run, arun(job, options, progress=line))
    finally:
        if line is not None:
            line.close()
    click.echo(summary_text(summary))
    allowed = job.limits.max_failure_rate if max_failure_rate is None else max_failure_rate
    if summary.failure_rate > allowed:
        click.echo(
            f"error: {summary.unresolved:,} rows failed or invalid "
            f"({summary.failure_rate:.1%} of the rows with results"
            + (f", {summary.reused_failed:,} from earlier runs" if summary.reused_failed else "")
            + "), above the "
            f"allowed {allowed:.1%}; `batchllm run {job_file} --retry-failed` sends them again",
            err=True,
        )
        sys.exit(1)


@main.command(epilog=EXIT_CODES)
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option(
    "--sample",
    default=200,
    show_default=True,
    type=click.IntRange(min=0),
    help="Most rows the pilot may send (0: no pilot, the estimate is the worst case).",
)
@click.option(
    "--pilot-max-cost",
    default=1.0,
    show_default=True,
    metavar="USD",
    type=click.FloatRange(min=0, min_open=True),
    help="Most the pilot may spend.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Estimate the first N input rows only.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@_deadline_options
def estimate(
    job_file: str,
    sample: int,
    pilot_max_cost: float,
    limit: int | None,
    as_json: bool,
    deadline: str | None,
    deadline_soft: bool,
) -> None:
    """What JOB_FILE will cost and how long it will take, from a pilot on a random sample."""
    from batchllm.estimate import aestimate, estimate_text

    job = _with_deadline(_guard(load_job, job_file), deadline, deadline_soft)
    found = _guard(
        asyncio.run, aestimate(job, sample=sample, pilot_max_cost=pilot_max_cost, limit=limit)
    )
    click.echo(found.to_json() if as_json else estimate_text(found))
    if found.plan is not None and found.plan.problem is not None and not job.plan.soft:
        sys.exit(3)


@main.command()
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for cron and scripts.")
def report(target: str, as_json: bool) -> None:
    """Rows, tokens, cost, latency, attempts and rate limits of a job's results."""
    from batchllm.report import build_report, report_json, report_text

    found = _guard(build_report, target)
    click.echo(report_json(found) if as_json else report_text(found))


@main.command(epilog=EXIT_CODES)
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option(
    "--probe",
    is_flag=True,
    help="Also send one real request (first row, small max_tokens): exit 4 if it is refused.",
)
def validate(job_file: str, probe: bool) -> None:
    """Check JOB_FILE without spending: job file, input, template, schema, price, key, run dir.

    Every problem is listed at once; exit 0 when there is none, 2 otherwise. With --probe, one
    request is sent after the checks pass; a refused or failed probe (unknown model, wrong
    base_url, bad key) exits 4. Nothing is written to the run directory.
    """
    from batchllm import preflight

    job, problems = preflight.validate_job(job_file)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        sys.exit(2)
    assert job is not None
    click.echo(f"{job_file}: ok ({job.input.path}, {job.model.provider}/{job.model.name})")
    if probe:
        click.echo(_guard(asyncio.run, preflight.probe(job)))


@main.command()
@click.argument("job_file", type=click.Path(dir_okay=False))
def status(job_file: str) -> None:
    """The batches of JOB_FILE's run directory and their state at the provider."""
    from batchllm.preflight import api_key
    from batchllm.run.batch import batch_status

    job = _guard(load_job, job_file)
    click.echo(_guard(asyncio.run, batch_status(job, _guard(api_key, job))))


@main.command()
@click.argument("job_file", type=click.Path(dir_okay=False))
def cancel(job_file: str) -> None:
    """Cancel the batches of JOB_FILE in flight at the provider."""
    from batchllm.preflight import api_key
    from batchllm.run.batch import cancel_batches

    job = _guard(load_job, job_file)
    click.echo(_guard(asyncio.run, cancel_batches(job, _guard(api_key, job))))


@main.command("query")
@click.argument("target")
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option(
    "--allow-writes",
    is_flag=True,
    help="Run statements other than SELECT too (COPY ... TO for exports).",
)
def query_command(target: str, sql: str, fmt: str, allow_writes: bool) -> None:
    """SQL over a job's results (TARGET: the job file or its run directory).

    Views: results (latest outcome per row), all_results (every outcome), runs. Read-only:
    only SELECT runs unless --allow-writes is given.
    """
    from batchllm.query import format_table, query

    table = _guard(lambda: query(target, sql, allow_writes=allow_writes))
    click.echo(format_table(table, fmt))


def _guard(function: Any, *args: Any) -> Any:
    """Call ``function``; a batchllm error becomes one line on stderr and its exit code."""
    try:
        return function(*args)
    except BatchllmError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
