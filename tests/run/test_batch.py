"""Provider batch mode end to end, against the simulator's Batch APIs over loopback.

The simulator answers each batch item the way its online endpoint answers the same body, so a
batch run and an online run of one job can be compared row by row; ``batches``, ``ok`` and
``duplicates`` in its stats show that no request was submitted or paid twice.
"""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from click.testing import CliRunner

import batchllm
from batchllm.cli import main
from batchllm.errors import FatalProviderError
from batchllm.providers import DEFAULT_KEY_ENV
from batchllm.providers.batches import OpenAIBatches
from batchllm.run.pipeline import arun_job
from batchllm.simulate import Fault, SimConfig, SimServer, start_server
from conftest import REPO, SimThread, job_data, ticket_rows, write_csv, write_job

KEY = "sim-batch-key-000001"
FAST = {"latency_ms": 1, "jitter_ms": 0, "api_key": KEY, "batch_delay_s": 0.1}
POLL = {"poll_s": 0.05, "max_poll_s": 0.2}
#: provider -> (its base URL's path on a simulator, a model with a batch price)
PROVIDERS = {
    "openai": ("/v1", "gpt-4o-mini"),
    "anthropic": ("", "claude-haiku-4-5"),
    "gemini": ("/v1beta", "gemini-2.5-flash-lite"),
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["billing", "bug", "other"]},
        "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["label", "urgency"],
    "additionalProperties": False,
}


def _job(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    root: str,
    provider: str = "openai",
    rows: int = 20,
    mode: str = "batch",
    **sections: dict[str, Any],
) -> batchllm.JobSpec:
    monkeypatch.setenv(DEFAULT_KEY_ENV[provider], KEY)
    path, model = PROVIDERS[provider]
    write_csv(tmp_path / "input.csv", ticket_rows(rows))
    section = {"provider": provider, "name": model, "base_url": root + path, "mode": mode}
    data = job_data(
        None,
        model=section | sections.pop("model", {}),
        batch=POLL | sections.pop("batch", {}),
        **sections,
    )
    return batchllm.load_job(write_job(tmp_path, data, f"{mode}.toml"))


def _simulated_batch_job(tmp_path: Path, rows: list[dict[str, str]]) -> batchllm.JobSpec:
    """A batch-mode job on the in-process simulated provider, 5 requests to a batch."""
    write_csv(tmp_path / "input.csv", rows)
    data = job_data(
        None,
        model={"provider": "simulated", "base_url": None, "mode": "batch"},
        batch={**POLL, "max_requests": 5},
        simulate={"latency_ms": 1, "batch_delay_s": 0.05},
    )
    return batchllm.load_job(write_job(tmp_path, data))


def _rows(job: batchllm.JobSpec, sql: str = "select * from results order by row_key") -> Any:
    return batchllm.query(job, sql).to_pylist()


def _book(job: batchllm.JobSpec) -> dict[str, Any]:
    path = job.output_dir / "batches" / "book.json"
    return dict(orjson.loads(path.read_bytes())) if path.exists() else {}


