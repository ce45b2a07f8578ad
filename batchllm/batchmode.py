"""Provider batch mode: the rendered requests go out as provider batches at the batch price.

Requests from the producer are grouped up to the provider's limits (requests and bytes per batch),
written to the run directory, then submitted; the book ``batches/book.json`` records each step
before the next one starts:

    prepared (entries and rows on disk) → uploaded (file id) → submitted (batch id) → done

so a process killed at any step never submits the same rows twice: a batch that was created but
whose id was not recorded is found again by its tag (OpenAI batch metadata) or by its size and
creation time (Anthropic), and polled instead of resubmitted. Submitted batches are polled with
backoff; their items are parsed by the online adapter into the same outcomes as an online run,
priced at the batch price. Expired, cancelled and retryable errored items go out again in a later
batch, up to ``max_attempts``; replies that fail the schema are repaired online.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import structlog

from batchllm import retry
from batchllm.dispatch import Dispatcher, now_us
from batchllm.errors import FatalProviderError, ProviderError, ServerError
from batchllm.job import JobSpec
from batchllm.outcome import FAILED, INVALID, OK, Outcome
from batchllm.pricing import Price
from batchllm.providers.base import Adapter, Completion, HttpCall
from batchllm.providers.batches import UNFINISHED, BatchApi, BatchState, ItemResult
from batchllm.providers.http import send
from batchllm.render import Request
from batchllm.validate import OutputSchema

log = structlog.get_logger("batchllm")
CONTROL_TIMEOUT_S = 120.0
CONTROL_ATTEMPTS = 8
#: how far a batch's creation time may be from our record of preparing it, to be recognised
FIND_WINDOW_S = 600.0


@dataclass(frozen=True, slots=True)
class BatchSettings:
    poll_s: float
    max_poll_s: float
    max_attempts: int
    max_requests: int | None = None


@dataclass(slots=True)
class _Pending:
    """Requests gathered for the next batch."""

    entries: list[bytes]
    rows: list[bytes]
    size: int = 0


class Book:
    """``batches/book.json``: every batch of this run directory and how far it got."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "batches"
        self.dir.mkdir(exist_ok=True)
        self.path = self.dir / "book.json"
        self.batches: dict[str, dict[str, Any]] = (
            orjson.loads(self.path.read_bytes()) if self.path.exists() else {}
        )

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self.batches, option=orjson.OPT_INDENT_2))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def open_tags(self) -> list[str]:
        return [tag for tag, entry in self.batches.items() if entry["state"] != "done"]

    def in_flight(self) -> set[str]:
        """Custom ids (request keys) of batches not done yet: the producer skips them."""
        ids: set[str] = set()
        for tag in self.open_tags():
            ids.update(orjson.loads(line)["custom_id"] for line in self.rows(tag))
        return ids

    def rows(self, tag: str) -> list[bytes]:
        return (self.dir / f"{tag}.rows.jsonl").read_bytes().splitlines()

    def entries(self, tag: str) -> list[bytes]:
        return (self.dir / f"{tag}.jsonl").read_bytes().splitlines()


