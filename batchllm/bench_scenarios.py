"""Benchmark scenarios and the processes they run: input, job file, simulator, client.

Owns what each scenario is (sizes, limits, faults), the deterministic input it generates, and
running the simulated provider and the client as separate processes over loopback, measured from
outside (wall clock; CPU time and peak memory from ``os.wait4``). Also the plain aiohttp client
used as the yardstick. It does not judge the figures: ``batchllm.bench`` derives utilization,
checks the goals and prints the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import random
import re
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from batchllm.query import query
from batchllm.simulate_content import prompt_tokens

SEED = 7
MODEL = "gpt-4o-mini"
SYSTEM = "You answer customer messages for an online shop, briefly and politely."
TEMPLATE = "Customer message {{ id }}:\n\n{{ text }}"
#: mean completion tokens of the simulator's plain-text replies under max_tokens = 100 (measured)
EXPECTED_OUTPUT_TOKENS = 57
#: a client still running after this long is killed and the scenario counts as crashed
DEADLINE_S = 900.0
_START_S = 30.0
_STOP_S = 15.0
_URL = re.compile(r"http://\S+/v1")


class BenchError(Exception):
    """A scenario could not be measured (a process failed to start, crashed or timed out)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """One benchmark: the same settings go to the simulator and, where they apply, the job.

    ``tpm_share`` sets a token limit that allows that share of the request limit's rate, given
    the generated rows' average tokens. ``raw`` runs the plain aiohttp client instead of batchllm.
    """

    name: str
    rows: int
    quick_rows: int
    concurrency: int = 64
    rpm: int | None = None
    tpm_share: float | None = None
    latency_ms: float = 300.0
    jitter_ms: float = 50.0
    error_rate: float = 0.0
    hang_rate: float = 0.0
    max_tokens: int = 100
    timeout_s: float = 30.0
    max_attempts: int = 6
    raw: bool = False


SCENARIOS = (
    Scenario("rpm-bound", 3000, 150, rpm=6000),
    Scenario("tpm-bound", 3000, 150, rpm=6000, tpm_share=0.6),
    Scenario(
        "faults", 3000, 150, rpm=6000, error_rate=0.05, hang_rate=0.01, timeout_s=5, max_attempts=8
    ),
    Scenario("overhead", 20_000, 1000, latency_ms=1.0, jitter_ms=1.0),
    Scenario("raw-aiohttp", 20_000, 1000, latency_ms=1.0, jitter_ms=1.0, raw=True),
)


@dataclass(frozen=True, slots=True)
class Usage:
    """A finished process seen from outside; ``started_at`` is epoch seconds."""

    started_at: float
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    exit_code: int


@dataclass(frozen=True, slots=True)
class Replies:
    """What the client got back; times are epoch seconds, ``pNN_reply`` quantiles of replies."""

    rows: int
    ok: int
    outcomes: int
    attempts: int
    tokens: int
    first_request: float
    last_reply: float
    p10_reply: float
    p90_reply: float
    p99_reply: float


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything measured in one scenario, before any judgement."""

    scenario: Scenario
    rows: int
    tpm: int | None
    client: Usage
    replies: Replies
    sim: dict[str, int]
    sim_cpu_s: float
    other_cpu_s: float


def run_scenario(scenario: Scenario, quick: bool) -> Observation:
    """Run ``scenario`` on a fresh simulator in a temporary directory."""
    busy_before = _machine_cpu_s() - _own_cpu_s()
    rows = make_rows(scenario.quick_rows if quick else scenario.rows)
    tpm = token_limit(scenario, rows)
    with tempfile.TemporaryDirectory(prefix=f"batchllm-bench-{scenario.name}-") as tmp:
        work = Path(tmp)
        with simulator(scenario, tpm, work / "sim.log") as sim:
            if scenario.raw:
                client, replies = _run_raw(sim.url, len(rows), scenario, work)
            else:
                client, replies = _run_batchllm(sim.url, scenario, rows, tpm, work)
            stats = sim.stats()
        if sim.exit_code not in (0, -signal.SIGTERM):
            raise BenchError(f"simulator exited {sim.exit_code}: {_tail(sim.log)}")
    others = _machine_cpu_s() - _own_cpu_s() - busy_before - client.cpu_s - sim.cpu_s
    return Observation(scenario, len(rows), tpm, client, replies, stats, sim.cpu_s, others)


def _machine_cpu_s() -> float:
    """CPU seconds every process on this machine has used since boot (Linux; else 0)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            ticks = [int(field) for field in stat.readline().split()[1:8]]
    except (OSError, ValueError):
        return 0.0
    # user nice system idle iowait irq softirq: all but idle and iowait is work
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """This process's CPU time (the harness itself: generating input, querying results)."""
    return time.process_time()


