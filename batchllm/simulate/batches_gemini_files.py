"""Gemini's Files API as the simulated provider speaks it, for Batch Mode's file input and output.

Owns the uploaded files (in memory) and two routes: ``POST /upload/v1beta/files`` (a
``multipart/related`` body: the File's metadata as JSON, then its content; the answer is
``{"file": File}`` with its ``name`` ``files/{id}``), and ``GET
/download/v1beta/files/{id}:download?alt=media``, which serves an uploaded file, or the responses
file of a finished batch that was given a file (``files/responses-{batch id}``: one ``{"key",
"response"}`` or ``{"key", "error"}`` line per request it processed). ``items`` reads an input
file's ``{"key", "request"}`` lines for ``batches_gemini``, which owns the batches themselves.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from batchllm.simulate.batches import BatchEngine, authorized, error_response, json_response
from batchllm.simulate.formats import ErrorReply, WireFormat
from batchllm.simulate.gemini import envelope

#: the name prefix of a batch's responses file
RESPONSES = "files/responses-"


class GeminiFiles:
    """The files of one simulated Gemini: uploaded batch inputs, and batches' responses."""

    def __init__(self, engine: BatchEngine, fmt: WireFormat) -> None:
        self.engine = engine
        self.fmt = fmt
        self.files: dict[str, bytes] = {}

    def add(self, app: web.Application) -> None:
        app.router.add_post("/upload/v1beta/files", self.upload)
        app.router.add_get("/download/v1beta/files/{file_id}:download", self.download)

    async def upload(self, request: web.Request) -> web.Response:
        denied = authorized(self.engine, self.fmt, request)
        if denied is not None:
            return error_response(denied)
        try:
            meta, data = await _parts(request)
        except (ValueError, AssertionError, orjson.JSONDecodeError) as exc:
            return error_response(_bad(f"Upload has an unreadable multipart body: {exc}"))
        name = f"files/{uuid.uuid4().hex[:12]}"
        self.files[name] = data
        now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        file = {
            "name": name, "displayName": meta.get("displayName", ""),
            "mimeType": meta.get("mimeType", "application/octet-stream"),
            "sizeBytes": str(len(data)), "createTime": now, "updateTime": now,
            "uri": f"{request.url.origin()}/v1beta/{name}", "state": "ACTIVE",
            "source": "UPLOADED",
        }  # fmt: skip
        return json_response({"file": file})

    async def download(self, request: web.Request) -> web.Response:
        denied = authorized(self.engine, self.fmt, request)
        if denied is not None:
            return error_response(denied)
        name = "files/" + request.match_info["file_id"]
        data = self._responses(name) if name.startswith(RESPONSES) else self.files.get(name)
        if data is None:
            return error_response(ErrorReply(404, envelope(404, "NOT_FOUND", f"{name} not found")))
        return web.Response(body=data, content_type="application/jsonl")

    def items(self, name: Any) -> tuple[list[tuple[str, bytes]], str | None]:
        """(key, request body) of each line of an uploaded input file, or the problem."""
        data = self.files.get(name) if isinstance(name, str) else None
        if data is None:
            return [], f"* BatchGenerateContentRequest.batch.input_config: {name} not found"
        items, seen = [], set()
        for i, line in enumerate(data.splitlines()):
            if not line.strip():
                continue
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError:
                return [], f"* line {i + 1}: not JSON"
            key = item.get("key") if isinstance(item, dict) else None
            body = item.get("request") if isinstance(item, dict) else None
            if not isinstance(key, str) or not key or key in seen or not isinstance(body, dict):
                return [], f"* line {i + 1}: a request and a unique key are required"
            seen.add(key)
            items.append((key, orjson.dumps(body)))
        return (items, None) if items else ([], f"* {name} holds no request")

    def _responses(self, name: str) -> bytes | None:
        batch = self.engine.get("gemini", name.removeprefix(RESPONSES))
        if batch is None or not batch.ended:
            return None
        lines = []
        for item in batch.items:
            if item.result not in ("succeeded", "errored"):
                continue
            reply = orjson.loads(item.reply)
            kind = "response" if item.result == "succeeded" else "error"
            value = reply if kind == "response" else reply.get("error", reply)
            lines.append(orjson.dumps({"key": item.custom_id, kind: value}))
        return b"\n".join(lines) + b"\n" if lines else b""


async def _parts(request: web.Request) -> tuple[dict[str, Any], bytes]:
    """The File metadata and the content of a ``multipart/related`` upload."""
    reader = await request.multipart()
    found: list[bytes] = []
    while (part := await reader.next()) is not None:
        assert isinstance(part, BodyPartReader), "nested multipart"
        found.append(bytes(await part.read()))
    if len(found) != 2:
        raise ValueError(f"{len(found)} parts, expected metadata and content")
    meta = orjson.loads(found[0])
    file = meta.get("file") if isinstance(meta, dict) else None
    return (file if isinstance(file, dict) else {}), found[1]


def _bad(message: str) -> ErrorReply:
    return ErrorReply(400, envelope(400, "INVALID_ARGUMENT", message))
