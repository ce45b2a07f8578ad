"""Provider batch APIs, sans-I/O: OpenAI Files + Batches and Anthropic Message Batches.

Each class builds the ``HttpCall``s of one batch API and parses its replies into provider-neutral
values: a ``BatchState`` for a batch, an ``ItemResult`` per request. The item bodies are the
provider's ordinary reply bodies, so the online adapter parses them into ``Completion``s and every
batch result lands in the same columns as an online one. Custom ids are request keys.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from batchllm.errors import error_for_status
from batchllm.providers import anthropic, openai
from batchllm.providers.base import HttpCall, redact

#: items that ended without a reply; they are sent again in a later batch
UNFINISHED = frozenset({"expired", "canceled", "cancelled"})


@dataclass(frozen=True, slots=True)
class BatchState:
    id: str
    status: str
    ended: bool
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    result_refs: tuple[str, ...] = ()
    created_at: float | None = None
    tag: str | None = None
    #: why the provider refused the whole batch (OpenAI ``failed``: ``errors.data``)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One request's fate: ``kind`` is succeeded, errored, expired or canceled."""

    custom_id: str
    kind: str
    status: int
    body: bytes


class BatchApi(Protocol):
    name: str
    max_requests: int
    max_bytes: int

    def entry(self, custom_id: str, call: HttpCall) -> bytes: ...

    def upload(self, entries: Sequence[bytes], tag: str) -> HttpCall | None: ...

    def parse_uploaded(self, status: int, body: bytes) -> str: ...

    def create(self, entries: Sequence[bytes], file_id: str | None, tag: str) -> HttpCall: ...

    def parse_created(self, status: int, body: bytes) -> str: ...

    def get(self, batch_id: str) -> HttpCall: ...

    def recent(self) -> HttpCall: ...

    def cancel(self, batch_id: str) -> HttpCall: ...

    def parse_batch(self, status: int, body: bytes) -> BatchState: ...

    def parse_list(self, status: int, body: bytes) -> list[BatchState]: ...

    def results(self, state: BatchState) -> list[HttpCall]: ...

    def parse_results(self, body: bytes) -> list[ItemResult]: ...


class _JsonReplies:
    """The reply parsing both batch APIs share: JSON objects, a list under ``data``."""

    key: str | None

    def parse_created(self, status: int, body: bytes) -> str:
        return str(_json(self.key, status, body)["id"])

    def parse_batch(self, status: int, body: bytes) -> BatchState:
        return self._state(_json(self.key, status, body))

    def parse_list(self, status: int, body: bytes) -> list[BatchState]:
        return [self._state(item) for item in _json(self.key, status, body).get("data") or []]

    @staticmethod
    def _state(data: dict[str, Any]) -> BatchState:
        raise NotImplementedError


