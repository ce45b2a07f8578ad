"""Simulated OpenAI Chat Completions provider: a real aiohttp server for tests, demo and benchmarks.

Owns the server and its lifecycle, the chat request flow (scripted fault, auth, parse, rate limit,
random fault, reply), latency, request statistics and the ``/_sim/{stats,faults,reset}`` control
endpoints. Delegated: body formats to ``simulate_wire``, reply content to ``simulate_content``,
bucket arithmetic to ``simulate_limits``. Not here: streaming, the Responses and Batch APIs, other
providers' wire formats.

Determinism: reply content, and whether (and how) a schema reply is broken, are a function of
(seed, raw request body). Errors, hangs, resets and latency are a function of (seed, request
number), so a retried body can succeed where its first attempt failed, as with a real provider.

Rate limits: a request's token cost at admission is prompt_tokens + max_tokens (prompt_tokens + 16
without a cap), settled against the real total when the reply is sent. Rejected requests are not
debited; requests that fail after admission (5xx, hang, reset) keep their request debit and get
their tokens back. Scripted faults are served first and never touch the limiter.

Statistics: every chat request counts in ``requests`` and in exactly one of ``ok``,
``rate_limited`` (429 for rate limits, real or scripted), ``errors`` (every other 4xx/5xx),
``hangs`` or ``resets``. ``duplicates`` counts 200 replies to a body (same bytes) that had already
been answered 200 once, i.e. requests paid twice; token sums cover 200 replies only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import random
import signal
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from batchllm import simulate_wire as wire
from batchllm.simulate_content import (
    MALFORMED_KINDS,
    count_tokens,
    make_reply,
    prompt_tokens,
    wants_json,
)
from batchllm.simulate_limits import RateLimiter, Rejection

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "SimConfig",
    "SimServer",
    "count_tokens",
    "serve_forever",
    "start_server",
]

FAULT_KINDS = frozenset(
    {"429", "500", "502", "503", "529", "hang", "reset", "401", "403", "400"}
    | {"insufficient_quota", "malformed"}
)
HANG_S = 3600.0
_SHUTDOWN_S = 2.0
_MAX_BODY = 64 * 1024 * 1024
_UNCAPPED_RESERVE = 16
_MASK64 = (1 << 64) - 1
_SCRIPTED_429_WAIT_S = 0.02
_DELAYED_FAULTS = frozenset({"500", "502", "502-json", "503", "529", "reset"})
_STAT_KEYS = ("requests", "ok", "rate_limited", "errors", "hangs", "resets", "duplicates")
_TOKEN_KEYS = ("prompt_tokens", "completion_tokens")


@dataclass(frozen=True, slots=True)
class SimConfig:
    """How the simulated provider behaves; rates are fractions of chat requests.

    error_rate splits evenly over 500, 502 and 503 (half the 502s are a Cloudflare HTML page);
    error, hang and reset rates are exclusive slices of one draw, so their sum is at most 1.
    malformed_rate is a separate draw that applies to JSON (schema or json_object) replies only.
    """

    rpm: int | None = None
    tpm: int | None = None
    latency_ms: float = 50.0
    jitter_ms: float = 20.0
    error_rate: float = 0.0
    hang_rate: float = 0.0
    reset_rate: float = 0.0
    malformed_rate: float = 0.0
    api_key: str | None = None
    retry_after: bool = True
    seed: int = 0
    #: False: answer a json_schema response_format with 400, like servers without native support
    native_schema: bool = True

    def __post_init__(self) -> None:
        rates = (self.error_rate, self.hang_rate, self.reset_rate, self.malformed_rate)
        if any(not 0.0 <= r <= 1.0 for r in rates):
            raise ValueError("fault rates must be between 0 and 1")
        if self.error_rate + self.hang_rate + self.reset_rate > 1.0:
            raise ValueError("error_rate + hang_rate + reset_rate must not exceed 1")
        if any(limit is not None and limit < 1 for limit in (self.rpm, self.tpm)):
            raise ValueError("rpm and tpm must be positive or None")


@dataclass(frozen=True, slots=True)
class Fault:
    """A scripted fault applied to the next ``count`` chat requests (see FAULT_KINDS).

    ``retry_after_s`` is read by "429" only: when given, it is sent as retry-after-ms and
    retry-after; when None, the 429 carries no retry headers and only the message says when.
    "malformed" on a plain-text request cuts the reply in half with finish_reason "length".
    """

    kind: str
    count: int = 1
    retry_after_s: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(
                f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}"
            )
        if self.count < 1:
            raise ValueError("fault count must be at least 1")


class _Script:
    """FIFO of scripted faults; each entry serves ``count`` requests."""

    __slots__ = ("_queue",)

    def __init__(self) -> None:
        self._queue: deque[tuple[Fault, int]] = deque()

    def add(self, faults: list[Fault]) -> None:
        self._queue.extend((fault, fault.count) for fault in faults)

    def take(self) -> Fault | None:
        if not self._queue:
            return None
        fault, left = self._queue[0]
        if left == 1:
            self._queue.popleft()
        else:
            self._queue[0] = (fault, left - 1)
        return fault

    def clear(self) -> None:
        self._queue.clear()


@dataclass(frozen=True, slots=True)
class _Call:
    """One chat request in flight: its number (drives faults and latency) and start time."""

    request: web.Request
    n: int
    started: float


def _mix(seed: int, n: int, salt: int) -> int:
    """splitmix64 over (seed, n, salt): a cheap, well-spread, reproducible draw per request."""
    z = (seed * 0x9E3779B97F4A7C15 + n * 0xBF58476D1CE4E5B9 + salt * 0x94D049BB133111EB) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _unit(seed: int, n: int, salt: int) -> float:
    return _mix(seed, n, salt) / 2.0**64


def _retry_headers(wait_s: float) -> dict[str, str]:
    return {"retry-after-ms": f"{wait_s * 1000:.3f}", "retry-after": str(math.ceil(wait_s))}


def _drop(call: _Call) -> web.StreamResponse:
    """Close the socket with no reply; aiohttp then fails to write the response, quietly."""
    if call.request.transport is not None:
        call.request.transport.abort()
    return web.Response(status=204)


class _Provider:
    """The simulator's state and request handlers; one per server."""

    def __init__(self, config: SimConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.closing = asyncio.Event()
        self.script = _Script()
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        self.counts = dict.fromkeys(_STAT_KEYS + _TOKEN_KEYS, 0)
        self.limiter = RateLimiter(self.config.rpm, self.config.tpm, self._clock)
        self.script.clear()
        self._answered: set[bytes] = set()
        self._n = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/_sim/stats", self.stats_view)
        app.router.add_post("/_sim/faults", self.faults_view)
        app.router.add_post("/_sim/reset", self.reset_view)
        return app

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self._n += 1
        self.counts["requests"] += 1
        call = _Call(request, self._n, self._clock())
        body = await request.read()
        fault = self.script.take()
        if fault is not None and fault.kind != "malformed":
            return await self._fault(call, fault.kind, wire.model_of(body), fault)
        denied = wire.auth_failure(self.config.api_key, request.headers.get("Authorization"))
        if denied is not None:
            error = wire.envelope(denied, "invalid_request_error", "invalid_api_key")
            return self._send(call, 401, error, "errors")
        chat = wire.parse_chat(body)
        if isinstance(chat, wire.BadRequest):
            error = wire.envelope(chat.message, "invalid_request_error", chat.code, chat.param)
            return self._send(call, 400, error, "errors")
        if not self.config.native_schema and _asks_schema(chat.response_format):
            message = "response_format json_schema is not supported by this server"
            error = wire.envelope(message, "invalid_request_error", None, "response_format")
            return self._send(call, 400, error, "errors")
        return await self._answer(call, chat, body, forced_malformed=fault is not None)

    async def _answer(
        self, call: _Call, chat: wire.ChatRequest, body: bytes, forced_malformed: bool
    ) -> web.StreamResponse:
        tokens_in = prompt_tokens(chat.messages)
        reserved = tokens_in + (chat.max_tokens or _UNCAPPED_RESERVE)
        rejection = self.limiter.admit(reserved)
        if rejection is not None:
            return self._rate_limited(call, rejection, chat.model, self.config.retry_after)
        fault = self._random_fault(call.n)
        if fault is not None:
            self.limiter.refund(reserved)
            return await self._fault(call, fault, chat.model, None)
        digest = hashlib.blake2b(body, digest_size=16).digest()
        rng = random.Random(int.from_bytes(digest, "big") + (self.config.seed << 128))
        # Broken replies follow the request, not its arrival order, so a sample of rows sees the
        # same share of them as the whole input, however runs are split.
        body_n = int.from_bytes(digest[:8], "big")
        broken = self._malformed(body_n, forced_malformed, chat.response_format)
        reply = make_reply(chat.messages, chat.response_format, chat.max_tokens, rng, broken)
        await self._delay(call.n)
        self.limiter.refund(reserved - tokens_in - reply.completion_tokens)
        self._record_ok(digest, tokens_in, reply.completion_tokens)
        usage = (tokens_in, reply.completion_tokens)
        payload = wire.completion(
            chat, reply.content, reply.finish_reason, usage, self._id(call.n, 5)
        )
        return self._send(call, 200, payload, "ok")

    def _record_ok(self, digest: bytes, tokens_in: int, tokens_out: int) -> None:
        if digest in self._answered:
            self.counts["duplicates"] += 1
        self._answered.add(digest)
        self.counts["prompt_tokens"] += tokens_in
        self.counts["completion_tokens"] += tokens_out

    def _random_fault(self, n: int) -> str | None:
        c = self.config
        roll = _unit(c.seed, n, 1)
        if roll < c.error_rate:
            kind = ("500", "502", "503")[int(roll / c.error_rate * 3)]
            return "502-json" if kind == "502" and _unit(c.seed, n, 4) < 0.5 else kind
        roll -= c.error_rate
        if roll < c.hang_rate:
            return "hang"
        return "reset" if roll - c.hang_rate < c.reset_rate else None

    def _malformed(self, n: int, forced: bool, response_format: Any) -> str | None:
        roll, rate = _unit(self.config.seed, n, 3), self.config.malformed_rate
        if forced:
            return MALFORMED_KINDS[int(roll * len(MALFORMED_KINDS))]
        if roll < rate and wants_json(response_format):
            return MALFORMED_KINDS[int(roll / rate * len(MALFORMED_KINDS))]
        return None

    async def _fault(
        self, call: _Call, kind: str, model: str, fault: Fault | None
    ) -> web.StreamResponse:
        if kind == "hang":
            return await self._hang(call)
        if kind == "429":
            return self._scripted_429(call, model, fault)
        if kind in _DELAYED_FAULTS:
            await self._delay(call.n)
        if kind == "reset":
            self.counts["resets"] += 1
            return _drop(call)
        error = wire.ERRORS[kind]
        return self._send(call, error.status, error.body, "errors", content_type=error.content_type)

    def _scripted_429(self, call: _Call, model: str, fault: Fault | None) -> web.Response:
        wait = fault.retry_after_s if fault is not None else None
        limit = self.config.rpm or 3500
        rejection = Rejection("requests", wait or _SCRIPTED_429_WAIT_S, limit, limit, 1)
        return self._rate_limited(call, rejection, model, retry_headers=wait is not None)

    async def _hang(self, call: _Call) -> web.StreamResponse:
        self.counts["hangs"] += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HANG_S):
                await self.closing.wait()
        return _drop(call)

    async def _delay(self, n: int) -> None:
        c = self.config
        ms = c.latency_ms + c.jitter_ms * (2.0 * _unit(c.seed, n, 2) - 1.0)
        if ms > 0.0:
            await asyncio.sleep(ms / 1000.0)

    def _rate_limited(
        self, call: _Call, rejection: Rejection, model: str, retry_headers: bool
    ) -> web.Response:
        wanted = retry_headers and not rejection.too_large
        headers = _retry_headers(rejection.wait_s) if wanted else None
        message = wire.rate_limit_message(rejection, model)
        body = wire.envelope(message, rejection.dimension, "rate_limit_exceeded")
        return self._send(call, 429, body, "rate_limited", headers)

    def _send(
        self,
        call: _Call,
        status: int,
        body: bytes,
        stat: str,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> web.Response:
        self.counts[stat] += 1
        all_headers = {
            "x-request-id": f"req_{self._id(call.n, 6):016x}{self._id(call.n, 7):016x}",
            "openai-organization": wire.ORG,
            "openai-processing-ms": str(round((self._clock() - call.started) * 1000)),
            "openai-version": "2020-10-01",
            **self.limiter.headers(),
            **(headers or {}),
        }
        return web.Response(
            status=status, body=body, headers=all_headers, content_type=content_type
        )

    def _id(self, n: int, salt: int) -> int:
        return _mix(self.config.seed, n, salt)

    async def stats_view(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.counts), content_type="application/json")

    async def faults_view(self, request: web.Request) -> web.Response:
        try:
            faults = [_fault_from_json(item) for item in orjson.loads(await request.read())]
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, AttributeError) as exc:
            body = wire.envelope(f"bad fault list: {exc}", "invalid_request_error", None)
            return web.Response(status=400, body=body, content_type="application/json")
        self.script.add(faults)
        body = orjson.dumps({"queued": len(faults)})
        return web.Response(body=body, content_type="application/json")

    async def reset_view(self, request: web.Request) -> web.Response:
        self.reset()
        return web.Response(body=b"{}", content_type="application/json")


