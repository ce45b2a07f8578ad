"""Keys stay home: no redirect carries them away, no echo of them is stored or logged."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

import batchllm
from batchllm import arun_job
from conftest import job_data, ticket_rows, write_csv, write_job

KEY = "sk-echoed-secret-0123456789abcdef"
ENV = "BATCHLLM_TEST_SECRET_KEY"
#: provider -> base URL on a hostile server at ``root``
BASE_URLS: dict[str, Callable[[str], str]] = {
    "openai": lambda root: f"{root}/v1",
    "openai-compatible": lambda root: f"{root}/v1",
    "openai-responses": lambda root: f"{root}/v1",
    "anthropic": lambda root: root,
    "gemini": lambda root: f"{root}/v1beta",
    "azure-openai": lambda root: f"{root}/openai/deployments/triage",
}
PROVIDERS = sorted(BASE_URLS)


class Hostile:
    """A server on loopback that answers every path the same scripted way and records what
    reached it (path and headers)."""

    def __init__(self, answer: Callable[[web.Request], web.Response]) -> None:
        self.answer = answer
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.root = ""

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.seen.append((request.path, dict(request.headers)))
        return self.answer(request)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Callable[[web.Request], web.Response]], Any]]:
    runners: list[web.AppRunner] = []

    async def _serve(answer: Callable[[web.Request], web.Response]) -> Hostile:
        hostile = Hostile(answer)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", hostile.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        hostile.root = f"http://127.0.0.1:{port}"
        runners.append(runner)
        return hostile

    yield _serve
    for runner in runners:
        await runner.cleanup()


MODELS = {"anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}


def _job(tmp_path: Path, provider: str, base_url: str, mode: str = "online") -> batchllm.JobSpec:
    write_csv(tmp_path / "input.csv", ticket_rows(6))
    name = MODELS.get(provider, "gpt-4o-mini")
    model = {"provider": provider, "name": name, "base_url": base_url, "api_key_env": ENV}
    model["mode"] = mode
    data = job_data(
        None, model=model, limits={"concurrency": 2}, retry={"max_attempts": 1, "timeout_s": 5}
    )
    return batchllm.load_job(write_job(tmp_path, data))


def _echo(status: int) -> Callable[[web.Request], web.Response]:
    """An answer that echoes every request header back in the body (JSON for an error, plain
    text for a 200, which no provider's parser can use) and in a header."""

    def answer(request: web.Request) -> web.Response:
        headers = {str(k): v for k, v in request.headers.items()}
        echoed = orjson.dumps({"echo": headers}) if status != 200 else str(headers).encode()
        values = ",".join(request.headers.values())
        return web.Response(status=status, body=echoed, headers={"x-echo": values})

    return answer


def _files_text(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file())


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_never_followed_and_stops_the_run(
    tmp_path: Path,
    serve: Any,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    status: int,
) -> None:
    """A base URL answering 3xx to another host stops the run (exit 4) naming both URLs; the
    other host receives nothing, so no key header goes there."""
    monkeypatch.setenv(ENV, KEY)
    elsewhere = await serve(lambda _: web.Response(status=200, body=b"{}"))

    def redirect(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": f"{elsewhere.root}/stolen"})

    origin = await serve(redirect)
    job = _job(tmp_path, provider, BASE_URLS[provider](origin.root))
    with pytest.raises(batchllm.FatalProviderError, match="redirect") as caught:
        await arun_job(job)
    assert caught.value.exit_code == 4
    assert elsewhere.seen == []
    assert origin.seen, "the request reached the first server"
    message = str(caught.value)
    assert origin.root in message and f"{elsewhere.root}/stolen" in message
    assert KEY not in message


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status", [200, 400, 500])
async def test_a_key_echoed_by_the_server_is_stored_nowhere(
    tmp_path: Path,
    serve: Any,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    status: int,
) -> None:
    """A server echoing the request headers (an unusable 200, a 400, a 500) leaves error rows
    that show ``***`` where the key was: the run directory holds the key nowhere."""
    monkeypatch.setenv(ENV, KEY)
    echo = await serve(_echo(status))
    job = _job(tmp_path, provider, BASE_URLS[provider](echo.root))
    summary = await arun_job(job)
    assert summary.failed == 6
    assert any(KEY in str(headers) for _, headers in echo.seen), "the key was sent"
    errors = batchllm.query(job, "select error from results").column("error").to_pylist()
    assert all("***" in error for error in errors), errors
    assert KEY.encode() not in _files_text(job.output_dir)


async def test_a_key_echoed_inside_a_good_reply_is_masked_in_the_output(
    tmp_path: Path, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy that copies the key into the reply's text: the stored output reads ``***``."""
    monkeypatch.setenv(ENV, KEY)

    def answer(request: web.Request) -> web.Response:
        text = f"billing (auth was {request.headers.get('Authorization')})"
        body = {"choices": [{"message": {"content": text}, "finish_reason": "stop"}]}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    server = await serve(answer)
    job = _job(tmp_path, "openai-compatible", f"{server.root}/v1")
    summary = await arun_job(job)
    assert summary.ok == 6
    outputs = batchllm.query(job, "select output from results").column("output").to_pylist()
    assert outputs == ["billing (auth was Bearer ***)"] * 6
    assert KEY.encode() not in _files_text(job.output_dir)


def test_the_cli_prints_no_echoed_key_in_logs_or_errors(tmp_path: Path) -> None:
    """A real ``batchllm run`` against an echoing server at debug level: neither its output
    nor its logs nor the run directory hold the key."""
    script = tmp_path / "echo_server.py"
    script.write_text(_ECHO_SERVER, encoding="utf-8")
    server = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert server.stdout is not None
        root = server.stdout.readline().strip()
        job = _job(tmp_path, "anthropic", root)
        env = {**_clean_env(), ENV: KEY}
        done = subprocess.run(
            [sys.executable, "-m", "batchllm", "-v", "run", str(job.path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()
    assert done.returncode != 0, done.stderr
    assert KEY not in done.stdout + done.stderr
    stored = _files_text(job.output_dir)
    assert b"***" in stored, "the echo reached the results, masked"
    assert KEY.encode() not in stored


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if "KEY" not in k}


_ECHO_SERVER = """
import orjson
from aiohttp import web

async def handle(request):
    await request.read()
    echoed = {"error": {"message": str(dict(request.headers))}}
    return web.Response(status=400, body=orjson.dumps(echoed))

async def main():
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    import asyncio
    await asyncio.Event().wait()

import asyncio
asyncio.run(main())
"""


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_batch_mode_follows_no_redirect_either(
    tmp_path: Path, serve: Any, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """The batch APIs' calls (file upload, batch creation) refuse a redirect as online calls do."""
    monkeypatch.setenv(ENV, KEY)
    elsewhere = await serve(lambda _: web.Response(status=200, body=b"{}"))
    origin = await serve(
        lambda _: web.Response(status=307, headers={"Location": f"{elsewhere.root}/x"})
    )
    job = _job(tmp_path, provider, BASE_URLS[provider](origin.root), mode="batch")
    with pytest.raises(batchllm.FatalProviderError, match="redirect"):
        await arun_job(job)
    assert elsewhere.seen == []
    assert origin.seen
