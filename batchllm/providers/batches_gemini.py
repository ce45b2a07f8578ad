"""Gemini Batch Mode, sans-I/O: ``models/{model}:batchGenerateContent`` with inline requests or
an uploaded JSON Lines file.

Owns the ``HttpCall``s of Gemini's batch API and the parsing of its replies into the same
``BatchState`` and ``ItemResult`` values as the OpenAI and Anthropic batch APIs
(``batchllm.providers.batches``). A batch is a long-running operation named ``batches/{id}``;
its ``displayName`` is the book's tag, so a batch created but not booked is found again by it.
Each request travels as ``{"request": GenerateContentRequest, "metadata": {"key": custom id}}``
in the create call while the batch's requests take at most ``INLINE_MAX_BYTES`` (the create call
stays under Gemini's 20 MB); a larger batch is uploaded first as a JSON Lines file of
``{"key", "request"}`` lines (Files API, ``POST /upload/v1beta/files?uploadType=multipart``: the
file's metadata, then its content, in one ``multipart/related`` body) and referenced by name
(``inputConfig.fileName``). The results come back inline in the finished operation
(``response.inlinedResponses``), or as a JSON Lines file (``responsesFile``) downloaded from
``/download/v1beta/{file}:download?alt=media``. Items the operation does not answer (a cancelled
or expired batch) are missing, and go out again.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import orjson

from batchllm.providers import gemini
from batchllm.providers.base import HttpCall
from batchllm.providers.batches import BatchState, ItemResult, _json, _timestamp

_ENDED = {"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"}
#: the prefix of an inline result reference (the operation itself holds the results)
INLINE = "inline:"
#: the most a batch's requests may take to travel inline; a larger batch is uploaded as a file
INLINE_MAX_BYTES = 19 * 1024 * 1024
INLINE_ENV = "BATCHLLM_GEMINI_INLINE_BYTES"


class GeminiBatches:
    """Gemini Batch Mode over the Developer API (``x-goog-api-key``)."""

    name = "gemini"
    max_requests = 50_000
    max_bytes = 190 * 1024 * 1024  # an input file (Gemini takes up to 2 GB; held in memory)

    def __init__(
        self, base_url: str, api_key: str | None, inline_max_bytes: int = INLINE_MAX_BYTES
    ) -> None:
        self.base = base_url.rstrip("/")
        self.key = api_key
        self.auth = {"x-goog-api-key": api_key} if api_key else {}
        self.inline_max_bytes = inline_max_bytes

    def entry(self, custom_id: str, call: HttpCall) -> bytes:
        """The request with its model (``models/{name}``, taken back out at create time)."""
        model = call.url.rsplit("/models/", 1)[1].rsplit(":", 1)[0]
        request = orjson.loads(call.body) | {"model": f"models/{model}"}
        return orjson.dumps({"request": request, "metadata": {"key": custom_id}})

    def upload(self, entries: Sequence[bytes], tag: str) -> HttpCall | None:
        """None when the requests travel inline; else the upload of their JSON Lines file."""
        if sum(len(entry) + 1 for entry in entries) <= self.inline_max_bytes:
            return None
        boundary = "batchllm-" + uuid.uuid4().hex
        meta = orjson.dumps({"file": {"displayName": tag, "mimeType": "application/jsonl"}})
        lines = b"\n".join(_file_line(entry) for entry in entries) + b"\n"
        body = b"".join([
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode(),
            meta, f"\r\n--{boundary}\r\nContent-Type: application/jsonl\r\n\r\n".encode(),
            lines, f"\r\n--{boundary}--\r\n".encode(),
        ])  # fmt: skip
        headers = {**self.auth, "X-Goog-Upload-Protocol": "multipart",
                   "Content-Type": f"multipart/related; boundary={boundary}"}  # fmt: skip
        root = self.base.rsplit("/v1beta", 1)[0]
        return HttpCall("POST", f"{root}/upload/v1beta/files?uploadType=multipart", headers, body)

    def parse_uploaded(self, status: int, body: bytes) -> str:
        """The uploaded file's name (``files/{id}``)."""
        data = _json(self.key, status, body)
        return str((data.get("file") or data)["name"])

    def create(self, entries: Sequence[bytes], file_id: str | None, tag: str) -> HttpCall:
        first = orjson.loads(entries[0])
        model = quote(str(first["request"]["model"]).removeprefix("models/"), safe="")
        headers = {**self.auth, "Content-Type": "application/json"}
        url = f"{self.base}/models/{model}:batchGenerateContent"
        if file_id is not None:
            batch = {"displayName": tag, "inputConfig": {"fileName": file_id}}
            return HttpCall("POST", url, headers, orjson.dumps({"batch": batch}))
        batch = {"displayName": tag, "inputConfig": {"requests": {"requests": []}}}
        body = orjson.dumps({"batch": batch}).replace(
            b'"requests":[]', b'"requests":[' + b",".join(entries) + b"]"
        )
        return HttpCall("POST", url, headers, body)

    def parse_created(self, status: int, body: bytes) -> str:
        return _batch_id(_json(self.key, status, body))

    def get(self, batch_id: str) -> HttpCall:
        return HttpCall("GET", f"{self.base}/batches/{batch_id}", self.auth, b"")

    def recent(self) -> HttpCall:
        return HttpCall("GET", f"{self.base}/batches?pageSize=100", self.auth, b"")

    def cancel(self, batch_id: str) -> HttpCall:
        return HttpCall("POST", f"{self.base}/batches/{batch_id}:cancel", self.auth, b"")

    def parse_batch(self, status: int, body: bytes) -> BatchState:
        return _state(_json(self.key, status, body))

    def parse_list(self, status: int, body: bytes) -> list[BatchState]:
        return [_state(op) for op in _json(self.key, status, body).get("operations") or []]

    def results(self, state: BatchState) -> list[HttpCall]:
        calls = []
        for ref in state.result_refs:
            if ref.startswith(INLINE):
                calls.append(self.get(ref.removeprefix(INLINE)))
            else:
                root = self.base.rsplit("/v1beta", 1)[0]
                url = f"{root}/download/v1beta/{ref}:download?alt=media"
                calls.append(HttpCall("GET", url, self.auth, b""))
        return calls

    def parse_results(self, body: bytes) -> list[ItemResult]:
        """The items of a finished operation (inline) or of a responses file (JSON Lines)."""
        data = orjson.loads(body) if body.lstrip().startswith(b"{") and b"\n{" not in body else None
        if (
            isinstance(data, dict)
            and "key" not in data
            and ("metadata" in data or "response" in data)
        ):
            inlined = ((data.get("response") or {}).get("inlinedResponses") or {}).get(
                "inlinedResponses"
            ) or []
            return [_item(item, (item.get("metadata") or {}).get("key")) for item in inlined]
        lines = (orjson.loads(line) for line in body.splitlines() if line.strip())
        return [_item(item, item.get("key")) for item in lines]