class BatchMode:
    def __init__(
        self,
        api: BatchApi,
        adapter: Adapter,
        session: aiohttp.ClientSession,
        book: Book,
        record: Callable[[Outcome], None],
        repairer: Dispatcher,
        price: Price,
        settings: BatchSettings,
        run_id: str,
        schema: OutputSchema | None,
    ) -> None:
        self.api, self.adapter, self.session, self.book = api, adapter, session, book
        self.record, self.repairer, self.price = record, repairer, price
        self.settings, self.run_id, self.schema = settings, run_id, schema
        self.max_requests = min(settings.max_requests or api.max_requests, api.max_requests)
        self.tasks: list[asyncio.Task[None]] = []

    async def run(self, queue: asyncio.Queue[tuple[Request, dict[str, Any]] | None]) -> None:
        """Follow the batches left open by an earlier run, and batch everything in ``queue``."""
        try:
            await self._run(queue)
        except asyncio.CancelledError:
            for task in self.tasks:  # interrupted: the batches stay with the provider
                task.cancel()
            raise

    async def _run(self, queue: asyncio.Queue[tuple[Request, dict[str, Any]] | None]) -> None:
        for tag in self.book.open_tags():
            self.tasks.append(asyncio.create_task(self._follow(tag)))
        pending = _Pending([], [])
        seen: set[str] = set()
        while (item := await queue.get()) is not None:
            request, copied = item
            entry, row = self._lines(request, copied)
            if request.request_key not in seen:
                if self._full(pending, entry):
                    await self._launch(pending)
                    pending, seen = _Pending([], []), set()
                pending.entries.append(entry)
                pending.size += len(entry) + 1
                seen.add(request.request_key)
            pending.rows.append(row)
        if pending.entries:
            await self._launch(pending)
        await asyncio.gather(*self.tasks)

    def _lines(self, request: Request, copied: dict[str, Any]) -> tuple[bytes, bytes]:
        entry = self.api.entry(request.request_key, self.adapter.build(request))
        row = orjson.dumps({"custom_id": request.request_key, "copied": copied,
                            "request": _request_json(request)})  # fmt: skip
        return entry, row

    def _full(self, pending: _Pending, entry: bytes) -> bool:
        too_many = len(pending.entries) >= self.max_requests
        return bool(pending.entries) and (
            too_many or pending.size + len(entry) > self.api.max_bytes
        )

    async def _launch(self, pending: _Pending, attempt: int = 1) -> None:
        tag = f"b{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        (self.book.dir / f"{tag}.jsonl").write_bytes(b"\n".join(pending.entries) + b"\n")
        (self.book.dir / f"{tag}.rows.jsonl").write_bytes(b"\n".join(pending.rows) + b"\n")
        self.book.batches[tag] = {"state": "prepared", "prepared_at": time.time(),
                                  "requests": len(pending.entries), "attempt": attempt}  # fmt: skip
        self.book.save()
        self.tasks.append(asyncio.create_task(self._follow(tag)))

    async def _follow(self, tag: str) -> None:
        """Submit (unless already submitted), poll to the end, and record the results."""
        entry = self.book.batches[tag]
        if "batch_id" not in entry:
            await self._submit(tag, entry)
        state = await self._poll(entry["batch_id"])
        await self._collect(tag, entry, state)

    async def _submit(self, tag: str, entry: dict[str, Any]) -> None:
        found = await self._find(tag, entry)
        if found is None:
            entries = self.book.entries(tag)
            upload = self.api.upload(entries, tag) if "file_id" not in entry else None
            if upload is not None:
                entry["file_id"] = self.api.parse_uploaded(*await self._call(upload))
                entry["state"] = "uploaded"
                self.book.save()
            create = self.api.create(entries, entry.get("file_id"), tag)
            found = self.api.parse_created(*await self._call(create))
        entry.update(batch_id=found, state="submitted", submitted_at=time.time())
        self.book.save()
        log.info("batch.submitted", tag=tag, batch_id=found, requests=entry["requests"])

    async def _find(self, tag: str, entry: dict[str, Any]) -> str | None:
        """A batch created for ``tag`` before a crash kept its id from being recorded."""
        if entry["state"] == "prepared" and "checked" not in entry:
            entry["checked"] = True  # a fresh batch: nothing to find on its first submission
            return None
        listed = self.api.parse_list(*await self._call(self.api.recent()))
        for state in listed:
            if state.tag == tag:
                return state.id
            close = state.created_at is not None and (
                abs(state.created_at - entry["prepared_at"]) < FIND_WINDOW_S
            )
            if state.tag is None and close and state.total == entry["requests"]:
                return state.id
        return None

    async def _poll(self, batch_id: str) -> BatchState:
        wait = self.settings.poll_s
        while True:
            state = self.api.parse_batch(*await self._call(self.api.get(batch_id)))
            if state.ended:
                return state
            log.info("batch.poll", batch_id=batch_id, status=state.status, done=state.succeeded,
                     failed=state.failed, total=state.total, next_s=round(wait, 1))  # fmt: skip
            await asyncio.sleep(wait)
            wait = min(wait * 1.5, self.settings.max_poll_s)

    async def _collect(self, tag: str, entry: dict[str, Any], state: BatchState) -> None:
        items: dict[str, ItemResult] = {}
        for call in self.api.results(state):
            for found in self.api.parse_results((await self._call(call))[1]):
                items[found.custom_id] = found
        again, resent = _Pending([], []), set()
        entries = {orjson.loads(line)["custom_id"]: line for line in self.book.entries(tag)}
        for line in self.book.rows(tag):
            row = orjson.loads(line)
            if await self._settle_row(row, items.get(row["custom_id"]), entry["attempt"]):
                if row["custom_id"] not in resent:
                    resent.add(row["custom_id"])
                    again.entries.append(entries[row["custom_id"]])
                again.rows.append(line)
        entry["state"] = "done"
        entry["status"] = state.status
        self.book.save()
        if again.entries:
            log.info("batch.resubmit", items=len(again.entries), attempt=entry["attempt"] + 1)
            await self._launch(again, entry["attempt"] + 1)

    async def _settle_row(self, row: dict[str, Any], item: ItemResult | None, attempt: int) -> bool:
        """Record one row's outcome; True when its request should go out again."""
        request = _request_from(row["request"])
        if item is None or item.kind in UNFINISHED:
            if attempt < self.settings.max_attempts:
                return True
            kind = item.kind if item else "missing"
            self.record(self._failed(request, row, f"batch item {kind}", "batch_" + kind, attempt))
            return False
        try:
            completion = self.adapter.parse(item.status, {}, item.body)
        except ProviderError as exc:
            if exc.fatal:
                raise FatalProviderError(f"{exc.kind}: {exc}") from None
            if exc.retryable and attempt < self.settings.max_attempts:
                return True
            self.record(self._failed(request, row, str(exc), exc.kind, attempt))
            return False
        self.record(await self._finished(request, row, completion, attempt))
        return False

    async def _finished(
        self, request: Request, row: dict[str, Any], completion: Completion, attempt: int
    ) -> Outcome:
        cost = self.price.cost(completion.usage)
        checked = (
            self.schema.check(completion.text, completion.finish_reason) if self.schema else None
        )
        outcome = Outcome(
            row_key=request.row_key, request_key=request.request_key,
            input_hash=request.input_hash or None, run_id=self.run_id,
            status=OK if checked is None or checked.value is not None else INVALID,
            finished_at=now_us(), output=completion.text, finish_reason=completion.finish_reason,
            attempts=attempt, input_tokens=completion.usage.input_tokens,
            output_tokens=completion.usage.output_tokens,
            cached_tokens=completion.usage.cached_tokens,
            cache_write_tokens=completion.usage.cache_write_tokens,
            reasoning_tokens=completion.usage.reasoning_tokens,
            usage_estimated=completion.usage.estimated, cost_usd=cost, model=completion.model,
            provider_request_id=completion.request_id, copied=row["copied"],
            fields=self.schema.fields(checked.value if checked else None) if self.schema else {},
        )  # fmt: skip
        if outcome.status == INVALID and self.repairer.max_repairs > 0:
            repaired = await self.repairer.repair(request, row["copied"], completion)
            return _merge(outcome, repaired)
        if checked is not None and checked.value is None:
            kind = "truncated" if checked.truncated else "invalid_output"
            return _replace(outcome, error_type=kind, error=checked.error)
        return outcome

    def _failed(
        self, request: Request, row: dict[str, Any], error: str, kind: str, attempt: int
    ) -> Outcome:
        return Outcome(
            row_key=request.row_key, request_key=request.request_key,
            input_hash=request.input_hash or None, run_id=self.run_id, status=FAILED,
            finished_at=now_us(), error_type=kind, error=error, attempts=attempt,
            model=request.model, copied=row["copied"],
            fields=self.schema.fields(None) if self.schema else {},
        )  # fmt: skip

    async def _call(self, call: HttpCall) -> tuple[int, bytes]:
        return await control_call(self.session, call)


