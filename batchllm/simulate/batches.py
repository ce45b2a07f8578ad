"""The simulated provider's Batch APIs: how a batch lives, and what becomes of each item.

Owns ``BatchEngine``: batches in memory, the fate of each item, the clock that moves a batch from
created to ended, cancelling, and the counters ``batches``, ``batch_requests``,
``batch_expired`` and ``batch_cancelled``. Nothing polls: a batch ends on a timer
(``loop.call_later``) set when it is created, its drawn time later (``batches_time``: by
default ``batch_delay_s``; validation takes the first tenth of that); its progress before then
is computed from the clock when asked. A cancel stops that timer, keeps the items done so far
(the share of the delay that has passed), and ends the batch a moment later with the rest
cancelled.

At the end every item is answered through ``Provider.answer_item``, exactly as the online path
answers the same body (content, usage, error bodies, statistics), unless its fate says
otherwise. Fates are drawn per (seed, custom_id, attempt), the attempt counting the batches that
carried that custom_id: ``batch_expire_rate`` of items expire unanswered, ``batch_error_rate``
are answered 500. Request ids are a function of (seed, batch id, custom_id).

A fault scripted on the provider (``SimServer.script``) applies to the next create call, since a
batch job sends no other request: "hang" and "reset" make the batch and lose the reply (the crash
between create and recording its id that a client must survive); the error kinds refuse the call.

Wire shapes live in ``batches_openai`` (Batches), ``batches_files`` (Files)
``batches_anthropic`` (Message Batches) and ``batches_gemini`` (Batch Mode); this module owns
none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiohttp import web

from batchllm.simulate.batches_time import batch_time
from batchllm.simulate.config import FaultScript, SimConfig, mix, unit
from batchllm.simulate.formats import ErrorReply, Incoming, WireFormat
from batchllm.simulate.limits import Rejection

#: share of a batch's delay spent validating (OpenAI's ``validating`` status)
VALIDATE_SHARE = 0.1
#: a cancelled batch stays ``cancelling`` this share of its delay, at most CANCEL_MAX_S
CANCEL_SHARE = 0.1
CANCEL_MAX_S = 0.2
_FATE_SALT = 11
#: a create call told to hang waits this long at most (or until the server closes)
HANG_S = 3600.0
#: scripted faults that still make the batch; the others refuse the create call
LOST_REPLY = frozenset({"hang", "reset"})
_CREATE_429_WAIT_S = 0.05


class Provider(Protocol):
    """What the batch engine uses of the simulated provider (``batchllm.simulate.flow``'s)."""

    config: SimConfig
    counts: dict[str, int]
    script: FaultScript
    closing: asyncio.Event

    def answer_item(
        self, fmt: WireFormat, incoming: Incoming, fault: str | None
    ) -> tuple[int, bytes]: ...


@dataclass(slots=True)
class BatchItem:
    """One request of a batch; ``result`` is pending until the batch ends."""

    custom_id: str
    body: bytes
    #: "answer", "error" (answered 500) or "expire"
    fate: str
    result: str = "pending"  # then succeeded, errored, expired or cancelled
    status: int = 0
    reply: bytes = b""
    request_id: str = ""


@dataclass(slots=True)
class SimBatch:
    """A batch as the simulator keeps it; ``api`` is "openai", "anthropic" or "gemini"."""

    id: str
    api: str
    fmt: WireFormat
    items: list[BatchItem]
    #: headers the items are parsed with (Anthropic's ``anthropic-version``)
    headers: Mapping[str, str]
    created_at: float
    started: float
    delay_s: float
    #: per-API fields (OpenAI: endpoint, input file, metadata, validation errors, file ids)
    extra: dict[str, Any] = field(default_factory=dict)
    cut: int | None = None
    cancelled_at: float | None = None
    ended_at: float | None = None
    timer: asyncio.TimerHandle | None = None
    #: set when the batch ends (tests wait on it instead of sleeping)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    @property
    def cancelling(self) -> bool:
        return self.cancelled_at is not None and not self.ended

    def validating(self, now: float) -> bool:
        return not self.ended and now - self.started < self.delay_s * VALIDATE_SHARE

    def done(self, now: float) -> list[BatchItem]:
        """The items processed by ``now`` (all of them once the batch has ended)."""
        if self.ended or self.delay_s <= 0:
            return self.items if self.cut is None else self.items[: self.cut]
        if self.cut is not None:
            return self.items[: self.cut]
        share = min(max((now - self.started) / self.delay_s, 0.0), 1.0)
        return self.items[: math.floor(len(self.items) * share)]

    def results(self) -> Counter[str]:
        return Counter(item.result for item in self.items)


class BatchEngine:
    """Every batch of one simulated provider, both APIs."""

    def __init__(self, provider: Provider, clock: Callable[[], float]) -> None:
        self.provider = provider
        self.clock = clock
        self.batches: dict[str, SimBatch] = {}
        self._attempts: Counter[str] = Counter()

    def create(
        self,
        api: str,
        fmt: WireFormat,
        requests: list[tuple[str, bytes]],
        headers: Mapping[str, str],
        extra: dict[str, Any] | None = None,
    ) -> SimBatch:
        """A new batch of (custom_id, online request body); it ends ``batch_delay_s`` from now."""
        prefix = {"openai": "batch_", "anthropic": "msgbatch_"}.get(api, "")
        items = [BatchItem(cid, body, self._fate(cid)) for cid, body in requests]
        drawn = batch_time(self.provider.config, len(self.batches))
        delay = drawn.seconds
        if drawn.stalled:
            for item in items:
                item.fate = "expire"
        batch = SimBatch(
            f"{prefix}{uuid.uuid4().hex}", api, fmt, items, dict(headers), _now(),
            self.clock(), delay, extra or {},
        )  # fmt: skip
        self.batches[batch.id] = batch
        self.provider.counts["batches"] += 1
        self.provider.counts["batch_requests"] += len(items)
        batch.timer = asyncio.get_running_loop().call_later(delay, self._finish, batch)
        return batch

    def create_fault(self) -> str | None:
        """The scripted fault for a create call: the next in the provider's script, if any."""
        fault = self.provider.script.take()
        return fault.kind if fault is not None else None

    def refusal(self, fmt: WireFormat, kind: str | None, request: web.Request) -> ErrorReply | None:
        """The error a scripted fault answers a create call with (None: the batch is made)."""
        if kind is None or kind in LOST_REPLY or kind in ("malformed", "empty"):
            return None
        if kind == "429":
            rejection = Rejection("requests", _CREATE_429_WAIT_S, 1, 1, 1)
            return fmt.rate_limited(rejection, "batch", True, incoming(request))
        return fmt.error(kind, incoming(request))

    async def lose_reply(self, request: web.Request, kind: str) -> web.Response:
        """The batch is made but the caller never hears of it: a hang, or a dropped socket."""
        if kind == "hang":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HANG_S):
                    await self.provider.closing.wait()
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=204)

    def get(self, api: str, batch_id: str) -> SimBatch | None:
        batch = self.batches.get(batch_id)
        return batch if batch is not None and batch.api == api else None

    def newest(self, api: str, limit: int, after: str | None) -> tuple[list[SimBatch], bool]:
        """A page of the API's batches, newest first, after the batch ``after``; and has_more."""
        found = [b for b in reversed(self.batches.values()) if b.api == api]
        if after is not None:
            ids = [b.id for b in found]
            found = found[ids.index(after) + 1 :] if after in ids else []
        return found[:limit], len(found) > limit

    def cancel(self, batch: SimBatch) -> None:
        """Keep what is done, cancel the rest; the batch ends a moment later."""
        if batch.ended or batch.cancelled_at is not None:
            return
        batch.cut = len(batch.done(self.clock()))
        batch.cancelled_at = _now()
        if batch.timer is not None:
            batch.timer.cancel()
        wait = min(batch.delay_s * CANCEL_SHARE, CANCEL_MAX_S)
        batch.timer = asyncio.get_running_loop().call_later(wait, self._finish, batch)

    def close(self) -> None:
        for batch in self.batches.values():
            if batch.timer is not None:
                batch.timer.cancel()

    def _fate(self, custom_id: str) -> str:
        self._attempts[custom_id] += 1
        key = f"{custom_id}#{self._attempts[custom_id]}".encode()
        roll = unit(self.provider.config.seed, hash64(key), _FATE_SALT)
        config = self.provider.config
        if roll < config.batch_expire_rate:
            return "expire"
        return "error" if roll < config.batch_expire_rate + config.batch_error_rate else "answer"

    def _finish(self, batch: SimBatch) -> None:
        batch.timer = None
        cut = len(batch.items) if batch.cut is None else batch.cut
        for index, item in enumerate(batch.items):
            if index >= cut:
                item.result = "cancelled"
                self.provider.counts["batch_cancelled"] += 1
            elif item.fate == "expire":
                item.result = "expired"
                self.provider.counts["batch_expired"] += 1
            else:
                self._execute(batch, item)
        batch.ended_at = _now()
        batch.finished.set()

    def _execute(self, batch: SimBatch, item: BatchItem) -> None:
        key = f"{batch.id}/{item.custom_id}".encode()
        seed = self.provider.config.seed
        n = hash64(key)
        request_id = f"{mix(seed, n, 6):016x}{mix(seed, n, 7):016x}"
        incoming = Incoming({}, batch.headers, {}, item.body, request_id, f"{mix(seed, n, 5):016x}")
        fault = "500" if item.fate == "error" else None
        item.status, item.reply = self.provider.answer_item(batch.fmt, incoming, fault)
        item.request_id = request_id
        item.result = "succeeded" if item.status == 200 else "errored"


def incoming(request: web.Request, body: bytes = b"") -> Incoming:
    """A control request as ``Incoming``, for the formats' ``authorize``."""
    return Incoming(dict(request.match_info), request.headers, request.query, body, "0" * 32, "")


def authorized(engine: BatchEngine, fmt: WireFormat, request: web.Request) -> ErrorReply | None:
    return fmt.authorize(engine.provider.config.api_key, incoming(request))


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def error_response(error: ErrorReply) -> web.Response:
    return web.Response(
        status=error.status, body=error.body, headers=error.headers, content_type=error.content_type
    )


def limit_of(request: web.Request, default: int, most: int) -> int:
    """The ``limit`` query parameter, clamped to [1, most]."""
    try:
        value = int(request.query.get("limit", default))
    except ValueError:
        value = default
    return min(max(value, 1), most)


def shuffled(batch: SimBatch, seed: int) -> Iterator[BatchItem]:
    """The items in a stable order unlike the input's: results are joined on custom_id."""
    order = list(batch.items)
    random.Random(f"{seed}:{batch.id}").shuffle(order)
    return iter(order)


def hash64(data: bytes) -> int:
    """A stable 64-bit number for ``data`` (ids and draws)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _now() -> float:
    return time.time()
