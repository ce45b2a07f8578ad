"""`make bench` still runs end to end: a quick pass over two scenarios, checked for shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_quick_bench_runs_and_reports_every_figure(tmp_path: Path) -> None:
    """The harness runs a rate-limited scenario and a resume, and writes complete JSON."""
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchllm.bench",
            "--quick",
            "--scenario",
            "rpm-bound",
            "--scenario",
            "resume",
            "--json",
            str(out),
            "--cache",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["errors"] == {}
    [limited] = report["results"]
    assert limited["scenario"] == "rpm-bound" and limited["bound"] == "rpm"
    assert limited["rows"] == limited["ok"] == limited["outcomes"] > 0
    assert limited["duplicates"] == 0 and 0 < limited["util"] <= 1.5
    [resume] = report["steps"]
    assert resume["requests"] == resume["to_do"] == resume["ok"] == 1000
    assert resume["start_s"] > 0
    assert {goal["scenario"] for goal in report["goals"]} == {"rpm-bound", "resume"}
    assert "utilization" in done.stdout and "first new request" in done.stdout