async def control_call(session: aiohttp.ClientSession, call: HttpCall) -> tuple[int, bytes]:
    """One call to a batch API, retried like any request when the failure is transient."""
    async for attempt in retry.policy(CONTROL_ATTEMPTS):
        with attempt:
            status, _, body = await send(session, call, CONTROL_TIMEOUT_S)
            if status == 429 or status >= 500 or status in (408, 409):
                raise ServerError(f"batch API HTTP {status}", status=status)
    return status, body


async def batch_status(job: JobSpec, api_key: str | None) -> str:
    """Each batch of the job's run directory, with the provider's live counts for open ones."""
    book = Book(job.output_dir)
    if not book.batches:
        return f"{job.name}: no batches in {job.output_dir}"
    api = batch_api(job.model.provider, job.model.base_url, api_key)
    lines = [f"{job.name}: {len(book.batches)} batches in {job.output_dir}"]
    async with aiohttp.ClientSession() as session:
        for tag, entry in book.batches.items():
            live = ""
            if entry["state"] == "submitted":
                state = api.parse_batch(*await control_call(session, api.get(entry["batch_id"])))
                live = f" provider: {state.status} {state.succeeded}/{state.total} done"
                live += f", {state.failed} failed" if state.failed else ""
            lines.append(
                f"  {tag}  {entry.get('batch_id', '-'):<36} {entry['state']:<9} "
                f"{entry['requests']:>7,} requests  attempt {entry['attempt']}{live}"
            )
    return "\n".join(lines)


