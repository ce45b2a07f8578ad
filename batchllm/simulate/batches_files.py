"""OpenAI's Files API as the simulated provider speaks it, for the Batch API (providers.md §6).

Owns the files in memory and their routes: ``POST /v1/files`` (multipart: ``purpose`` and
``file``), ``GET /v1/files/{id}`` (the File object) and ``GET /v1/files/{id}/content``; and
``read_input``, which checks a batch input file the way batch validation does: a line that is
not JSON, names another url or method than the batch, has no object body or repeats a
custom_id is a problem ``{code, message, param, line}``, and so is an empty or oversized file.
The batches themselves are ``batches_openai``'s.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from batchllm.simulate.batches import BatchEngine, authorized, error_response, json_response
from batchllm.simulate.formats import ErrorReply, WireFormat
from batchllm.simulate.wire import envelope

MAX_REQUESTS = 50_000
DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class SimFile:
    id: str
    data: bytes
    filename: str
    purpose: str
    created_at: int

    def object(self) -> dict[str, Any]:
        return {
            "id": self.id, "object": "file", "bytes": len(self.data),
            "created_at": self.created_at, "expires_at": self.created_at + 30 * DAY_S,
            "filename": self.filename, "purpose": self.purpose, "status": "processed",
            "status_details": None,
        }  # fmt: skip


class SimFiles:
    """The files of one simulated provider: batch input uploads and batch result files."""

    def __init__(self, engine: BatchEngine, fmt: WireFormat) -> None:
        self.engine = engine
        self.chat = fmt
        self.files: dict[str, SimFile] = {}

    def add(self, app: web.Application) -> None:
        app.router.add_post("/v1/files", self.upload)
        app.router.add_get("/v1/files/{file_id}", self.file)
        app.router.add_get("/v1/files/{file_id}/content", self.content)

    async def upload(self, request: web.Request) -> web.Response:
        denied = authorized(self.engine, self.chat, request)
        if denied is not None:
            return error_response(denied)
        form = await _form(request)
        if "file" not in form or "purpose" not in form:
            missing = "purpose" if "file" in form else "file"
            return error_response(_bad(f"Missing required parameter: '{missing}'.", missing))
        filename, data = form["file"]
        purpose = form["purpose"][1].decode("utf-8", errors="replace")
        return json_response(self.store(data, filename or "upload.jsonl", purpose).object())

    async def file(self, request: web.Request) -> web.Response:
        denied = authorized(self.engine, self.chat, request)
        found = self.files.get(request.match_info["file_id"])
        if denied is not None or found is None:
            return error_response(denied or _no_file(request.match_info["file_id"]))
        return json_response(found.object())

    async def content(self, request: web.Request) -> web.Response:
        denied = authorized(self.engine, self.chat, request)
        found = self.files.get(request.match_info["file_id"])
        if denied is not None or found is None:
            return error_response(denied or _no_file(request.match_info["file_id"]))
        return web.Response(body=found.data, content_type="application/octet-stream")

    def store(self, data: bytes, filename: str, purpose: str) -> SimFile:
        found = SimFile(f"file-{uuid.uuid4().hex[:24]}", data, filename, purpose, int(time.time()))
        self.files[found.id] = found
        return found


def read_input(data: bytes, endpoint: str) -> tuple[list[tuple[str, bytes]], list[Any], Any]:
    """The (custom_id, body) requests of an input file, its problems, and the first model."""
    requests: list[tuple[str, bytes]] = []
    problems: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            item = None
        problem = _line_problem(item, endpoint, seen)
        if problem is not None:
            problems.append(_problem(*problem, number))
            continue
        seen.add(item["custom_id"])
        requests.append((item["custom_id"], orjson.dumps(item["body"])))
    if not requests and not problems:
        problems.append(_problem("empty_file", "The input file is empty."))
    if len(requests) > MAX_REQUESTS:
        message = f"The batch has {len(requests):,} requests; the limit is {MAX_REQUESTS:,}."
        problems.append(_problem("too_many_requests", message))
    model = requests[0][1] if requests else None
    return requests, problems, orjson.loads(model).get("model") if model else None


def _problem(code: str, message: str, line: int | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": None, "line": line}


def _line_problem(item: Any, endpoint: str, seen: set[str]) -> tuple[str, str] | None:
    if not isinstance(item, dict):
        return "invalid_json_line", "This line is not parseable as valid JSON."
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return "missing_required_parameter", "Missing required parameter: 'custom_id'."
    if custom_id in seen:
        return "duplicate_custom_id", f"The custom_id '{custom_id}' is not unique in this file."
    if item.get("method") != "POST":
        return "invalid_method", "Only the POST method is supported."
    if item.get("url") != endpoint:
        url = item.get("url")
        return "mismatched_url", f"The url '{url}' does not match the batch endpoint '{endpoint}'."
    if not isinstance(item.get("body"), dict):
        return "invalid_body", "The body must be a JSON object."
    return None


async def _form(request: web.Request) -> dict[str, tuple[str | None, bytes]]:
    """The parts of a multipart form by name: (filename, bytes); empty when not multipart."""
    if not request.content_type.startswith("multipart/"):
        return {}
    reader = await request.multipart()
    found: dict[str, tuple[str | None, bytes]] = {}
    while (part := await reader.next()) is not None:
        if isinstance(part, BodyPartReader) and part.name:
            found[part.name] = (part.filename, bytes(await part.read()))
    return found


def _bad(message: str, param: str | None) -> ErrorReply:
    return ErrorReply(400, envelope(message, "invalid_request_error", None, param))


def _no_file(file_id: str) -> ErrorReply:
    return ErrorReply(
        404, envelope(f"No such File object: {file_id}", "invalid_request_error", None)
    )