def _fault_from_json(item: Any) -> Fault:
    wait = item.get("retry_after_s")
    return Fault(
        str(item["kind"]), int(item.get("count", 1)), None if wait is None else float(wait)
    )


class SimServer:
    """A running simulated provider; make one with ``start_server`` and ``close`` it when done."""

    __slots__ = ("_closed", "_provider", "_runner", "port", "url")

    def __init__(self, provider: _Provider, runner: web.AppRunner, host: str, port: int) -> None:
        self._provider = provider
        self._runner = runner
        self._closed = False
        self.port = port
        self.url = f"http://{host}:{port}/v1"

    def stats(self) -> dict[str, int]:
        """Counters since start or the last reset (see the module docstring for their meaning)."""
        return dict(self._provider.counts)

    def script(self, faults: list[Fault]) -> None:
        """Queue faults for the next chat requests, FIFO, ahead of any random fault."""
        self._provider.script.add(faults)

    async def close(self) -> None:
        """Stop serving; hanging requests are released (their sockets dropped) first."""
        if self._closed:
            return
        self._closed = True
        self._provider.closing.set()
        await self._runner.cleanup()


async def start_server(config: SimConfig, host: str = "127.0.0.1", port: int = 0) -> SimServer:
    """Start the simulated provider on ``host:port`` (0 = any free port) in the running loop."""
    provider = _Provider(config, asyncio.get_running_loop().time)
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


def _asks_schema(response_format: Any) -> bool:
    return isinstance(response_format, dict) and response_format.get("type") == "json_schema"


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
