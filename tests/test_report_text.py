"""The report as text and through the CLI: each section shows the figures a person needs."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

import batchllm
from batchllm.cli import main
from batchllm.progress import money
from batchllm.report import build_report, report_text
from batchllm.simulate import Fault, SimServer
from conftest import job_data, ticket_rows, write_csv, write_job


def _job(tmp_path: Path, sim: SimServer, rows: int = 30) -> batchllm.JobSpec:
    write_csv(tmp_path / "input.csv", ticket_rows(rows))
    return batchllm.load_job(write_job(tmp_path, job_data(sim.url)))


def _section(text: str, name: str) -> list[str]:
    """The lines of one section: its labelled line and the unlabelled ones after it."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(name))
    found = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith(" "):
            break
        found.append(line)
    return found


async def test_the_text_report_has_every_section_in_order(tmp_path: Path, sim: SimServer) -> None:
    """Rows, Tokens, Cost, Latency, Attempts, Rate limits, Throughput, Runs: one screen."""
    job = _job(tmp_path, sim)
    await batchllm.arun_job(job)
    text = report_text(build_report(job))
    labels = [line.split("  ")[0] for line in text.splitlines()[1:] if not line.startswith(" ")]
    assert labels == [
        "Rows", "Tokens", "Cost", "Latency", "Attempts", "Rate limits", "Throughput", "Runs",
    ]  # fmt: skip
    assert text.splitlines()[0] == f"{job.output_dir}: 30 rows"


async def test_failed_rows_are_grouped_by_error_type_in_the_text(
    tmp_path: Path, sim: SimServer
) -> None:
    """Two 400s and a hang-free run: the Rows section counts them and names their error type."""
    sim.script([Fault("400", count=2)])
    job = _job(tmp_path, sim)
    await batchllm.arun_job(job)
    rows = _section(report_text(build_report(job)), "Rows")
    assert "28 ok, 2 failed, 0 invalid" in rows[0]
    assert any("errors: rejected 2" in line for line in rows)


async def test_the_cost_section_shows_the_run_total_and_the_history(
    tmp_path: Path, sim: SimServer
) -> None:
    """After a --fresh re-run the text shows the current results' cost and what all runs spent."""
    job = _job(tmp_path, sim, rows=10)
    first = await batchllm.arun_job(job)
    second = await batchllm.arun_job(job, batchllm.RunOptions(fresh=True))
    cost = _section(report_text(build_report(job)), "Cost")
    assert cost[0].endswith(
        f"{money(second.cost_usd)} for these results, "
        f"{money(first.cost_usd + second.cost_usd)} spent over all runs"
    )
    assert any("(failed attempts are not billed)" in line for line in cost)


async def test_each_run_has_a_line_newest_first(tmp_path: Path, sim: SimServer) -> None:
    """The Runs section lists every run, newest first, with sent/rows and ok counts."""
    job = _job(tmp_path, sim, rows=12)
    first = await batchllm.arun_job(job, batchllm.RunOptions(limit=5))
    second = await batchllm.arun_job(job)
    runs = _section(report_text(build_report(job)), "Runs")
    assert runs[0].split("  ")[-1].strip().startswith(f"{second.run_id} finished: 7/12 sent")
    assert runs[1].strip().startswith(f"{first.run_id} finished: 5/5 sent, 5 ok")


async def test_the_cli_report_prints_text_and_json(tmp_path: Path, sim: SimServer) -> None:
    """``batchllm report JOB`` prints the text; ``--json`` one object with the same figures."""
    job = _job(tmp_path, sim, rows=8)
    await batchllm.arun_job(job)
    runner = CliRunner()
    text = runner.invoke(main, ["report", str(job.path)])
    assert text.exit_code == 0, text.output
    assert re.search(r"^Rows\s+8 ok, 0 failed, 0 invalid$", text.stdout, re.MULTILINE)
    data = runner.invoke(main, ["report", "--json", str(job.path)])
    assert data.exit_code == 0
    parsed = json.loads(data.stdout)
    assert parsed["rows"] == 8 and parsed["by_status"]["ok"] == 8


def test_the_cli_report_on_a_job_with_no_results_is_a_one_line_error(tmp_path: Path) -> None:
    """A job never run: exit 2 with one line saying there are no results yet."""
    write_csv(tmp_path / "input.csv", ticket_rows(3))
    job = write_job(tmp_path, job_data("http://127.0.0.1:1/v1"))
    result = CliRunner().invoke(main, ["report", str(job)])
    assert result.exit_code == 2
    assert "no results yet" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