class OpenAIBatches(_JsonReplies):
    """``/v1/files`` + ``/v1/batches``: a JSONL file of requests, results as JSONL files."""

    name = "openai"
    max_requests = 50_000
    max_bytes = 190 * 1024 * 1024  # the limit is 200 MB; leave room for the multipart framing

    def __init__(self, base_url: str, api_key: str | None, endpoint: str) -> None:
        self.base = base_url.rstrip("/")
        self.endpoint = endpoint
        self.key = api_key
        self.auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def entry(self, custom_id: str, call: HttpCall) -> bytes:
        line = {
            "custom_id": custom_id,
            "method": "POST",
            "url": self.endpoint,
            "body": synchronous_body(call),
        }
        return orjson.dumps(line)

    def upload(self, entries: Sequence[bytes], tag: str) -> HttpCall | None:
        """The JSONL file of requests, as a multipart upload."""
        boundary = "batchllm-" + uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{tag}.jsonl"\r\nContent-Type: application/jsonl\r\n\r\n'
        ).encode()
        body = head + b"\n".join(entries) + b"\n" + f"\r\n--{boundary}--\r\n".encode()
        headers = {**self.auth, "Content-Type": f"multipart/form-data; boundary={boundary}"}
        return HttpCall("POST", f"{self.base}/files", headers, body)

    def parse_uploaded(self, status: int, body: bytes) -> str:
        return str(_json(self.key, status, body)["id"])

    def create(self, entries: Sequence[bytes], file_id: str | None, tag: str) -> HttpCall:
        body = {
            "input_file_id": file_id,
            "endpoint": self.endpoint,
            "completion_window": "24h",
            "metadata": {"batchllm_tag": tag},
        }
        headers = {**self.auth, "Content-Type": "application/json"}
        return HttpCall("POST", f"{self.base}/batches", headers, orjson.dumps(body))

    def get(self, batch_id: str) -> HttpCall:
        return HttpCall("GET", f"{self.base}/batches/{batch_id}", self.auth, b"")

    def recent(self) -> HttpCall:
        return HttpCall("GET", f"{self.base}/batches?limit=100", self.auth, b"")

    def cancel(self, batch_id: str) -> HttpCall:
        return HttpCall("POST", f"{self.base}/batches/{batch_id}/cancel", self.auth, b"")

    def results(self, state: BatchState) -> list[HttpCall]:
        return [
            HttpCall("GET", f"{self.base}/files/{ref}/content", self.auth, b"")
            for ref in state.result_refs
        ]

    def parse_results(self, body: bytes) -> list[ItemResult]:
        found = []
        for line in body.splitlines():
            if not line.strip():
                continue
            item = orjson.loads(line)
            response, error = item.get("response"), item.get("error")
            if response:
                status = int(response.get("status_code") or 0)
                kind = "succeeded" if status == 200 else "errored"
                found.append(
                    ItemResult(item["custom_id"], kind, status, orjson.dumps(response.get("body")))
                )
            else:
                code = str((error or {}).get("code") or "")
                kind = "expired" if "expired" in code else "canceled" if "cancel" in code else ""
                # never executed, so never paid: a timeout or an unknown code is worth a retry
                status = 408 if code == "request_timeout" else 500
                body = orjson.dumps({"error": error})
                found.append(ItemResult(item["custom_id"], kind or "errored", status, body))
        return found

    @staticmethod
    def _state(data: dict[str, Any]) -> BatchState:
        counts = data.get("request_counts") or {}
        status = str(data.get("status"))
        refs = tuple(ref for ref in (data.get("output_file_id"), data.get("error_file_id")) if ref)
        ended = status in ("completed", "failed", "expired", "cancelled")
        return BatchState(
            id=str(data["id"]),
            status=status,
            ended=ended,
            total=int(counts.get("total") or 0),
            succeeded=int(counts.get("completed") or 0),
            failed=int(counts.get("failed") or 0),
            result_refs=refs,
            created_at=data.get("created_at"),
            tag=(data.get("metadata") or {}).get("batchllm_tag"),
            error=_batch_errors(data.get("errors")),
        )