# --- input -----------------------------------------------------------------------------------

_VOCABULARY = (
    "order delivery parcel refund invoice account password payment card shipping address "
    "return exchange size colour item box courier tracking number week yesterday today "
    "morning evening store app website email message support team help please thanks "
    "hello again still never always arrived missing broken damaged wrong late early charged "
    "twice discount code coupon subscription cancel renew price total receipt warranty "
    "battery screen cable charger jacket shoes kitchen lamp chair table gift birthday "
    "friend family neighbour phone call waited hours days checked tried logged changed "
    "updated sent received opened said told asked wanted ordered paid expected the a my "
    "your our this that it is was were and but so because when after before if with "
    "without from to for on in at of not very really quite just also I we you"
)
_WORDS = _VOCABULARY.split()


def make_rows(n: int, seed: int = SEED) -> list[tuple[str, str]]:
    """``n`` (id, text) rows: customer-message-like text, lengths from one line to a page."""
    rng = random.Random(seed)
    return [(f"m{i:06d}", _text(rng)) for i in range(n)]


def _text(rng: random.Random) -> str:
    sentences = min(40, max(1, round(rng.lognormvariate(1.1, 0.8))))
    return " ".join(_sentence(rng) for _ in range(sentences))


def _sentence(rng: random.Random) -> str:
    words = rng.choices(_WORDS, k=rng.randint(4, 18))
    if rng.random() < 0.2:
        words.insert(rng.randrange(len(words)), f"#{rng.randint(1000, 99999)}")
    if rng.random() < 0.3:
        words[rng.randrange(len(words) - 1)] += ","
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice(".?!.")


def user_message(row_id: str, text: str) -> str:
    """The user message TEMPLATE renders for a row (the yardstick client sends the same)."""
    return f"Customer message {row_id}:\n\n{text}"


def token_limit(scenario: Scenario, rows: list[tuple[str, str]]) -> int | None:
    """The TPM that allows ``tpm_share`` of the request limit's rate with these rows."""
    if scenario.tpm_share is None or scenario.rpm is None:
        return None
    output = min(EXPECTED_OUTPUT_TOKENS, scenario.max_tokens)
    mean = statistics.fmean(prompt_tokens(_messages(row_id, text)) for row_id, text in rows)
    return round(scenario.tpm_share * scenario.rpm * (mean + output))


def _messages(row_id: str, text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": user_message(row_id, text)},
    ]


