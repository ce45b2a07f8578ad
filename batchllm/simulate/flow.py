"""The request flow every wire format of the simulated provider shares.

Owns ``Provider``: the simulator's state (counters, limiter, fault script, prompt cache) and its
handlers: for each request, scripted fault, auth, parse, rate limit, random fault, reply, each
answered through the request's ``WireFormat`` (a model named ``no-such-...`` is unknown: 404,
and so is any path the simulator does not serve); plus the ``/_sim/{stats,faults,reset}`` control
endpoints. Batch items come through ``answer_item``; service tiers pass ``simulate.flex``'s gate.

Determinism: reply content, and whether (and how) a schema reply is broken, are a function of
(seed, raw request body). Errors, hangs, resets and latency are a function of (seed, request
number), so a retried body can succeed where its first attempt failed, as with a real provider.

Rate limits: a request's token cost at admission is prompt_tokens + max_tokens (prompt_tokens + 16
without a cap), settled against the real total when the reply is sent. Rejected requests are not
debited; requests that fail after admission (5xx, hang, reset) keep their request debit and get
their tokens back. Scripted faults are served first and never touch the limiter. The same buckets
serve every format; each format reports them in its own headers.

Prompt caching: a request that marks a prompt prefix for caching (Anthropic ``cache_control`` on
a system block) writes it the first time its (model, prefix) is answered and reads it on every
later answer, for the server's life: no TTL and no minimum length, so small test prompts cache.

Statistics: every request counts in ``requests`` and in exactly one of ``ok``, ``rate_limited``
(429 for rate limits, real or scripted), ``errors`` (every other 4xx/5xx), ``hangs`` or
``resets``. ``duplicates`` counts 200 replies to a body (same bytes) that had already been
answered 200 once, i.e. requests paid twice; token sums cover 200 replies only, and
``prompt_tokens`` includes cached tokens. A batch item that is executed counts like a request
(``answer_item``); ``batches`` counts batches created, ``batch_requests`` the items they carried,
``batch_expired`` and ``batch_cancelled`` the items that ended unanswered (see
``batchllm.simulate.batches``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson
from aiohttp import web

from batchllm.simulate import wire
from batchllm.simulate.anthropic import AnthropicFormat
from batchllm.simulate.azure import AzureFormat
from batchllm.simulate.batches import BatchEngine
from batchllm.simulate.batches_anthropic import AnthropicBatchRoutes
from batchllm.simulate.batches_gemini import ONLINE_PATH, GeminiBatchRoutes
from batchllm.simulate.batches_openai import OpenAIBatchRoutes
from batchllm.simulate.config import Fault, FaultScript, SimConfig, mix, unit
from batchllm.simulate.content import (
    MALFORMED_KINDS,
    Reply,
    count_tokens,
    make_reply,
    prompt_tokens,
    wants_json,
)
from batchllm.simulate.flex import flex_gate
from batchllm.simulate.formats import ErrorReply, Incoming, SimRequest, SimUsage, WireFormat
from batchllm.simulate.gemini import GeminiFormat
from batchllm.simulate.limits import RateLimiter, Rejection
from batchllm.simulate.media import MediaRejected, media_tokens
from batchllm.simulate.reshape import as_events, body_digest, emptied, no_stream
from batchllm.simulate.responses import ResponsesFormat

HANG_S = 3600.0
#: models the simulator does not serve (404, as a real server answers a model it does not know)
UNKNOWN_MODEL_PREFIX = "no-such-"
_MAX_BODY = 64 * 1024 * 1024
_UNCAPPED_RESERVE = 16
_EVENTS = "text/event-stream"
#: scripted faults that change a reply's content rather than replace the reply
_CONTENT_FAULTS = frozenset({"malformed", "empty"})
_SCRIPTED_429_WAIT_S = 0.02
_DELAYED_FAULTS = frozenset({"500", "502", "502-json", "503", "529", "reset"})
_STAT_KEYS = ("requests", "ok", "rate_limited", "errors", "hangs", "resets", "duplicates")
_BATCH_KEYS = ("batches", "batch_requests", "batch_expired", "batch_cancelled")
_TOKEN_KEYS = ("prompt_tokens", "completion_tokens")
#: each wire format on its real path
ROUTES: tuple[tuple[str, WireFormat], ...] = (
    ("/v1/chat/completions", wire.ChatFormat()),
    ("/v1/responses", ResponsesFormat()),
    ("/v1/messages", AnthropicFormat()),
    ("/v1beta/models/{model}:generateContent", GeminiFormat()),
    ("/openai/deployments/{deployment}/chat/completions", AzureFormat()),
)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class _Call:
    """One request in flight: its format, its number (drives faults and latency), start time."""

    request: web.Request
    fmt: WireFormat
    incoming: Incoming
    n: int
    started: float


def _drop(call: _Call) -> web.StreamResponse:
    """Close the socket with no reply; aiohttp then fails to write the response, quietly."""
    if call.request.transport is not None:
        call.request.transport.abort()
    return web.Response(status=204)


class Provider:
    """The simulator's state and request handlers; one per server."""

    def __init__(self, config: SimConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.closing = asyncio.Event()
        self.script = FaultScript()
        self._clock = clock
        self.batches = BatchEngine(self, clock)
        self.reset()

    def configure(self, config: SimConfig) -> None:
        """New settings for what comes next; new rpm or tpm start the limiter afresh."""
        limits_changed = (config.rpm, config.tpm) != (self.config.rpm, self.config.tpm)
        self.config = config
        if limits_changed:
            self.limiter = RateLimiter(config.rpm, config.tpm, self._clock)

    def shutdown(self) -> None:
        """Release hanging requests and stop the batch timers (the server is closing)."""
        self.closing.set()
        self.batches.close()

    def reset(self) -> None:
        self.counts = dict.fromkeys(_STAT_KEYS + _TOKEN_KEYS + _BATCH_KEYS, 0)
        self.limiter = RateLimiter(self.config.rpm, self.config.tpm, self._clock)
        self.script.clear()
        self._answered: set[bytes] = set()
        self._cached: set[bytes] = set()
        self._n = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=_MAX_BODY)
        for path, fmt in ROUTES:
            app.router.add_post(path, self._handler(fmt))
        OpenAIBatchRoutes(self.batches, dict(ROUTES)).add(app)
        AnthropicBatchRoutes(self.batches, dict(ROUTES)["/v1/messages"]).add(app)
        GeminiBatchRoutes(self.batches, dict(ROUTES)[ONLINE_PATH]).add(app)
        app.router.add_get("/_sim/stats", self.stats_view)
        app.router.add_post("/_sim/faults", self.faults_view)
        app.router.add_post("/_sim/reset", self.reset_view)
        return app

    def _handler(self, fmt: WireFormat) -> _Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.handle(fmt, request)

        return flex_gate(self, fmt, handle)

    async def handle(self, fmt: WireFormat, request: web.Request) -> web.StreamResponse:
        self._n += 1
        self.counts["requests"] += 1
        n, started = self._n, self._clock()
        call = _Call(request, fmt, await self._incoming(request, n), n, started)
        fault = self.script.take()
        kind = fault.kind if fault is not None else None
        if kind is not None and kind not in _CONTENT_FAULTS:
            return await self._fault(call, kind, fault)
        denied = fmt.authorize(self.config.api_key, call.incoming)
        if denied is not None:
            return self._send_error(call, denied, "errors")
        parsed = self._parse(fmt, call.incoming)
        if isinstance(parsed, ErrorReply):
            return self._send_error(call, parsed, "errors")
        if parsed.model.startswith(UNKNOWN_MODEL_PREFIX):
            return self._send_error(
                call, _model_not_found(fmt, parsed.model, call.incoming), "errors"
            )
        return await self._answer(call, parsed, kind)

    def _parse(self, fmt: WireFormat, incoming: Incoming) -> SimRequest | ErrorReply:
        parsed = fmt.parse(incoming)
        if isinstance(parsed, ErrorReply):
            return parsed
        if not self.config.native_schema and _asks_schema(parsed.response_format):
            field = fmt.schema_field
            message = f"{field} json_schema is not supported by this server"
            return fmt.bad_request(message, field, incoming)
        try:
            charged = media_tokens(parsed.messages, self.config.max_media_bytes)
        except MediaRejected as exc:
            return fmt.bad_request(str(exc), "messages", incoming)
        return replace(parsed, media_tokens=charged) if charged else parsed

    def answer_item(
        self, fmt: WireFormat, incoming: Incoming, fault: str | None
    ) -> tuple[int, bytes]:
        """A batch item, answered as the online path answers the same body: same content, same
        usage, same error bodies. Batch traffic has its own pool, so no rate limit, latency,
        hang or reset; ``fault`` is the item's own draw ("500" or None)."""
        self.counts["requests"] += 1
        parsed = self._parse(fmt, incoming)
        if isinstance(parsed, ErrorReply) or fault is not None:
            error = (
                parsed if isinstance(parsed, ErrorReply) else fmt.error(fault or "500", incoming)
            )
            self.counts["errors"] += 1
            return error.status, error.body
        digest = body_digest(incoming.body)
        reply = self._content(parsed, digest, forced_malformed=False)
        tokens_in = prompt_tokens(parsed.messages) + parsed.media_tokens
        usage = self._usage(parsed, tokens_in, reply.completion_tokens)
        self._record_ok(digest, tokens_in, reply.completion_tokens)
        self.counts["ok"] += 1
        return 200, fmt.reply(parsed, reply, usage, incoming)

    async def _incoming(self, request: web.Request, n: int) -> Incoming:
        request_id = f"{self._id(n, 6):016x}{self._id(n, 7):016x}"
        return Incoming(
            path=dict(request.match_info),
            headers=request.headers,
            query=request.query,
            body=await request.read(),
            request_id=request_id,
            reply_id=f"{self._id(n, 5):016x}",
        )

    async def _answer(
        self, call: _Call, ask: SimRequest, scripted: str | None
    ) -> web.StreamResponse:
        tokens_in = prompt_tokens(ask.messages) + ask.media_tokens
        reserved = tokens_in + (ask.max_tokens or _UNCAPPED_RESERVE)
        rejection = self.limiter.admit(reserved)
        if rejection is not None:
            return self._rate_limited(call, rejection, ask.model, self.config.retry_after)
        fault = self._random_fault(call.n)
        if fault is not None:
            self.limiter.refund(reserved)
            return await self._fault(call, fault, None)
        digest = body_digest(call.incoming.body)
        reply = self._content(ask, digest, scripted == "malformed")
        usage = self._usage(ask, tokens_in, reply.completion_tokens)
        await self._delay(call.n)
        unused = reserved - tokens_in - reply.completion_tokens
        # A provider that does not refund keeps max_tokens until its window passes; either way
        # a reply longer than its reservation (no max_tokens) is charged in full.
        self.limiter.refund(unused if self.config.refund_unused else min(unused, 0))
        self._record_ok(digest, tokens_in, reply.completion_tokens)
        body = call.fmt.reply(ask, reply, usage, call.incoming)
        if scripted == "empty":
            body = emptied(body)
        if self.config.streams_by_default and not no_stream(call.incoming.body):
            return self._send(call, 200, as_events(body), "ok", content_type=_EVENTS)
        return self._send(call, 200, body, "ok")

    def _content(self, ask: SimRequest, digest: bytes, forced_malformed: bool) -> Reply:
        rng = random.Random(int.from_bytes(digest, "big") + (self.config.seed << 128))
        # Broken replies follow the request, not its arrival order, so a sample of rows sees the
        # same share of them as the whole input, however runs are split.
        body_n = int.from_bytes(digest[:8], "big")
        broken = self._malformed(body_n, forced_malformed, ask.response_format)
        return make_reply(ask.messages, ask.response_format, ask.max_tokens, rng, broken)

    def _usage(self, ask: SimRequest, tokens_in: int, tokens_out: int) -> SimUsage:
        if ask.cache_prefix is None:
            return SimUsage(tokens_in, tokens_out)
        cached = min(count_tokens(ask.cache_prefix), tokens_in)
        key = hashlib.blake2b(orjson.dumps([ask.model, ask.cache_prefix]), digest_size=16)
        if key.digest() in self._cached:
            return SimUsage(tokens_in, tokens_out, cache_read=cached)
        self._cached.add(key.digest())
        return SimUsage(tokens_in, tokens_out, cache_write=cached)

    def _record_ok(self, digest: bytes, tokens_in: int, tokens_out: int) -> None:
        if digest in self._answered:
            self.counts["duplicates"] += 1
        self._answered.add(digest)
        self.counts["prompt_tokens"] += tokens_in
        self.counts["completion_tokens"] += tokens_out

    def _random_fault(self, n: int) -> str | None:
        c = self.config
        roll = unit(c.seed, n, 1)
        if roll < c.error_rate:
            kind = ("500", "502", "503")[int(roll / c.error_rate * 3)]
            return "502-json" if kind == "502" and unit(c.seed, n, 4) < 0.5 else kind
        roll -= c.error_rate
        if roll < c.hang_rate:
            return "hang"
        return "reset" if roll - c.hang_rate < c.reset_rate else None

    def _malformed(self, n: int, forced: bool, response_format: Any) -> str | None:
        roll, rate = unit(self.config.seed, n, 3), self.config.malformed_rate
        if forced:
            return MALFORMED_KINDS[int(roll * len(MALFORMED_KINDS))]
        if roll < rate and wants_json(response_format):
            return MALFORMED_KINDS[int(roll / rate * len(MALFORMED_KINDS))]
        return None

    async def _fault(self, call: _Call, kind: str, fault: Fault | None) -> web.StreamResponse:
        if kind == "hang":
            return await self._hang(call)
        if kind == "429":
            return self._scripted_429(call, fault)
        if kind in _DELAYED_FAULTS:
            await self._delay(call.n)
        if kind == "reset":
            self.counts["resets"] += 1
            return _drop(call)
        return self._send_error(call, call.fmt.error(kind, call.incoming), "errors")

    def _scripted_429(self, call: _Call, fault: Fault | None) -> web.Response:
        wait = fault.retry_after_s if fault is not None else None
        limit = self.config.rpm or 3500
        rejection = Rejection("requests", wait or _SCRIPTED_429_WAIT_S, limit, limit, 1)
        model = call.fmt.model_of(call.incoming)
        return self._rate_limited(call, rejection, model, with_wait=wait is not None)

    async def _hang(self, call: _Call) -> web.StreamResponse:
        self.counts["hangs"] += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HANG_S):
                await self.closing.wait()
        return _drop(call)

    async def _delay(self, n: int) -> None:
        c = self.config
        ms = c.latency_ms + c.jitter_ms * (2.0 * unit(c.seed, n, 2) - 1.0)
        if ms > 0.0:
            await asyncio.sleep(ms / 1000.0)

    def _rate_limited(
        self, call: _Call, rejection: Rejection, model: str, with_wait: bool
    ) -> web.Response:
        error = call.fmt.rate_limited(rejection, model, with_wait, call.incoming)
        return self._send_error(call, error, "rate_limited")

    def _send_error(self, call: _Call, error: ErrorReply, stat: str) -> web.Response:
        return self._send(call, error.status, error.body, stat, error.headers, error.content_type)

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
        processing_ms = round((self._clock() - call.started) * 1000)
        all_headers = {
            **call.fmt.headers(call.incoming, processing_ms, self.limiter.state()),
            **dict(self.config.reply_headers),
            **(headers or {}),
        }
        return web.Response(
            status=status, body=body, headers=all_headers, content_type=content_type
        )

    def _id(self, n: int, salt: int) -> int:
        return mix(self.config.seed, n, salt)

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
        str(item["kind"]),
        int(item.get("count", 1)),
        None if wait is None else float(wait),
        int(item.get("after", 0)),
    )


def _model_not_found(fmt: WireFormat, model: str, incoming: Incoming) -> ErrorReply:
    message = f"The model `{model}` does not exist or you do not have access to it."
    return dataclasses.replace(fmt.bad_request(message, "model", incoming), status=404)


def _asks_schema(response_format: Any) -> bool:
    return isinstance(response_format, dict) and response_format.get("type") == "json_schema"
