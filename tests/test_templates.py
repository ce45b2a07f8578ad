"""Templates: bounded per row (steps, size, time), columns by any name, errors before sending."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import batchllm
from batchllm import arun_job
from batchllm.cli import main
from batchllm.errors import RowError, TemplateError
from batchllm.render import Renderer
from batchllm.simulate import SimServer
from conftest import job_data, write_csv, write_job

#: templates that would run for ever or fill memory, each with the words of its refusal
RUNAWAYS = {
    "nested ranges": (
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "steps",
    ),
    "output in loops": (
        "{% for a in range(1000) %}{% for b in range(1000) %}{{ text * 100 }}{% endfor %}"
        "{% endfor %}",
        "characters",
    ),
    "repetition": ("{{ text * 10000000000 }}", "repeats"),
    "list repetition": ("{{ ([text] * 10000000000) | length }}", "repeats"),
    "padding call": ("{{ text.ljust(10000000000) }}", "too many"),
    "huge power": ("{{ 7 ** 100000000 }}", "power"),
    "loops over data": (
        "{% for a in text %}{% for b in text %}{% for c in text %}{{ '' }}{% endfor %}"
        "{% endfor %}{% endfor %}",
        "steps",
    ),
    "slow steps": (
        "{% for a in range(999999) %}{% if (text * 3).split('x') %}{% endif %}{% endfor %}",
        "longer than",
    ),
}


def _job(tmp_path: Path, url: str, template: str, rows: list[dict[str, Any]]) -> batchllm.JobSpec:
    write_csv(tmp_path / "input.csv", rows)
    data = job_data(url, prompt={"template": template}, input={"columns": []})
    return batchllm.load_job(write_job(tmp_path, data))


@pytest.mark.parametrize("case", sorted(RUNAWAYS))
async def test_a_runaway_template_makes_a_render_error_row_and_the_run_goes_on(
    tmp_path: Path, sim: SimServer, case: str
) -> None:
    """A row whose template passes its budget is a ``render`` error row naming the budget; the
    other rows (whose template takes the short branch) are sent."""
    runaway, words = RUNAWAYS[case]
    template = "{% if id == 'T0' %}" + runaway + "{% else %}{{ text }}{% endif %}"
    rows = [{"id": f"T{i}", "text": "x" * 600} for i in range(4)]
    job = _job(tmp_path, sim.url, template, rows)
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (3, 1)
    bad = batchllm.query(job, "select error_type, error from results where status = 'failed'")
    [row] = bad.to_pylist()
    assert row["error_type"] == "render"
    assert words in row["error"]


async def test_a_template_within_its_budget_renders_whole(tmp_path: Path, sim: SimServer) -> None:
    """Loops of up to a million steps in all, and sizeable repetition, are allowed."""
    template = (
        "{% for a in range(1000) %}{% for b in range(999) %}{% endfor %}{% endfor %}"
        "{{ (text * 1000) | length }}"
    )
    job = _job(tmp_path, sim.url, template, [{"id": "T0", "text": "abc"}])
    summary = await arun_job(job)
    assert summary.ok == 1


async def test_columns_with_spaces_and_dots_are_reached_through_row(
    tmp_path: Path, sim: SimServer
) -> None:
    """``row["First Name"]`` and ``row["order.total"]`` print those columns."""
    rows = [{"id": "T0", "First Name": "Ada", "order.total": "12.50"}]
    template = 'Dear {{ row["First Name"] }}, your total is {{ row["order.total"] }}.'
    job = _job(tmp_path, sim.url, template, rows)
    request = Renderer(job, list(rows[0])).render("T0", rows[0])
    assert request.messages[-1] == ("user", "Dear Ada, your total is 12.50.")
    assert (await arun_job(job)).ok == 1


def test_a_row_subscript_naming_a_missing_column_is_an_error_before_sending(
    tmp_path: Path,
) -> None:
    """``row["Last Name"]`` on an input without that column: exit 2, naming it."""
    write_csv(tmp_path / "input.csv", [{"id": "T0", "First Name": "Ada"}])
    data = job_data(None, prompt={"template": '{{ row["Last Name"] }}'}, input={"columns": []})
    with pytest.raises(TemplateError, match="Last Name"):
        batchllm.run_job(batchllm.load_job(write_job(tmp_path, data)))


@pytest.mark.parametrize("command", ["run", "validate"])
def test_an_unknown_filter_is_a_one_line_error_with_exit_2(tmp_path: Path, command: str) -> None:
    """A template using a filter Jinja does not have: exit 2, one line naming the filter."""
    write_csv(tmp_path / "input.csv", [{"id": "T0", "text": "a"}])
    data = job_data(None, prompt={"template": "{{ text | shout }}"}, input={"columns": []})
    job = write_job(tmp_path, data)
    result = CliRunner().invoke(main, [command, str(job)])
    assert result.exit_code == 2, result.output
    assert "shout" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_ctrl_c_is_answered_while_slow_templates_render(tmp_path: Path, sim: SimServer) -> None:
    """Every row's template is slow: SIGINT still stops a real run (exit 130) within a few
    seconds, not after rendering the whole input."""
    slow = "{% for a in text %}{% for b in text %}{% for c in text %}{% endfor %}{% endfor %}"
    slow += "{% endfor %}"
    write_csv(tmp_path / "input.csv", [{"id": f"T{i}", "text": "y" * 900} for i in range(50)])
    data = job_data(sim.url, prompt={"template": slow}, input={"columns": []})
    job = write_job(tmp_path, data)
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchllm", "-q", "run", str(job)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)  # the run is inside its first slow rows
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the run did not answer SIGINT")
    assert proc.returncode == 130, err
    saved = batchllm.query(batchllm.load_job(job), "select count(*) as n from results")
    assert 0 < saved.to_pylist()[0]["n"] < 50


async def test_the_time_bound_holds_off_the_main_thread(tmp_path: Path) -> None:
    """Rendered in a worker thread (as ``estimate``'s scan does), a slow row still stops at its
    time budget with a ``RowError``."""
    template, _ = RUNAWAYS["slow steps"]
    row = {"id": "T0", "text": "x" * 600}
    job = _job(tmp_path, "http://127.0.0.1:9/v1", template, [row])
    renderer = Renderer(job, list(row))
    with pytest.raises(RowError, match="longer than"):
        await asyncio.to_thread(renderer.render, "T0", row)
