"""Throughput scenarios: what each benchmark is, and running one against its own simulator.

Owns the list of scenarios (sizes, limits, faults, kind), running a throughput scenario (a
fresh simulator, the input and job file in a temporary directory, ``batchllm run`` or the
yardstick as the client), reading the replies back, and the yardstick itself: a plain aiohttp
loop. The ``memory`` and ``resume`` scenarios run in ``batchllm.bench.probes``; processes are
started and measured by ``batchllm.bench.process``. It does not judge the figures:
``batchllm.bench.goals`` does.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import orjson

from batchllm.bench.inputs import (
    MODEL,
    REPLY_SCHEMA,
    JobFile,
    make_rows,
    messages,
    write_image_input,
    write_input,
)
from batchllm.bench.process import (
    BenchError,
    Usage,
    batchllm_command,
    machine_cpu_s,
    own_cpu_s,
    run_measured,
    simulator,
    tail,
)
from batchllm.job.spec import SimulateSpec
from batchllm.query import query
from batchllm.simulate.command import flags
from batchllm.simulate.content import prompt_tokens

#: mean completion tokens of the simulator's plain-text replies under max_tokens = 100 (measured)
EXPECTED_OUTPUT_TOKENS = 57
#: kinds of scenario: throughput ones run here, the others in ``batchllm.bench.probes``
THROUGHPUT = ("batchllm", "raw")


@dataclass(frozen=True, slots=True)
class Scenario:
    """One benchmark: the same settings go to the simulator and, where they apply, the job.

    ``tpm_share`` sets a token limit that allows that share of the request limit's rate, given
    the generated rows' average tokens. ``kind`` says what runs as the client: ``batchllm``
    (``batchllm run``), ``raw`` (the plain aiohttp client), or one of the probes, ``memory``
    and ``resume``. ``schema`` gives the job a reply schema (``REPLY_SCHEMA``).
    ``refund_unused`` False makes the simulator keep ``max_tokens`` charged until its window
    passes, as some providers do.
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
    kind: str = "batchllm"
    #: run only when named (``--scenario``), never by default
    opt_in: bool = False
    schema: bool = False
    #: each row sends a small PNG by path (``{{ image(photo) }}``), base64-encoded inline
    images: bool = False
    #: whether the simulator gives back the unused part of max_tokens when a reply is sent
    refund_unused: bool = True
    #: run on the Ray backend in this many shards (``None``: the local backend)
    shards: int | None = None
    #: one simulator per entry, each an endpoint of the job's pool with this concurrency
    pool: tuple[int, ...] = ()

    def job_file(
        self,
        url: str,
        tpm: int | None = None,
        input_path: str = "input.csv",
        urls: tuple[str, ...] = (),
    ) -> JobFile:
        """The job file this scenario runs against the simulator at ``url`` (or, with a
        ``pool``, the simulators at ``urls``)."""
        return JobFile(
            name=f"bench-{self.name}",
            url=url,
            input=input_path,
            rpm=self.rpm,
            tpm=tpm,
            concurrency=self.concurrency,
            max_tokens=self.max_tokens,
            timeout_s=self.timeout_s,
            max_attempts=self.max_attempts,
            schema=REPLY_SCHEMA if self.schema else None,
            images=self.images,
            endpoints=tuple(zip(urls, self.pool, strict=True)) if self.pool else (),
            # a shard's share of 2 cores: every shard runs at once, as on a cluster
            run=None if self.shards is None else {
                "backend": "ray", "shards": self.shards, "shard_cpus": 0.25
            },
        )  # fmt: skip

    def sim_settings(self, tpm: int | None = None) -> SimulateSpec:
        """The simulator's settings for this scenario (a token limit of ``tpm``, if given)."""
        return SimulateSpec(
            latency_ms=self.latency_ms,
            jitter_ms=self.jitter_ms,
            error_rate=self.error_rate,
            hang_rate=self.hang_rate,
            rpm=self.rpm,
            tpm=tpm,
            refund_unused=self.refund_unused,
        )

    def sim_flags(self, tpm: int | None = None) -> list[str]:
        """The ``batchllm simulate`` options for this scenario."""
        return flags(self.sim_settings(tpm))


