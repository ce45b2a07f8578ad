"""Simulated LLM provider: a real aiohttp server for tests, demo and benchmarks.

Owns the server's lifecycle (``start_server``, ``SimServer``, ``serve_forever``) and its public
names. Each wire format answers on its real path:

    POST /v1/chat/completions                               OpenAI Chat       wire
    POST /v1/responses                                      OpenAI Responses  responses
    POST /v1/messages                                       Anthropic         anthropic
    POST /v1beta/models/{model}:generateContent             Gemini            gemini
    POST /openai/deployments/{name}/chat/completions        Azure OpenAI      azure
    /v1/files[/{id}[/content]]                              OpenAI Files      batches_files
    /v1/batches[/{id}[/cancel]]                             OpenAI Batch      batches_openai
    /v1/messages/batches[/{id}[/cancel|/results]]           Anthropic Batch   batches_anthropic
    /v1beta/models/{model}:batchGenerateContent, /v1beta/batches[/{id}[:cancel]]
                                                            Gemini Batch      batches_gemini

plus ``GET /_sim/stats``, ``POST /_sim/faults`` and ``POST /_sim/reset``. Delegated: the request
flow every format shares, statistics, determinism and prompt caching to ``flow``; bodies,
envelopes and headers to the format modules (``formats`` is their seam); reply content to
``content``; bucket arithmetic to ``limits``; settings and scripted faults to
``config``; batch timing and item fates to ``batches``. Not here: streaming.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from typing import Any

from aiohttp import web

from batchllm.simulate.config import FAULT_KINDS, Fault, SimConfig
from batchllm.simulate.content import count_tokens
from batchllm.simulate.flow import Provider

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "SimConfig",
    "SimServer",
    "count_tokens",
    "serve_forever",
    "start_server",
]

_SHUTDOWN_S = 2.0


class SimServer:
    """A running simulated provider; make one with ``start_server`` and ``close`` it when done.

    ``root`` is the server's origin (Anthropic's base URL, and the prefix of Gemini's and Azure's);
    ``url`` is ``root + "/v1"``, the OpenAI base URL.
    """

    __slots__ = ("_closed", "_provider", "_runner", "port", "root", "url")

    def __init__(self, provider: Provider, runner: web.AppRunner, host: str, port: int) -> None:
        self._provider = provider
        self._runner = runner
        self._closed = False
        self.port = port
        self.root = f"http://{host}:{port}"
        self.url = f"{self.root}/v1"

    def stats(self) -> dict[str, int]:
        """Counters since start or the last reset (their meaning: ``batchllm.simulate.flow``)."""
        return dict(self._provider.counts)

    def configure(self, **changes: Any) -> None:
        """Change settings for the requests and batches that come next (a long batch, then a
        short one); changing ``rpm`` or ``tpm`` starts the limiter afresh."""
        self._provider.configure(dataclasses.replace(self._provider.config, **changes))

    def script(self, faults: list[Fault]) -> None:
        """Queue faults for the next requests (any format) and batch create calls, FIFO, ahead
        of any random fault."""
        self._provider.script.add(faults)

    async def batch_ended(self, batch_id: str) -> None:
        """Wait until the batch ``batch_id`` (of any batch API) has ended, cancelled or not;
        only from the loop the server runs in."""
        await self._provider.batches.batches[batch_id].finished.wait()

    async def close(self) -> None:
        """Stop serving; hanging requests are released (their sockets dropped) first."""
        if self._closed:
            return
        self._closed = True
        self._provider.shutdown()
        await self._runner.cleanup()


async def start_server(config: SimConfig, host: str = "127.0.0.1", port: int = 0) -> SimServer:
    """Start the simulated provider on ``host:port`` (0 = any free port) in the running loop."""
    provider = Provider(config, asyncio.get_running_loop().time)
    runner = web.AppRunner(
        provider.app(), access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_S
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return SimServer(provider, runner, host, int(runner.addresses[0][1]))


def serve_forever(config: SimConfig, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM (for ``batchllm simulate``); prints the URL once, on stdout."""
    asyncio.run(_serve(config, host, port))


async def _serve(config: SimConfig, host: str, port: int) -> None:
    server = await start_server(config, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"simulated provider listening on {server.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.close()
