"""Gemini Batch Mode as the simulated provider speaks it: inline requests, inline results; or an
uploaded input file (``inputConfig.fileName``) and a responses file.

Owns the routes and shapes: ``POST /v1beta/models/{model}:batchGenerateContent`` (``{"batch":
{"displayName", "inputConfig": {"requests": {"requests": [{"request", "metadata": {"key"}}]}}}}``;
keys are checked at once, each request only when it is processed), ``GET /v1beta/batches
[?pageSize=]`` (``operations``, newest first), ``GET /v1beta/batches/{id}`` and ``POST
/v1beta/batches/{id}:cancel``. A batch is a long-running operation ``batches/{id}`` whose
``metadata`` is the batch (``state`` ``BATCH_STATE_PENDING`` / ``RUNNING`` / ``SUCCEEDED`` /
``CANCELLED`` / ``EXPIRED``, ``batchStats`` in int64 strings) and, once ``done``, whose
``response.inlinedResponses`` holds an answer or an error for each request it processed; a
cancelled batch answers those it finished, an expired one none. A batch given a file answers in
a file instead (``response.responsesFile``; the files are ``batches_gemini_files``'s). Keys:
``x-goog-api-key``, like ``generateContent``. How a batch moves and what each item becomes:
``batches``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from aiohttp import web

from batchllm.simulate.batches import (
    LOST_REPLY,
    BatchEngine,
    SimBatch,
    authorized,
    error_response,
    json_response,
    limit_of,
)
from batchllm.simulate.batches_gemini_files import RESPONSES, GeminiFiles
from batchllm.simulate.formats import ErrorReply, WireFormat
from batchllm.simulate.gemini import envelope

ROOT = "/v1beta"
#: the online route whose wire format the batch items speak
ONLINE_PATH = ROOT + "/models/{model}:generateContent"
_BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
_OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"


class GeminiBatchRoutes:
    """Gemini Batch Mode over a ``BatchEngine``; items are ``generateContent`` requests."""

    def __init__(self, engine: BatchEngine, fmt: WireFormat) -> None:
        self.engine = engine
        self.fmt = fmt
        self.files = GeminiFiles(engine, fmt)

    def add(self, app: web.Application) -> None:
        self.files.add(app)
        app.router.add_post(ROOT + "/models/{model}:batchGenerateContent", self.create)
        app.router.add_get(ROOT + "/batches", self.listing)
        app.router.add_post(ROOT + "/batches/{batch_id}:cancel", self.cancel)
        app.router.add_get(ROOT + "/batches/{batch_id}", self.get)

    async def create(self, request: web.Request) -> web.Response:
        denied = authorized(self.engine, self.fmt, request)
        if denied is not None:
            return error_response(denied)
        try:
            data = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return error_response(_bad("Invalid JSON payload received."))
        batch = data.get("batch") if isinstance(data, dict) else None
        file = ((batch or {}).get("inputConfig") or {}).get("fileName") if batch else None
        items, problem = self.files.items(file) if file else _requests(batch)
        if problem is not None:
            return error_response(_bad(problem))
        fault = self.engine.create_fault()
        refused = self.engine.refusal(self.fmt, fault, request)
        if refused is not None:
            return error_response(refused)
        assert isinstance(batch, dict)
        extra = {"model": request.match_info["model"], "name": batch.get("displayName", ""),
                 "file": bool(file)}  # fmt: skip
        made = self.engine.create("gemini", self.fmt, items, {}, extra)
        if fault in LOST_REPLY:
            return await self.engine.lose_reply(request, str(fault))
        return json_response(_operation(made, self.engine.clock()))

    async def listing(self, request: web.Request) -> web.Response:
        denied = authorized(self.engine, self.fmt, request)
        if denied is not None:
            return error_response(denied)
        page, _ = self.engine.newest("gemini", limit_of(request, 50, 1000), None)
        now = self.engine.clock()
        return json_response({"operations": [_operation(b, now, full=False) for b in page]})

    async def get(self, request: web.Request) -> web.Response:
        batch, denied = self._batch(request)
        if batch is None:
            return error_response(denied or _missing(request))
        return json_response(_operation(batch, self.engine.clock()))

    async def cancel(self, request: web.Request) -> web.Response:
        batch, denied = self._batch(request)
        if batch is None:
            return error_response(denied or _missing(request))
        if batch.ended:
            return error_response(_bad(f"batches/{batch.id} has already ended"))
        self.engine.cancel(batch)
        return json_response({})

    def _batch(self, request: web.Request) -> tuple[SimBatch | None, ErrorReply | None]:
        denied = authorized(self.engine, self.fmt, request)
        if denied is not None:
            return None, denied
        return self.engine.get("gemini", request.match_info["batch_id"]), None


def _requests(batch: Any) -> tuple[list[tuple[str, bytes]], str | None]:
    """(key, request body) of each inline request, or the problem Gemini reports."""
    config = batch.get("inputConfig") if isinstance(batch, dict) else None
    inline = (config or {}).get("requests") if isinstance(config, dict) else None
    found = (inline or {}).get("requests") if isinstance(inline, dict) else None
    if not isinstance(found, list) or not found:
        return [], "* BatchGenerateContentRequest.batch.input_config: requests are required"
    items, seen = [], set()
    for i, item in enumerate(found):
        key = ((item.get("metadata") or {}).get("key")) if isinstance(item, dict) else None
        body = item.get("request") if isinstance(item, dict) else None
        if not isinstance(key, str) or not key or key in seen or not isinstance(body, dict):
            return [], f"* requests[{i}]: a request and a unique metadata.key are required"
        seen.add(key)
        # the batch names the model; the online route has it in its path, not in the body
        items.append((key, orjson.dumps({k: v for k, v in body.items() if k != "model"})))
    return items, None


def _operation(batch: SimBatch, now: float, *, full: bool = True) -> dict[str, Any]:
    name = f"batches/{batch.id}"
    results = batch.results()
    done_now = len(batch.done(now))
    meta: dict[str, Any] = {
        "@type": _BATCH_TYPE, "name": name, "model": f"models/{batch.extra.get('model')}",
        "displayName": batch.extra.get("name", ""), "state": f"BATCH_STATE_{_state(batch, now)}",
        "createTime": _rfc3339(batch.created_at),
        "batchStats": {
            "requestCount": str(len(batch.items)),
            "successfulRequestCount": str(results["succeeded"]),
            "failedRequestCount": str(results["errored"]),
            "pendingRequestCount": str(0 if batch.ended else len(batch.items) - done_now),
        },
    }  # fmt: skip
    operation: dict[str, Any] = {"name": name, "metadata": meta, "done": batch.ended}
    if batch.ended and full and batch.extra.get("file"):
        operation["response"] = {"@type": _OUTPUT_TYPE, "responsesFile": RESPONSES + batch.id}
    elif batch.ended and full:
        answered = [item for item in batch.items if item.result in ("succeeded", "errored")]
        operation["response"] = {
            "@type": _OUTPUT_TYPE,
            "inlinedResponses": {"inlinedResponses": [_inlined(item) for item in answered]},
        }
    return operation


def _inlined(item: Any) -> dict[str, Any]:
    metadata = {"key": item.custom_id}
    reply = orjson.loads(item.reply)
    if item.result == "succeeded":
        return {"response": reply, "metadata": metadata}
    return {"error": reply.get("error", reply), "metadata": metadata}


def _state(batch: SimBatch, now: float) -> str:
    if not batch.ended:
        return "PENDING" if batch.validating(now) else "RUNNING"
    results = batch.results()
    if batch.cancelled_at is not None:
        return "CANCELLED"
    return "EXPIRED" if results["expired"] == len(batch.items) else "SUCCEEDED"


def _rfc3339(epoch_s: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch_s, dt.UTC).isoformat(timespec="microseconds")
    return moment.replace("+00:00", "Z")


def _bad(message: str) -> ErrorReply:
    return ErrorReply(400, envelope(400, "INVALID_ARGUMENT", message))


def _missing(request: web.Request) -> ErrorReply:
    message = f"Batch batches/{request.match_info['batch_id']} not found."
    return ErrorReply(404, envelope(404, "NOT_FOUND", message))