SCENARIOS = (
    Scenario("rpm-bound", 3000, 150, rpm=6000),
    Scenario("tpm-bound", 3000, 150, rpm=6000, tpm_share=0.6),
    # A provider that keeps max_tokens charged: the client must stop giving back what it saves.
    Scenario("tpm-norefund", 1500, 150, rpm=6000, tpm_share=0.6, refund_unused=False),
    Scenario(
        "faults", 3000, 150, rpm=6000, error_rate=0.05, hang_rate=0.01, timeout_s=5, max_attempts=8
    ),
    Scenario("overhead", 20_000, 1000, latency_ms=1.0, jitter_ms=1.0),
    # The schema reply is ~20 tokens; 200 leaves room, so no reply is cut at max_tokens.
    Scenario(
        "overhead-schema", 20_000, 1000, max_tokens=200, schema=True, latency_ms=1.0, jitter_ms=1.0
    ),
    Scenario("overhead-images", 100_000, 2000, latency_ms=1.0, jitter_ms=1.0, images=True),
    Scenario("raw-aiohttp", 20_000, 1000, kind="raw", latency_ms=1.0, jitter_ms=1.0),
    # Beyond one machine (batchllm.bench.fleet): shards on a local Ray, and an endpoint pool.
    Scenario("ray-limit", 3000, 200, rpm=6000, tpm_share=0.8, shards=4),
    Scenario("ray-overhead", 20_000, 1000, latency_ms=1.0, jitter_ms=1.0, shards=2),
    Scenario("pool", 3600, 360, concurrency=96, latency_ms=200.0, pool=(8, 16, 16, 32)),
    # rows: the large input; the small one and the run's --limit are in batchllm.bench.probes
    Scenario("memory", 1_000_000, 100_000, kind="memory", latency_ms=1.0, jitter_ms=1.0),
    Scenario("resume", 200_000, 20_000, kind="resume", latency_ms=1.0, jitter_ms=1.0),
    # 100 simulated nights of 50,000 rows (batch.deadline); rows are the job's, not sent
    Scenario("deadline", 50_000, 50_000, kind="deadline"),
    Scenario("nightly", 1_000_000, 100_000, kind="nightly", latency_ms=1.0, jitter_ms=1.0),
    # minutes to generate and fabricate (~3 GB of CSV): run only when named
    Scenario(
        "nightly-10m",
        10_000_000,
        200_000,
        kind="nightly",
        latency_ms=1.0,
        jitter_ms=1.0,
        opt_in=True,
    ),
)


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
    #: input tokens of the ok rows (with ``max_tokens``, what a provider that does not refund
    #: charges)
    input_tokens: int = 0


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
    """Run a throughput ``scenario`` on a fresh simulator in a temporary directory."""
    busy_before = machine_cpu_s() - own_cpu_s()
    rows = make_rows(scenario.quick_rows if quick else scenario.rows)
    tpm = token_limit(scenario, rows)
    with tempfile.TemporaryDirectory(prefix=f"batchllm-bench-{scenario.name}-") as tmp:
        work = Path(tmp)
        with simulator(scenario.sim_flags(tpm), work / "sim.log") as sim:
            if scenario.kind == "raw":
                client, replies = _run_raw(sim.url, len(rows), scenario, work)
            else:
                client, replies = _run_batchllm(sim.url, scenario, rows, tpm, work)
            stats = sim.stats()
        sim.check_stopped()
    others = machine_cpu_s() - own_cpu_s() - busy_before - client.cpu_s - sim.cpu_s
    return Observation(scenario, len(rows), tpm, client, replies, stats, sim.cpu_s, others)


def token_limit(scenario: Scenario, rows: list[tuple[str, str]]) -> int | None:
    """The TPM that allows ``tpm_share`` of the request limit's rate with these rows."""
    if scenario.tpm_share is None or scenario.rpm is None:
        return None
    output = min(EXPECTED_OUTPUT_TOKENS, scenario.max_tokens)
    mean = statistics.fmean(prompt_tokens(messages(row_id, text)) for row_id, text in rows)
    return round(scenario.tpm_share * scenario.rpm * (mean + output))


def _run_batchllm(
    url: str, scenario: Scenario, rows: list[tuple[str, str]], tpm: int | None, work: Path
) -> tuple[Usage, Replies]:
    if scenario.images:
        write_image_input(work / "input.csv", rows)
    else:
        write_input(work / "input.csv", rows)
    job = scenario.job_file(url, tpm).write(work)
    log = work / "client.log"
    tree = scenario.shards is not None  # a local Ray: its workers are the client too
    usage = run_measured(batchllm_command("run", str(job)), log, tree=tree)
    if usage.exit_code != 0:
        raise BenchError(f"batchllm run exited {usage.exit_code}: {tail(log)}")
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
       quantile_cont(epoch_us(finished_at), 0.99)::double / 1e6 as p99_reply,
       coalesce(sum(input_tokens) filter (status = 'ok'), 0)::bigint as input_tokens
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
        raise BenchError(f"raw client exited {usage.exit_code}: {tail(log)}")
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
            body = {
                "model": MODEL,
                "messages": messages(row_id, text),
                "temperature": 0,
                "max_tokens": 100,
            }
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