def write_input(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows(rows)


def write_job(work: Path, scenario: Scenario, url: str, tpm: int | None) -> Path:
    """A job file for ``scenario`` against ``url``; its input and output sit next to it."""
    limits = {"rpm": scenario.rpm, "tpm": tpm, "concurrency": scenario.concurrency}
    lines = [
        "[job]",
        f"name = {json.dumps('bench-' + scenario.name)}",
        "[input]",
        'path = "input.csv"',
        'id_column = "id"',
        "[prompt]",
        f"system = {json.dumps(SYSTEM)}",
        f"template = {json.dumps(TEMPLATE)}",
        "[model]",
        'provider = "openai-compatible"',
        f"name = {json.dumps(MODEL)}",
        f"base_url = {json.dumps(url)}",
        "[model.params]",
        "temperature = 0",
        f"max_tokens = {scenario.max_tokens}",
        "[limits]",
        *(f"{key} = {value}" for key, value in limits.items() if value is not None),
        # Failed rows are a figure to report here, not a reason for a non-zero exit.
        "max_failure_rate = 1.0",
        "[retry]",
        f"timeout_s = {scenario.timeout_s}",
        f"max_attempts = {scenario.max_attempts}",
        "[output]",
        'dir = "out"',
    ]
    path = work / "job.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- processes -------------------------------------------------------------------------------


class Simulator:
    """A ``batchllm simulate`` process; ``cpu_s`` and ``exit_code`` are known once it stopped."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log
        self.url = ""
        self.cpu_s = 0.0
        self.exit_code: int | None = None

    def stats(self) -> dict[str, int]:
        root = self.url.removesuffix("/v1")
        with urllib.request.urlopen(f"{root}/_sim/stats", timeout=10) as reply:
            found: dict[str, int] = json.load(reply)
        return found

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGTERM)
        status, usage = _reap(self.process, _STOP_S)
        self.cpu_s = usage.ru_utime + usage.ru_stime
        self.exit_code = os.waitstatus_to_exitcode(status)


@contextlib.contextmanager
def simulator(scenario: Scenario, tpm: int | None, log: Path) -> Iterator[Simulator]:
    """Start the simulated provider for ``scenario`` on a free loopback port; stop it after."""
    s = scenario
    argv = [sys.executable, "-m", "batchllm", "simulate", "--port", "0"]
    argv += ["--latency-ms", str(s.latency_ms), "--jitter-ms", str(s.jitter_ms)]
    argv += ["--error-rate", str(s.error_rate), "--hang-rate", str(s.hang_rate)]
    argv += ["--rpm", str(s.rpm)] if s.rpm else []
    argv += ["--tpm", str(tpm)] if tpm else []
    with log.open("wb") as err:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
    sim = Simulator(process, log)
    try:
        sim.url = _listening_url(process, log)
        yield sim
    finally:
        sim.stop()


def _listening_url(process: subprocess.Popen[bytes], log: Path) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(_START_S)
    line = process.stdout.readline().decode() if ready else ""
    match = _URL.search(line)
    if match is None:
        raise BenchError(f"simulator did not start: {line.strip()!r} {_tail(log)}")
    return match.group(0)


def run_measured(argv: list[str], log: Path, deadline_s: float = DEADLINE_S) -> Usage:
    """Run ``argv`` to the end, stdout and stderr into ``log``; killed after ``deadline_s``."""
    started_at, clock = time.time(), time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    status, usage = _reap(process, deadline_s)
    return Usage(
        started_at=started_at,
        wall_s=time.monotonic() - clock,
        cpu_s=usage.ru_utime + usage.ru_stime,
        # ru_maxrss is in kilobytes on Linux
        peak_rss_mb=usage.ru_maxrss / 1024,
        exit_code=os.waitstatus_to_exitcode(status),
    )


def _reap(process: subprocess.Popen[bytes], deadline_s: float) -> tuple[int, Any]:
    """Wait for ``process`` and return its wait status and resource usage (kill at deadline)."""
    # os.kill, not Popen.kill: Popen would reap the process itself and wait4 would lose it.
    killer = threading.Timer(deadline_s, os.kill, (process.pid, signal.SIGKILL))
    killer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        killer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    return status, usage


def _tail(log: Path, lines: int = 5) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])


def _run_batchllm(
    url: str, scenario: Scenario, rows: list[tuple[str, str]], tpm: int | None, work: Path
) -> tuple[Usage, Replies]:
    write_input(work / "input.csv", rows)
    job = write_job(work, scenario, url, tpm)
    log = work / "client.log"
    argv = [sys.executable, "-m", "batchllm", "--log-format", "json", "-q", "run", str(job)]
    usage = run_measured(argv, log)
    if usage.exit_code != 0:
        raise BenchError(f"batchllm run exited {usage.exit_code}: {_tail(log)}")
    return usage, read_replies(job)


_REPLIES_SQL = """
select count(*)::bigint as rows,
       (count(*) filter (status = 'ok'))::bigint as ok,
       (select count(*) from all_results)::bigint as outcomes,
       coalesce(sum(attempts), 0)::bigint as attempts,
       coalesce(sum(input_tokens + output_tokens) filter (status = 'ok'), 0)::bigint as tokens,
       min(epoch_us(finished_at) - latency_ms * 1000)::double / 1e6 as first_request,
       max(epoch_us(finished_at))::double / 1e6 as last_reply,
       quantile_cont(epoch_us(finished_at), 0.1)::double / 1e6 as p10_reply,
       quantile_cont(epoch_us(finished_at), 0.9)::double / 1e6 as p90_reply,
       quantile_cont(epoch_us(finished_at), 0.99)::double / 1e6 as p99_reply
from results
"""


def read_replies(job: Path) -> Replies:
    """The run's results, summarised (``latency_ms`` spans all attempts, from first send)."""
    found = query(job, _REPLIES_SQL).to_pylist()[0]
    return Replies(**{key: found[key] for key in Replies.__dataclass_fields__})


# --- the yardstick: a plain aiohttp loop -------------------------------------------------------


def _run_raw(url: str, n: int, scenario: Scenario, work: Path) -> tuple[Usage, Replies]:
    log = work / "raw.log"
    argv = [sys.executable, "-m", "batchllm.bench", "--raw", url, str(n), str(scenario.concurrency)]
    usage = run_measured(argv, log)
    lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    if usage.exit_code != 0 or not lines or not lines[-1].startswith("{"):
        raise BenchError(f"raw client exited {usage.exit_code}: {_tail(log)}")
    return usage, Replies(**orjson.loads(lines[-1]))


def raw_main(url: str, n: int, concurrency: int) -> None:
    """Send ``n`` chat requests with ``concurrency`` workers; print a ``Replies`` as JSON."""
    replies = asyncio.run(_RawClient(url, n).run(concurrency))
    print(orjson.dumps(asdict(replies)).decode(), flush=True)


class _RawClient:
    """What a minimal client does per request: build the body, post, read, parse the usage."""

    def __init__(self, url: str, n: int) -> None:
        self.url = url.rstrip("/") + "/chat/completions"
        self.rows = make_rows(n)
        self.ok = 0
        self.tokens = 0
        self.finished: list[float] = []

    async def run(self, concurrency: int) -> Replies:
        pending = iter(self.rows)
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=60)
        started = time.time()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async with asyncio.TaskGroup() as group:
                for _ in range(concurrency):
                    group.create_task(self._worker(session, pending))
        return self._replies(started)

    async def _worker(
        self, session: aiohttp.ClientSession, pending: Iterator[tuple[str, str]]
    ) -> None:
        headers = {"Content-Type": "application/json"}
        for row_id, text in pending:
            messages = _messages(row_id, text)
            body = {"model": MODEL, "messages": messages, "temperature": 0, "max_tokens": 100}
            async with session.post(self.url, data=orjson.dumps(body), headers=headers) as reply:
                payload = await reply.read()
                if reply.status == 200:
                    self.ok += 1
                    self.tokens += int(orjson.loads(payload)["usage"]["total_tokens"])
            self.finished.append(time.time())

    def _replies(self, started: float) -> Replies:
        done = sorted(self.finished) or [started]
        cuts = statistics.quantiles(done, n=100) if len(done) > 1 else done * 99
        return Replies(
            rows=len(self.rows),
            ok=self.ok,
            outcomes=len(self.finished),
            attempts=len(self.finished),
            tokens=self.tokens,
            first_request=started,
            last_reply=done[-1],
            p10_reply=cuts[9],
            p90_reply=cuts[89],
            p99_reply=cuts[98],
        )