def _file_line(entry: bytes) -> bytes:
    """An inline entry as a line of an input file: ``{"key", "request"}`` (the model is the
    batch's, named in the create call)."""
    data = orjson.loads(entry)
    request = {k: v for k, v in data["request"].items() if k != "model"}
    return orjson.dumps({"key": data["metadata"]["key"], "request": request})


def _item(item: dict[str, Any], key: Any) -> ItemResult:
    if "response" in item and item["response"] is not None:
        return ItemResult(str(key), "succeeded", 200, orjson.dumps(item["response"]))
    error = item.get("error") or {"code": 500, "message": "no response", "status": "INTERNAL"}
    status = int(error.get("code") or 500)
    return ItemResult(str(key), "errored", status, orjson.dumps({"error": error}))


def _batch_id(operation: dict[str, Any]) -> str:
    return str(operation.get("name") or (operation.get("metadata") or {}).get("name")).removeprefix(
        "batches/"
    )


def _state(operation: dict[str, Any]) -> BatchState:
    batch = operation.get("metadata") or {}
    state = str(batch.get("state") or "BATCH_STATE_PENDING").removeprefix("BATCH_STATE_")
    stats = batch.get("batchStats") or {}
    output = operation.get("response") or batch.get("output") or {}
    batch_id = _batch_id(operation)
    ref = output.get("responsesFile")
    refs = (ref,) if ref else (f"{INLINE}{batch_id}",) if state in _ENDED else ()
    return BatchState(
        id=batch_id,
        status=state.lower(),
        ended=state in _ENDED or bool(operation.get("done")),
        total=int(stats.get("requestCount") or 0),
        succeeded=int(stats.get("successfulRequestCount") or 0),
        failed=int(stats.get("failedRequestCount") or 0),
        result_refs=refs,
        created_at=_timestamp(batch.get("createTime")),
        tag=batch.get("displayName"),
        error=(operation.get("error") or {}).get("message"),
    )


def gemini_batches(base_url: str | None, api_key: str | None) -> GeminiBatches:
    """Gemini Batch Mode (the registry's factory); ``BATCHLLM_GEMINI_INLINE_BYTES`` sets the
    size above which a batch's requests go as a file."""
    inline = int(os.environ.get(INLINE_ENV) or INLINE_MAX_BYTES)
    return GeminiBatches(base_url or gemini.DEFAULT_BASE_URL, api_key, inline)