def _run_and_kill(job: batchllm.JobSpec, ready: Callable[[], bool] | None = None) -> None:
    """``batchllm run`` in another process, killed -9 once ``ready()`` (default: the book shows
    a submitted batch)."""
    ready = ready or (lambda: any(e["state"] == "submitted" for e in _book(job).values()))
    log = job.path.with_suffix(".log")
    command = [sys.executable, "-m", "batchllm", "-q", "run", str(job.path)]
    with log.open("wb") as err, subprocess.Popen(command, cwd=REPO, stderr=err) as run:
        deadline = time.monotonic() + 30
        while not ready():  # a bounded poll: the run is another process
            assert run.poll() is None, f"the run ended too soon: {log.read_text()}"
            assert time.monotonic() < deadline, "the run did not get there within 30 s"
            time.sleep(0.02)
        run.send_signal(signal.SIGKILL)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_a_batch_run_gives_the_online_results_at_half_the_price(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """Same columns, outputs and usage as an online run of the job; each row costs half."""
    online_sim, batch_sim = sims.start(SimConfig(**FAST)), sims.start(SimConfig(**FAST))
    online = _job(tmp_path, monkeypatch, online_sim.root, provider, mode="online",
                  output={"dir": "online"})  # fmt: skip
    batch = _job(tmp_path, monkeypatch, batch_sim.root, provider, output={"dir": "batch"})
    assert (await arun_job(online)).ok == 20
    summary = await arun_job(batch)
    assert (summary.ok, summary.failed) == (20, 0)
    describe = "describe results"
    assert _rows(batch, describe) == _rows(online, describe)
    for on, off in zip(_rows(online), _rows(batch), strict=True):
        assert (off["row_key"], off["status"]) == (on["row_key"], "ok")
        assert (off["output"], off["finish_reason"]) == (on["output"], on["finish_reason"])
        assert (off["input_tokens"], off["output_tokens"]) == (
            on["input_tokens"],
            on["output_tokens"],
        )
        assert off["cost_usd"] == pytest.approx(on["cost_usd"] / 2)
        assert off["provider_request_id"] and off["attempts"] == 1
    stats = batch_sim.stats()
    assert (stats["batches"], stats["ok"], stats["duplicates"], stats["requests"]) == (1, 20, 0, 20)
    assert summary.cost_usd == pytest.approx(sum(r["cost_usd"] for r in _rows(batch)))
    assert [e["state"] for e in _book(batch).values()] == ["done"]


async def test_simulated_provider_runs_in_batch_mode_and_pays_identical_requests_once(
    tmp_path: Path,
) -> None:
    """provider = "simulated" in batch mode: every row ok, identical requests paid once."""
    rows = ticket_rows(12) + [{"id": f"D{i}", "text": "the same ticket"} for i in range(3)]
    job = _simulated_batch_job(tmp_path, rows)
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (15, 0)
    same = _rows(job, "select * from results where row_key like 'D%' order by row_key")
    assert len({r["output"] for r in same}) == 1
    assert sorted(r["cost_usd"] > 0 for r in same) == [False, False, True]
    assert len(_book(job)) == 3  # 13 distinct requests, 5 to a batch
    assert (await arun_job(job)).reused == 15


async def test_identical_requests_in_different_batches_are_paid_once(tmp_path: Path) -> None:
    """A request repeated after its batch was cut shares that batch's reply, paid once."""
    same = [{"id": f"D{i}", "text": "the same ticket"} for i in range(3)]
    tickets = ticket_rows(12)
    job = _simulated_batch_job(tmp_path, [same[0], *tickets[:6], same[1], *tickets[6:], same[2]])
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (15, 0)
    shared = _rows(job, "select * from results where row_key like 'D%' order by row_key")
    assert len({r["output"] for r in shared}) == 1
    assert sorted(r["cost_usd"] > 0 for r in shared) == [False, False, True]
    assert sum(entry["requests"] for entry in _book(job).values()) == 13
    assert summary.sent == 13
    assert (await arun_job(job)).reused == 15


def test_a_run_killed_after_submitting_resumes_without_submitting_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 once the batch is submitted; the next run follows that batch, sends nothing new."""
    monkeypatch.setenv("SIM_KEY", KEY)
    command = [sys.executable, "-m", "batchllm", "simulate", "--port", "0", "--latency-ms", "1",
               "--api-key-env", "SIM_KEY", "--batch-delay-s", "0.5"]  # fmt: skip
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True) as simulator:
        try:
            assert simulator.stdout is not None
            found = re.search(r"(http://127\.0\.0\.1:\d+)/v1", simulator.stdout.readline())
            assert found, "the simulator did not print its URL"
            root = found.group(1)
            job = _job(tmp_path, monkeypatch, root)
            _run_and_kill(job)
            summary = batchllm.run_job(job)
            stats = json.load(urllib.request.urlopen(f"{root}/_sim/stats", timeout=5))
        finally:
            simulator.send_signal(signal.SIGTERM)
            simulator.wait(timeout=10)
    assert (summary.ok, summary.failed) == (20, 0)
    assert (stats["batches"], stats["ok"], stats["duplicates"]) == (1, 20, 0)
    every = _rows(job, "select status, count(*) as n from all_results group by 1")
    assert every == [{"status": "ok", "n": 20}]


def test_a_batch_killed_while_being_gathered_leaves_no_spool_and_every_row_once(
    tmp_path: Path,
) -> None:
    """kill -9 while a batch is spooled: the next run removes the spool and saves each row once."""
    write_csv(tmp_path / "input.csv", ticket_rows(3000))
    data = job_data(
        None,
        model={"provider": "simulated", "base_url": None, "mode": "batch"},
        batch={**POLL, "max_requests": 50_000},
        simulate={"latency_ms": 1, "batch_delay_s": 0.05},
    )
    job = batchllm.load_job(write_job(tmp_path, data))
    spool = job.output_dir / "batches"
    _run_and_kill(job, ready=lambda: any(spool.glob("*.part")))
    summary = batchllm.run_job(job)
    assert not list(spool.glob("*.part"))
    assert (summary.ok, summary.failed) == (3000, 0)
    every = _rows(job, "select count(*) as n, count(distinct row_key) as k from all_results")
    assert every == [{"n": 3000, "k": 3000}]


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_a_batch_created_but_not_booked_is_found_not_submitted_again(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """Killed while the create call's reply is lost: the next run finds the batch, no resubmit."""
    sim = sims.start(SimConfig(**FAST))
    sim.script([Fault("hang")])  # the batch is made, its id never reaches the run
    job = _job(tmp_path, monkeypatch, sim.root, provider)
    _run_and_kill(job, lambda: sim.stats()["batches"] == 1)
    assert [("batch_id" in e, e.get("creating")) for e in _book(job).values()] == [(False, True)]
    summary = batchllm.run_job(job)
    assert (summary.ok, sim.stats()["batches"], sim.stats()["duplicates"]) == (20, 1, 0)
    assert [e["state"] for e in _book(job).values()] == ["done"]


def test_a_new_row_repeating_a_request_of_an_open_batch_joins_it(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed with a batch open, then the input grows by a row asking the same: the resumed run
    gives that row the open batch's reply, paid once, and creates no batch."""
    sim = sims.start(SimConfig(**{**FAST, "batch_delay_s": 1.5}))
    job = _job(tmp_path, monkeypatch, sim.root)
    _run_and_kill(job)
    twin = ticket_rows(20)[7]
    with (tmp_path / "input.csv").open("a", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerow(["NEW", twin["text"]])
    summary = batchllm.run_job(job)
    assert (summary.ok, summary.failed) == (21, 0)
    pair = _rows(job, f"select output, cost_usd from results where id in ('NEW', '{twin['id']}')")
    assert pair[0]["output"] == pair[1]["output"]
    assert sorted(r["cost_usd"] > 0 for r in pair) == [False, True]
    stats = sim.stats()
    assert (stats["batches"], stats["ok"], stats["duplicates"]) == (1, 20, 0)


async def test_expired_and_errored_items_go_out_again_until_they_succeed(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Items that expire or get a 500 are resubmitted in a later batch and end ok, paid once."""
    sim = sims.start(SimConfig(**FAST, batch_expire_rate=0.25, batch_error_rate=0.15))
    job = _job(tmp_path, monkeypatch, sim.root, retry={"max_attempts": 10})
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (20, 0)
    stats = sim.stats()
    assert stats["batch_expired"] > 0 and stats["errors"] > 0
    assert (stats["ok"], stats["duplicates"]) == (20, 0)
    assert stats["batches"] == len(_book(job)) > 1
    attempts = [r["attempts"] for r in _rows(job)]
    assert min(attempts) == 1 and max(attempts) > 1
    assert sum(a - 1 for a in attempts) == stats["batch_expired"] + stats["errors"]


async def test_a_wrong_key_stops_a_batch_run_before_anything_is_submitted(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 401 from the batch API is fatal (exit 4), as online; no batch is created."""
    sim = sims.start(SimConfig(**FAST))
    job = _job(tmp_path, monkeypatch, sim.root)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-0000")
    with pytest.raises(FatalProviderError, match=r"^auth: batch API HTTP 401") as caught:
        await arun_job(job)
    assert caught.value.exit_code == 4 and "sk-wrong" not in str(caught.value)
    assert sim.stats()["batches"] == 0


async def test_items_that_always_expire_fail_as_batch_expired_after_max_attempts(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every item expiring, each row ends failed (batch_expired) after max_attempts."""
    sim = sims.start(SimConfig(**FAST, batch_expire_rate=1.0))
    job = _job(tmp_path, monkeypatch, sim.root, rows=5, retry={"max_attempts": 3})
    summary = await arun_job(job)
    assert (summary.ok, summary.failed, summary.cost_usd) == (0, 5, 0.0)
    rows = _rows(job)
    assert {(r["status"], r["error_type"], r["attempts"]) for r in rows} == {
        ("failed", "batch_expired", 3)
    }
    stats = sim.stats()
    assert (stats["batches"], stats["batch_expired"], stats["requests"]) == (3, 15, 0)


async def test_anthropic_items_answered_500_go_out_again_and_cost_the_batch_price(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 500 on an Anthropic item is retried in the next batch; rows end ok with batch prices."""
    sim = sims.start(SimConfig(**FAST, batch_error_rate=0.3))
    job = _job(tmp_path, monkeypatch, sim.root, "anthropic", rows=10, retry={"max_attempts": 8})
    summary = await arun_job(job)
    assert (summary.ok, sim.stats()["ok"], sim.stats()["duplicates"]) == (10, 10, 0)
    assert sim.stats()["errors"] > 0
    # claude-haiku-4-5 at the batch price: $0.50 input, $2.50 output per MTok
    for row in _rows(job):
        expected = (row["input_tokens"] * 0.5 + row["output_tokens"] * 2.5) / 1e6
        assert row["cost_usd"] == pytest.approx(expected)


def test_status_and_cancel_then_the_next_run_sends_the_cancelled_items_again(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`status` shows the live batch, `cancel` stops it; the next run resubmits what it cut."""
    sim = sims.start(SimConfig(**{**FAST, "batch_delay_s": 30.0}))
    job = _job(tmp_path, monkeypatch, sim.root)
    runner = CliRunner()
    assert "no batches" in runner.invoke(main, ["status", str(job.path)]).output
    _run_and_kill(job)
    shown = runner.invoke(main, ["status", str(job.path)])
    assert shown.exit_code == 0, shown.output
    assert re.search(r"submitted +20 requests +attempt 1 +provider: (validating|in_progress)",
                     shown.output)  # fmt: skip
    cancelled = runner.invoke(main, ["cancel", str(job.path)])
    assert cancelled.exit_code == 0 and "cancelling 1 batches" in cancelled.output
    sim.configure(batch_delay_s=0.1)
    summary = batchllm.run_job(job)
    stats = sim.stats()
    assert (summary.ok, stats["batches"], stats["ok"], stats["duplicates"]) == (20, 2, 20, 0)
    assert stats["batch_cancelled"] > 0
    first = _rows(job, "select count(*) as n from results where attempts = 1")[0]["n"]
    assert first == 20 - stats["batch_cancelled"]
    assert "no batch in flight" in runner.invoke(main, ["cancel", str(job.path)]).output


async def test_schema_replies_that_fail_are_repaired_online_at_the_online_price(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Broken JSON from the batch is re-asked online; the repair's cost is recorded apart."""
    sim = sims.start(SimConfig(**FAST, malformed_rate=0.4))
    job = _job(tmp_path, monkeypatch, sim.root, output={"schema": SCHEMA, "max_repairs": 3},
               model={"params": {"max_tokens": 200}})  # fmt: skip
    summary = await arun_job(job)
    rows = _rows(job)
    repaired = [r for r in rows if r["repairs"]]
    assert summary.ok == 20 and repaired and all(r["label"] for r in rows)
    assert all(r["repair_cost_usd"] > 0 for r in repaired)
    assert all(r["cost_usd"] > r["repair_cost_usd"] for r in repaired)
    for row in (r for r in rows if not r["repairs"]):  # gpt-4o-mini batch: $0.075 / $0.30
        expected = (row["input_tokens"] * 0.075 + row["output_tokens"] * 0.3) / 1e6
        assert (row["cost_usd"], row["repair_cost_usd"]) == (pytest.approx(expected), 0.0)
    stats = sim.stats()
    assert stats["batches"] == 1
    assert stats["requests"] == 20 + sum(r["repairs"] for r in rows)


# --- the simulator's Batch APIs on the wire ---------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[SimServer]:
    sim = await start_server(SimConfig(api_key=KEY, batch_delay_s=0.05, latency_ms=1))
    yield sim
    await sim.close()


def _line(custom_id: str, body: dict[str, Any], url: str = "/v1/chat/completions") -> bytes:
    return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


async def _upload(http: aiohttp.ClientSession, server: SimServer, lines: list[bytes]) -> str:
    form = aiohttp.FormData()
    form.add_field("purpose", "batch")
    form.add_field("file", b"\n".join(lines), filename="input.jsonl")
    async with http.post(f"{server.url}/files", data=form) as resp:
        uploaded = await resp.json()
    assert (resp.status, uploaded["object"], uploaded["purpose"]) == (200, "file", "batch")
    return str(uploaded["id"])


async def _create(http: aiohttp.ClientSession, server: SimServer, file_id: str) -> Any:
    body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions",
            "completion_window": "24h", "metadata": {"batchllm_tag": "t-1"}}  # fmt: skip
    async with http.post(f"{server.url}/batches", json=body) as resp:
        assert resp.status == 200
        return await resp.json()


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json() if resp.content_type == "application/json" else await resp.read()


ASK = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Say hi"}],
    "max_tokens": 20,
}


async def test_openai_batch_api_answers_each_line_as_chat_would(server: SimServer) -> None:
    """Files + Batches: 200s in the output file as Chat answers them, a 400 in the error file."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http:
        lines = [_line("good", ASK), _line("bad", {"model": "gpt-4o-mini"})]
        created = await _create(http, server, await _upload(http, server, lines))
        assert (created["status"], created["request_counts"]["total"]) == ("validating", 2)
        assert isinstance(created["created_at"], int) and created["output_file_id"] is None
        listed = await _get(http, f"{server.url}/batches?limit=5")
        assert listed["data"][0]["metadata"] == {"batchllm_tag": "t-1"}
        await server.batch_ended(created["id"])
        ended = await _get(http, f"{server.url}/batches/{created['id']}")
        assert (ended["status"], ended["request_counts"]) == (
            "completed", {"total": 2, "completed": 1, "failed": 1}
        )  # fmt: skip
        output = orjson.loads(
            await _get(http, f"{server.url}/files/{ended['output_file_id']}/content")
        )
        errors = orjson.loads(
            await _get(http, f"{server.url}/files/{ended['error_file_id']}/content")
        )
        # the same bytes as the line's body: a reply's content is a function of the body
        chat = f"{server.url}/chat/completions"
        async with http.post(chat, data=orjson.dumps(ASK)) as resp:
            online = await resp.json()
        async with http.post(f"{server.url}/batches/{created['id']}/cancel") as resp:
            assert resp.status == 400
    assert (output["custom_id"], output["error"], output["response"]["status_code"]) == (
        "good",
        None,
        200,
    )
    assert output["response"]["body"]["choices"] == online["choices"]
    assert output["response"]["body"]["usage"] == online["usage"]
    assert (errors["custom_id"], errors["response"]["status_code"]) == ("bad", 400)
    assert errors["response"]["body"]["error"]["type"] == "invalid_request_error"
    stats = server.stats()
    assert (stats["batches"], stats["batch_requests"], stats["ok"], stats["errors"]) == (1, 2, 2, 1)
    assert stats["duplicates"] == 1  # the online request repeated the batch's body


async def test_openai_batch_with_a_bad_line_fails_validation(server: SimServer) -> None:
    """A line for another endpoint: the batch goes validating → failed, naming the line."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http:
        lines = [_line("a", ASK), _line("b", ASK, url="/v1/embeddings")]
        created = await _create(http, server, await _upload(http, server, lines))
        await server.batch_ended(created["id"])
        failed = await _get(http, f"{server.url}/batches/{created['id']}")
    assert failed["status"] == "failed"
    assert [(e["code"], e["line"]) for e in failed["errors"]["data"]] == [("mismatched_url", 2)]
    state = OpenAIBatches(server.url, KEY, "/v1/chat/completions").parse_batch(
        200, orjson.dumps(failed)
    )
    assert state.ended and state.error and state.error.startswith("line 2: mismatched_url: ")
    assert server.stats()["requests"] == 0


async def test_anthropic_message_batches_keep_everything_processing_until_the_end(
    server: SimServer,
) -> None:
    """Message Batches: processing until ended, batch usage, errored envelopes, cancels."""
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    params = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": ASK["messages"]}
    requests = [{"custom_id": "ok-1", "params": params},
                {"custom_id": "bad-1", "params": {**params, "max_tokens": None}}]  # fmt: skip
    base = f"{server.root}/v1/messages/batches"
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(base, json={"requests": requests}) as resp:
            created = await resp.json()
        assert created["processing_status"] == "in_progress" and created["results_url"] is None
        assert created["request_counts"]["processing"] == 2 and created["created_at"].endswith("Z")
        await server.batch_ended(created["id"])
        ended = await _get(http, f"{base}/{created['id']}")
        results = [
            orjson.loads(line) for line in (await _get(http, ended["results_url"])).splitlines()
        ]
        async with http.post(
            base, json={"requests": [{"custom_id": "x y", "params": params}]}
        ) as resp:
            assert resp.status == 400
        server.configure(batch_delay_s=30.0)
        async with http.post(base, json={"requests": requests}) as resp:
            long = await resp.json()
        async with http.post(f"{base}/{long['id']}/cancel") as resp:
            assert (await resp.json())["processing_status"] == "canceling"
        await server.batch_ended(long["id"])
        cancelled = await _get(http, f"{base}/{long['id']}")
        listed = await _get(http, f"{base}?limit=1")
    assert ended["processing_status"] == "ended" and ended["ended_at"].endswith("Z")
    assert (ended["request_counts"]["succeeded"], ended["request_counts"]["errored"]) == (1, 1)
    by_id = {line["custom_id"]: line["result"] for line in results}
    assert by_id["ok-1"]["type"] == "succeeded"
    assert by_id["ok-1"]["message"]["usage"]["service_tier"] == "batch"
    assert by_id["bad-1"]["type"] == "errored"
    assert by_id["bad-1"]["error"]["error"]["type"] == "invalid_request_error"
    assert (
        cancelled["request_counts"]["canceled"] == 2 and cancelled["processing_status"] == "ended"
    )
    assert [b["id"] for b in listed["data"]] == [long["id"]] and listed["has_more"]
    assert server.stats()["batch_cancelled"] == 2


async def test_a_batch_run_counts_what_it_sent(tmp_path: Path) -> None:
    """The run's summary and the runs view count the requests submitted in batches."""
    write_csv(tmp_path / "input.csv", ticket_rows(12))
    data = job_data(None, model={"provider": "simulated", "base_url": None, "mode": "batch"})
    data["simulate"] = {"latency_ms": 0, "jitter_ms": 0, "batch_delay_s": 0.05}
    data["batch"] = {"poll_s": 0.05}
    job = batchllm.load_job(write_job(tmp_path, data))
    summary = await arun_job(job)
    assert (summary.sent, summary.ok) == (12, 12)
    runs = batchllm.query(job, "select sent, ok from runs").to_pylist()
    assert runs == [{"sent": 12, "ok": 12}]
