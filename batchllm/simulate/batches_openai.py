"""OpenAI's Batch API as the simulated provider speaks it (providers.md §6).

Owns the routes and shapes of ``POST /v1/batches``, ``GET /v1/batches[?limit=&after=]``
(newest first), ``GET /v1/batches/{id}`` and ``POST /v1/batches/{id}/cancel`` (400 once the
batch has ended). The input file (``batches_files``) is checked when the batch is
created; a file with problems makes the batch ``failed`` after ``validating``, with
``errors.data``. The output file holds the 200 lines; the error file the non-2xx replies and the
items never executed (``batch_expired``, ``batch_cancelled``); each is written the first time the
ended batch is asked for, in an order unlike the input's, and stays null when it would be empty.
Keys: Bearer, like Chat. How a batch moves and what each item becomes: ``batches``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from batchllm.simulate.batches import (
    LOST_REPLY,
    VALIDATE_SHARE,
    BatchEngine,
    BatchItem,
    SimBatch,
    authorized,
    error_response,
    hash64,
    json_response,
    limit_of,
    shuffled,
)
from batchllm.simulate.batches_files import DAY_S, SimFiles, read_input
from batchllm.simulate.formats import ErrorReply, WireFormat
from batchllm.simulate.wire import BadRequest, envelope, parse_json

ENDPOINTS = ("/v1/chat/completions", "/v1/responses")
_UNEXECUTED = {
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
    "cancelled": (
        "batch_cancelled",
        "This request was not executed because the batch was cancelled.",
    ),
}


class OpenAIBatchRoutes:
    """``/v1/batches`` (and the files it reads and writes) over a ``BatchEngine``."""

    def __init__(self, engine: BatchEngine, formats: Mapping[str, WireFormat]) -> None:
        self.engine = engine
        self.formats = {path: formats[path] for path in ENDPOINTS}
        self.chat = formats["/v1/chat/completions"]
        self.files = SimFiles(engine, self.chat)

    def add(self, app: web.Application) -> None:
        self.files.add(app)
        app.router.add_post("/v1/batches", self.create)
        app.router.add_get("/v1/batches", self.listing)
        app.router.add_get("/v1/batches/{batch_id}", self.get)
        app.router.add_post("/v1/batches/{batch_id}/cancel", self.cancel)

    async def create(self, request: web.Request) -> web.Response:
        denied = authorized(self.engine, self.chat, request)
        if denied is not None:
            return error_response(denied)
        data = parse_json(await request.read())
        if isinstance(data, BadRequest):
            return error_response(_bad(data.message, None))
        problem = self._check(data)
        if problem is not None:
            return error_response(problem)
        fault = self.engine.create_fault()
        refused = self.engine.refusal(self.chat, fault, request)
        if refused is not None:
            return error_response(refused)
        endpoint = str(data["endpoint"])
        source = self.files.files[str(data["input_file_id"])]
        requests, errors, model = read_input(source.data, endpoint)
        extra = {
            "endpoint": endpoint, "input_file_id": source.id, "metadata": data.get("metadata"),
            "errors": errors, "model": model,
        }  # fmt: skip
        fmt = self.formats[endpoint]
        batch = self.engine.create("openai", fmt, [] if errors else requests, {}, extra)
        if fault in LOST_REPLY:
            return await self.engine.lose_reply(request, str(fault))
        return json_response(self._object(batch))

    async def listing(self, request: web.Request) -> web.Response:
        denied = authorized(self.engine, self.chat, request)
        if denied is not None:
            return error_response(denied)
        limit = limit_of(request, 20, 100)
        page, more = self.engine.newest("openai", limit, request.query.get("after"))
        data = [self._object(batch) for batch in page]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        body = {"object": "list", "data": data, "first_id": first, "last_id": last}
        return json_response({**body, "has_more": more})

    async def get(self, request: web.Request) -> web.Response:
        denied = authorized(self.engine, self.chat, request)
        batch = self.engine.get("openai", request.match_info["batch_id"])
        if denied is not None or batch is None:
            return error_response(denied or _no_batch(request.match_info["batch_id"]))
        return json_response(self._object(batch))

    async def cancel(self, request: web.Request) -> web.Response:
        denied = authorized(self.engine, self.chat, request)
        batch = self.engine.get("openai", request.match_info["batch_id"])
        if denied is not None or batch is None:
            return error_response(denied or _no_batch(request.match_info["batch_id"]))
        if batch.ended:
            status = _status(batch, self.engine.clock())
            return error_response(_bad(f"Cannot cancel a batch with status '{status}'.", None))
        self.engine.cancel(batch)
        return json_response(self._object(batch))

    def _check(self, data: dict[str, Any]) -> ErrorReply | None:
        if str(data.get("input_file_id")) not in self.files.files:
            return _bad(f"No file found with id '{data.get('input_file_id')}'.", "input_file_id")
        if data.get("endpoint") not in self.formats:
            supported = ", ".join(ENDPOINTS)
            return _bad(f"Invalid endpoint: use one of {supported}.", "endpoint")
        if data.get("completion_window") != "24h":
            return _bad("Invalid completion_window: only '24h' is supported.", "completion_window")
        metadata = data.get("metadata")
        if metadata is not None and not _is_metadata(metadata):
            return _bad("Invalid metadata: at most 16 string keys with string values.", "metadata")
        return None

    def _object(self, batch: SimBatch) -> dict[str, Any]:
        now = self.engine.clock()
        status = _status(batch, now)
        output, errors = self._result_files(batch) if batch.ended else (None, None)
        created = int(batch.created_at)
        times = _times(batch, status, created)
        problems = batch.extra["errors"]
        return {
            "id": batch.id, "object": "batch", "endpoint": batch.extra["endpoint"],
            "model": batch.extra["model"],
            "errors": {"object": "list", "data": problems} if problems else None,
            "input_file_id": batch.extra["input_file_id"], "completion_window": "24h",
            "status": status, "output_file_id": output, "error_file_id": errors,
            "created_at": created, "expires_at": created + DAY_S, **times,
            "request_counts": _counts(batch, now),
            "usage": _usage(batch.items) if batch.ended else None,
            "metadata": batch.extra["metadata"],
        }  # fmt: skip

    def _result_files(self, batch: SimBatch) -> tuple[str | None, str | None]:
        if "output_file_id" not in batch.extra:
            ok, failed = _result_lines(batch, self.engine.provider.config.seed)
            for key, lines, suffix in (("output", ok, "output"), ("error", failed, "error")):
                name = f"{batch.id}_{suffix}.jsonl"
                stored = self.files.store(b"".join(lines), name, "batch_output") if lines else None
                batch.extra[f"{key}_file_id"] = stored.id if stored else None
        return batch.extra["output_file_id"], batch.extra["error_file_id"]


def _status(batch: SimBatch, now: float) -> str:
    if batch.extra["errors"]:
        return "failed" if batch.ended else "validating"
    if batch.ended:
        if batch.cancelled_at is not None:
            return "cancelled"
        return "expired" if any(i.result == "expired" for i in batch.items) else "completed"
    if batch.cancelling:
        return "cancelling"
    return "validating" if batch.validating(now) else "in_progress"


def _times(batch: SimBatch, status: str, created: int) -> dict[str, int | None]:
    ended = int(batch.ended_at) if batch.ended_at is not None else None
    started = created if batch.extra["errors"] else created + int(batch.delay_s * VALIDATE_SHARE)
    return {
        "in_progress_at": started if status not in ("validating", "failed") else None,
        "finalizing_at": ended if status in ("completed", "expired") else None,
        "completed_at": ended if status == "completed" else None,
        "failed_at": ended if status == "failed" else None,
        "expired_at": ended if status == "expired" else None,
        "cancelling_at": int(batch.cancelled_at) if batch.cancelled_at is not None else None,
        "cancelled_at": ended if status == "cancelled" else None,
    }


def _counts(batch: SimBatch, now: float) -> dict[str, int]:
    """Live while in progress (items done by now, by fate); exact once ended."""
    if batch.ended:
        results = batch.results()
        return {
            "total": len(batch.items),
            "completed": results["succeeded"],
            "failed": results["errored"] + results["expired"],
        }
    done = batch.done(now)
    completed = sum(1 for item in done if item.fate == "answer")
    failed = sum(1 for item in done if item.fate == "error")
    return {"total": len(batch.items), "completed": completed, "failed": failed}


def _usage(items: list[BatchItem]) -> dict[str, Any]:
    found = {"input_tokens": 0, "output_tokens": 0}
    for item in items:
        if item.status == 200:
            usage = orjson.loads(item.reply).get("usage") or {}
            found["input_tokens"] += int(usage.get("prompt_tokens", usage.get("input_tokens", 0)))
            found["output_tokens"] += int(
                usage.get("completion_tokens", usage.get("output_tokens", 0))
            )
    return {
        **found,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": found["input_tokens"] + found["output_tokens"],
    }


def _result_lines(batch: SimBatch, seed: int) -> tuple[list[bytes], list[bytes]]:
    ok: list[bytes] = []
    failed: list[bytes] = []
    for item in shuffled(batch, seed):
        line: dict[str, Any] = {
            "id": f"batch_req_{hash64(f'{batch.id}/{item.custom_id}'.encode()):016x}",
            "custom_id": item.custom_id,
            "response": None,
            "error": None,
        }
        if item.result in _UNEXECUTED:
            code, message = _UNEXECUTED[item.result]
            line["error"] = {"code": code, "message": message}
        elif item.result in ("succeeded", "errored"):
            line["response"] = {"status_code": item.status, "request_id": f"req_{item.request_id}",
                                "body": _body(item.reply)}  # fmt: skip
        else:
            continue
        (ok if item.status == 200 else failed).append(orjson.dumps(line) + b"\n")
    return ok, failed


def _body(reply: bytes) -> Any:
    try:
        return orjson.loads(reply)
    except orjson.JSONDecodeError:
        text = reply.decode("utf-8", errors="replace")[:200]
        return {"error": {"message": text, "type": "server_error", "param": None, "code": None}}


def _is_metadata(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and len(value) <= 16
        and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    )


def _bad(message: str, param: str | None) -> ErrorReply:
    return ErrorReply(400, envelope(message, "invalid_request_error", None, param))


def _no_batch(batch_id: str) -> ErrorReply:
    return _not_found(f"No batch found with id '{batch_id}'.")


def _not_found(message: str) -> ErrorReply:
    return ErrorReply(404, envelope(message, "invalid_request_error", None))