class AnthropicBatches(_JsonReplies):
    """``/v1/messages/batches``: requests in the create body, results as one JSONL download."""

    name = "anthropic"
    max_requests = 100_000
    max_bytes = 250 * 1024 * 1024  # the limit is 256 MB

    def __init__(self, base_url: str, api_key: str | None, version: str) -> None:
        self.base = base_url.rstrip("/") + "/v1/messages/batches"
        self.key = api_key
        self.headers = {"anthropic-version": version, **({"x-api-key": api_key} if api_key else {})}

    def entry(self, custom_id: str, call: HttpCall) -> bytes:
        return orjson.dumps({"custom_id": custom_id, "params": synchronous_body(call)})

    def upload(self, entries: Sequence[bytes], tag: str) -> HttpCall | None:
        return None  # the requests travel in the create call itself

    def parse_uploaded(self, status: int, body: bytes) -> str:
        raise NotImplementedError("Message Batches take no upload")

    def create(self, entries: Sequence[bytes], file_id: str | None, tag: str) -> HttpCall:
        body = b'{"requests":[' + b",".join(entries) + b"]}"
        headers = {**self.headers, "Content-Type": "application/json"}
        return HttpCall("POST", self.base, headers, body)

    def get(self, batch_id: str) -> HttpCall:
        return HttpCall("GET", f"{self.base}/{batch_id}", self.headers, b"")

    def recent(self) -> HttpCall:
        return HttpCall("GET", f"{self.base}?limit=100", self.headers, b"")

    def cancel(self, batch_id: str) -> HttpCall:
        return HttpCall("POST", f"{self.base}/{batch_id}/cancel", self.headers, b"")

    def results(self, state: BatchState) -> list[HttpCall]:
        return [HttpCall("GET", ref, self.headers, b"") for ref in state.result_refs]

    def parse_results(self, body: bytes) -> list[ItemResult]:
        found = []
        for line in body.splitlines():
            if not line.strip():
                continue
            item = orjson.loads(line)
            result = item.get("result") or {}
            kind = str(result.get("type"))
            if kind == "succeeded":
                found.append(
                    ItemResult(item["custom_id"], kind, 200, orjson.dumps(result.get("message")))
                )
            else:
                error = result.get("error") or {"type": "error", "error": {"type": kind}}
                status = _ERROR_STATUS.get(str((error.get("error") or {}).get("type")), 400)
                found.append(ItemResult(item["custom_id"], kind, status, orjson.dumps(error)))
        return found

    @staticmethod
    def _state(data: dict[str, Any]) -> BatchState:
        counts = data.get("request_counts") or {}
        total = sum(int(v or 0) for v in counts.values())
        failed = sum(int(counts.get(k) or 0) for k in ("errored", "canceled", "expired"))
        ended = data.get("processing_status") == "ended"
        url = data.get("results_url")
        return BatchState(
            id=str(data["id"]),
            status=str(data.get("processing_status")),
            ended=ended,
            total=total,
            succeeded=int(counts.get("succeeded") or 0),
            failed=failed,
            result_refs=(url,) if url else (),
            created_at=_timestamp(data.get("created_at")),
        )


def openai_batches(base_url: str | None, api_key: str | None) -> OpenAIBatches:
    """OpenAI's Batch API for Chat Completions requests (the registry's factory)."""
    return OpenAIBatches(base_url or openai.DEFAULT_BASE_URL, api_key, "/v1/chat/completions")


def anthropic_batches(base_url: str | None, api_key: str | None) -> AnthropicBatches:
    """Anthropic's Message Batches (the registry's factory)."""
    return AnthropicBatches(base_url or anthropic.DEFAULT_BASE_URL, api_key, anthropic.API_VERSION)


_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def _batch_errors(errors: Any) -> str | None:
    """OpenAI's ``errors.data[]`` in one line: ``line 3: mismatched_url: ...``, at most three."""
    data = errors.get("data") if isinstance(errors, dict) else None
    if not isinstance(data, list) or not data:
        return None
    found = [_batch_error(e) for e in data[:3] if isinstance(e, dict)]
    return "; ".join(found) + (f" (and {len(data) - 3} more)" if len(data) > 3 else "")


def _batch_error(error: dict[str, Any]) -> str:
    where = f"line {error['line']}: " if error.get("line") else ""
    return f"{where}{error.get('code')}: {error.get('message')}"


def _json(key: str | None, status: int, body: bytes) -> dict[str, Any]:
    """A control call's JSON reply, or the typed error it stands for."""
    if 200 <= status < 300:
        data = orjson.loads(body)
        if isinstance(data, dict):
            return data
    message = redact(body[:300].decode("utf-8", errors="replace"), key)
    text = f"batch API HTTP {status}: {message}"
    raise error_for_status(status, text)


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def synchronous_body(call: HttpCall) -> dict[str, Any]:
    """The request body a batch line carries: the online one without ``"stream": false``, a
    field batch lines do not take, nor a ``service_tier`` (a batch is its own tier)."""
    body: dict[str, Any] = orjson.loads(call.body)
    if body.get("stream") is False:
        del body["stream"]
    body.pop("service_tier", None)
    return body
