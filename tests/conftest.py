"""Shared fixtures: a simulated provider on a background loop, and job files on disk."""

from __future__ import annotations

import asyncio
import csv
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import batchllm
from batchllm.simulate import SimConfig, SimServer, start_server

REPO = Path(__file__).resolve().parent.parent


class SimThread:
    """A simulated provider served from its own event loop in a thread.

    Both ``asyncio.run`` (the CLI) and the test's own loop can reach it over loopback.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[SimServer] = []

    def start(self, config: SimConfig | None = None) -> SimServer:
        future = asyncio.run_coroutine_threadsafe(start_server(config or SimConfig()), self.loop)
        server = future.result(timeout=10)
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in self.servers:
            asyncio.run_coroutine_threadsafe(server.close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


Start = Callable[..., Awaitable[SimServer]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Start simulated providers in the test's own loop (latency 0 unless given)."""
    servers: list[SimServer] = []

    async def _start(**config: Any) -> SimServer:
        config.setdefault("latency_ms", 0.0)
        config.setdefault("jitter_ms", 0.0)
        server = await start_server(SimConfig(**config))
        servers.append(server)
        return server

    yield _start
    for server in servers:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def sims() -> Iterator[SimThread]:
    holder = SimThread()
    yield holder
    holder.close()


@pytest.fixture
def sim(sims: SimThread) -> SimServer:
    return sims.start(SimConfig(latency_ms=2, jitter_ms=1))


def toml_dumps(data: dict[str, Any]) -> str:
    """Enough TOML for test job files: nested tables of scalars and string lists."""
    lines: list[str] = []

    def table(prefix: str, values: dict[str, Any]) -> None:
        scalars = {k: v for k, v in values.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        for key, value in values.items():
            if isinstance(value, dict):
                table(f"{prefix}.{key}" if prefix else key, value)

    table("", data)
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def ticket_rows(count: int) -> list[dict[str, str]]:
    return [
        {"id": f"T{i:05d}", "text": f'Ticket {i}: the invoice, "total" is wrong — naïve {i % 7}'}
        for i in range(count)
    ]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def job_data(base_url: str | None, **sections: dict[str, Any]) -> dict[str, Any]:
    """A job against an OpenAI-compatible server at ``base_url``; ``sections`` override keys."""
    data: dict[str, Any] = {
        "job": {"name": "test-job"},
        "input": {"path": "input.csv", "id_column": "id", "columns": ["id"]},
        "prompt": {"template": "Classify as billing, bug or other: {{ text }}"},
        "model": {
            "provider": "openai-compatible",
            "name": "gpt-4o-mini",
            "base_url": base_url or "http://127.0.0.1:9/v1",
            "params": {"max_tokens": 40, "temperature": 0},
        },
        "output": {"dir": "run"},
        "limits": {"concurrency": 8},
        "retry": {"max_attempts": 4, "timeout_s": 5},
    }
    for name, values in sections.items():
        merged = {**data.get(name, {}), **values}
        data[name] = {k: v for k, v in merged.items() if v is not None}
    return data


def write_job(directory: Path, data: dict[str, Any], name: str = "job.toml") -> Path:
    path = directory / name
    path.write_text(toml_dumps(data), encoding="utf-8")
    return path


def run_counts(job: Any) -> list[dict[str, Any]]:
    """Each run's rows, reused, sent and prefix_rows, in order (the ``runs`` view)."""
    sql = "select rows, reused, sent, prefix_rows from runs order by run_number"
    rows: list[dict[str, Any]] = batchllm.query(job, sql).to_pylist()
    return rows


def result_counts(job: Any) -> list[dict[str, Any]]:
    """``results``' row count, distinct row keys and lowest status, as one row."""
    sql = "select count(*) as n, count(distinct row_key) as k, min(status) as s from results"
    rows: list[dict[str, Any]] = batchllm.query(job, sql).to_pylist()
    return rows


@pytest.fixture
def sim_process() -> Iterator[str]:
    """A standalone `batchllm simulate` process; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchllm", "simulate", "--port", "0", "--latency-ms", "30"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening on" in line, line
    yield line.strip().rsplit(" ", 1)[-1]
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)


def sim_stats(base_url: str) -> dict[str, int]:
    """The counts of a simulator in another process (``/_sim/stats``)."""
    root = base_url.removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/_sim/stats", timeout=5) as reply:
        stats: dict[str, int] = json.loads(reply.read())
    return stats


async def run_by(job: Any, deadline: float, rows: int) -> None:
    """Run ``job`` to its end, which comes before ``deadline`` (epoch seconds), every one of
    its ``rows`` rows ok."""
    summary = await batchllm.arun_job(job)
    assert time.time() < deadline
    assert (summary.ok, summary.failed) == (rows, 0)
