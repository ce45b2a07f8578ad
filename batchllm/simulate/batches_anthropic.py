"""Anthropic Message Batches as the simulated provider speaks them (providers.md §9).

Owns the routes and shapes: ``POST /v1/messages/batches`` (``{"requests": [{custom_id,
params}]}``; the list and each custom_id are checked at once, each ``params`` only when the item
is processed, so a bad one becomes an ``errored`` result), ``GET /v1/messages/batches
[?limit=&after_id=]`` (newest first), ``GET /v1/messages/batches/{id}``, ``POST .../{id}/cancel``
and ``GET .../{id}/results``. The MessageBatch keeps every request in ``processing`` until the
whole batch ends, has RFC 3339 timestamps and a ``results_url`` once ended. Result lines:
``succeeded`` with the message (its usage says ``service_tier: "batch"``), ``errored`` with the
full error envelope, ``canceled``, ``expired``. Keys: ``x-api-key``, like Messages. How a batch
moves and what each item becomes: ``batches``.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import orjson
from aiohttp import web

from batchllm.simulate.anthropic import envelope
from batchllm.simulate.batches import (
    LOST_REPLY,
    BatchEngine,
    SimBatch,
    authorized,
    error_response,
    json_response,
    limit_of,
    shuffled,
)
from batchllm.simulate.formats import ErrorReply, WireFormat

PATH = "/v1/messages/batches"
MAX_REQUESTS = 100_000
DAY_S = 86_400.0
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_RESULT_TYPES = {"cancelled": "canceled", "expired": "expired"}


class AnthropicBatchRoutes:
    """``/v1/messages/batches`` over a ``BatchEngine``; items are Messages requests."""

    def __init__(self, engine: BatchEngine, fmt: WireFormat) -> None:
        self.engine = engine
        self.fmt = fmt

    def add(self, app: web.Application) -> None:
        app.router.add_post(PATH, self.create)
        app.router.add_get(PATH, self.listing)
        app.router.add_get(PATH + "/{batch_id}", self.get)
        app.router.add_post(PATH + "/{batch_id}/cancel", self.cancel)
        app.router.add_get(PATH + "/{batch_id}/results", self.results)

    async def create(self, request: web.Request) -> web.Response:
        denied = authorized(self.engine, self.fmt, request)
        if denied is not None:
            return error_response(denied)
        version = request.headers.get("anthropic-version")
        if not version:
            return error_response(_bad("anthropic-version: header is required"))
        try:
            data = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return error_response(_bad("There was an error parsing the body of your request"))
        requests = data.get("requests") if isinstance(data, dict) else None
        problem = _check(requests)
        if problem is not None:
            return error_response(_bad(problem))
        assert isinstance(requests, list)
        fault = self.engine.create_fault()
        refused = self.engine.refusal(self.fmt, fault, request)
        if refused is not None:
            return error_response(refused)
        items = [(r["custom_id"], orjson.dumps(r["params"])) for r in requests]
        batch = self.engine.create("anthropic", self.fmt, items, {"anthropic-version": version})
        if fault in LOST_REPLY:
            return await self.engine.lose_reply(request, str(fault))
        return json_response(_object(batch, _origin(request)))

    async def listing(self, request: web.Request) -> web.Response:
        denied = authorized(self.engine, self.fmt, request)
        if denied is not None:
            return error_response(denied)
        limit = limit_of(request, 20, 1000)
        page, more = self.engine.newest("anthropic", limit, request.query.get("after_id"))
        data = [_object(batch, _origin(request)) for batch in page]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return json_response({"data": data, "has_more": more, "first_id": first, "last_id": last})

    async def get(self, request: web.Request) -> web.Response:
        batch, denied = self._batch(request)
        if batch is None:
            return error_response(denied or _no_batch(request))
        return json_response(_object(batch, _origin(request)))

    async def cancel(self, request: web.Request) -> web.Response:
        batch, denied = self._batch(request)
        if batch is None:
            return error_response(denied or _no_batch(request))
        self.engine.cancel(batch)
        return json_response(_object(batch, _origin(request)))

    async def results(self, request: web.Request) -> web.Response:
        batch, denied = self._batch(request)
        if batch is None:
            return error_response(denied or _no_batch(request))
        if not batch.ended:
            message = f"Batch {batch.id} is still processing; results are available once ended."
            return error_response(_bad(message))
        seed = self.engine.provider.config.seed
        lines = [orjson.dumps(_result(item.custom_id, item.result, item.reply)) + b"\n"
                 for item in shuffled(batch, seed)]  # fmt: skip
        return web.Response(body=b"".join(lines), content_type="application/x-jsonl")

    def _batch(self, request: web.Request) -> tuple[SimBatch | None, ErrorReply | None]:
        denied = authorized(self.engine, self.fmt, request)
        if denied is not None:
            return None, denied
        return self.engine.get("anthropic", request.match_info["batch_id"]), None


def _object(batch: SimBatch, origin: str) -> dict[str, Any]:
    ended = batch.ended_at
    status = "ended" if batch.ended else "canceling" if batch.cancelling else "in_progress"
    url = f"{origin}{PATH}/{batch.id}/results" if batch.ended else None
    return {
        "id": batch.id, "type": "message_batch", "processing_status": status,
        "request_counts": _counts(batch), "created_at": _rfc3339(batch.created_at),
        "expires_at": _rfc3339(batch.created_at + DAY_S),
        "ended_at": _rfc3339(ended) if ended is not None else None,
        "cancel_initiated_at": _rfc3339(batch.cancelled_at) if batch.cancelled_at else None,
        "archived_at": None, "results_url": url,
    }  # fmt: skip


def _counts(batch: SimBatch) -> dict[str, int]:
    """Every request is ``processing`` until the whole batch ends (§9)."""
    if not batch.ended:
        counts = dict.fromkeys(("succeeded", "errored", "canceled", "expired"), 0)
        return {"processing": len(batch.items), **counts}
    found = batch.results()
    return {
        "processing": 0, "succeeded": found["succeeded"], "errored": found["errored"],
        "canceled": found["cancelled"], "expired": found["expired"],
    }  # fmt: skip


def _result(custom_id: str, result: str, reply: bytes) -> dict[str, Any]:
    if result == "succeeded":
        message = orjson.loads(reply)
        message["usage"]["service_tier"] = "batch"
        return {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}
    if result == "errored":
        return {"custom_id": custom_id, "result": {"type": "errored", "error": _error(reply)}}
    return {"custom_id": custom_id, "result": {"type": _RESULT_TYPES[result]}}


def _error(reply: bytes) -> Any:
    try:
        return orjson.loads(reply)
    except orjson.JSONDecodeError:
        return orjson.loads(envelope("api_error", "Internal server error", uuid.uuid4().hex))


def _check(requests: Any) -> str | None:
    """The first problem Anthropic reports at create time, or None."""
    if not isinstance(requests, list) or not requests:
        return "requests: List should have at least 1 item after validation"
    if len(requests) > MAX_REQUESTS:
        return f"requests: List should have at most {MAX_REQUESTS} items after validation"
    seen: set[str] = set()
    for i, item in enumerate(requests):
        custom_id = item.get("custom_id") if isinstance(item, dict) else None
        if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
            return f"requests.{i}.custom_id: String should match pattern '{_CUSTOM_ID.pattern}'"
        if custom_id in seen:
            return f"requests.{i}.custom_id: duplicate custom_id '{custom_id}' in this batch"
        if not isinstance(item.get("params"), dict):
            return f"requests.{i}.params: Field required"
        seen.add(custom_id)
    return None


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _rfc3339(epoch_s: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch_s, dt.UTC).isoformat(timespec="microseconds")
    return moment.replace("+00:00", "Z")


def _bad(message: str) -> ErrorReply:
    return ErrorReply(400, envelope("invalid_request_error", message, uuid.uuid4().hex))


def _no_batch(request: web.Request) -> ErrorReply:
    message = f"No batch found with id '{request.match_info['batch_id']}'"
    return ErrorReply(404, envelope("not_found_error", message, uuid.uuid4().hex))