async def cancel_batches(job: JobSpec, api_key: str | None) -> str:
    """Ask the provider to cancel every submitted batch; the next run collects what finished."""
    book = Book(job.output_dir)
    api = batch_api(job.model.provider, job.model.base_url, api_key)
    cancelled = []
    async with aiohttp.ClientSession() as session:
        for entry in book.batches.values():
            if entry["state"] == "submitted":
                api.parse_batch(*await control_call(session, api.cancel(entry["batch_id"])))
                cancelled.append(entry["batch_id"])
    if not cancelled:
        return f"{job.name}: no batch in flight"
    return (
        f"{job.name}: cancelling {len(cancelled)} batches ({', '.join(cancelled)}); "
        "run the job again to collect what they finished and send the rest"
    )


def _request_json(request: Request) -> dict[str, Any]:
    return {
        "row_key": request.row_key, "request_key": request.request_key, "model": request.model,
        "messages": request.messages, "params": dict(request.params),
        "est_input_tokens": request.est_input_tokens, "max_tokens": request.max_tokens,
        "response_schema": request.response_schema, "schema_strict": request.schema_strict,
        "input_hash": request.input_hash,
    }  # fmt: skip


def _request_from(data: dict[str, Any]) -> Request:
    messages = tuple((role, text) for role, text in data.pop("messages"))
    return Request(messages=messages, **data)


def _replace(outcome: Outcome, **changes: Any) -> Outcome:
    from dataclasses import replace

    return replace(outcome, **changes)


def _merge(batch: Outcome, repaired: Outcome) -> Outcome:
    """The batch reply's cost (batch price) plus the online repairs' (their own price)."""
    return _replace(
        repaired,
        attempts=batch.attempts + repaired.attempts,
        input_tokens=batch.input_tokens + repaired.input_tokens,
        output_tokens=batch.output_tokens + repaired.output_tokens,
        cached_tokens=batch.cached_tokens + repaired.cached_tokens,
        cost_usd=batch.cost_usd + repaired.cost_usd,
        repair_cost_usd=repaired.cost_usd,
    )


def batch_api(provider: str, base_url: str | None, api_key: str | None) -> BatchApi:
    """The batch API of a provider; batch mode exists for OpenAI and Anthropic."""
    from batchllm.providers import anthropic
    from batchllm.providers.batches import AnthropicBatches, OpenAIBatches
    from batchllm.providers.openai import DEFAULT_BASE_URL

    if provider in ("openai", "simulated"):
        return OpenAIBatches(base_url or DEFAULT_BASE_URL, api_key, "/v1/chat/completions")
    if provider == "anthropic":
        return AnthropicBatches(
            base_url or anthropic.DEFAULT_BASE_URL, api_key, anthropic.API_VERSION
        )
    raise ValueError(f"no batch mode for provider '{provider}'")


__all__: Sequence[str] = ["BatchMode", "BatchSettings", "Book", "batch_api"]
