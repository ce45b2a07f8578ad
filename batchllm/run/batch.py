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
batch, up to ``max_attempts``; replies that fail the schema are repaired online. The files and
the book are ``batch_book``'s; the control call, ``status`` and ``cancel`` are
``batch_control``'s.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import orjson
import structlog

from batchllm.dispatch import Dispatcher
from batchllm.errors import FatalProviderError, ProviderError, RequestRejected
from batchllm.outcome import (
    FAILED,
    INVALID,
    OK,
    Outcome,
    RecentRequests,
    now_us,
    shared_outcome,
)
from batchllm.pricing import Price
from batchllm.providers.base import Adapter, Completion, HttpCall
from batchllm.providers.batches import UNFINISHED, BatchApi, BatchState, ItemResult
from batchllm.render import Request
from batchllm.run.batch_book import Book, request_from, request_json
from batchllm.run.batch_control import batch_api, batch_status, cancel_batches, control_call
from batchllm.validate import OutputSchema

log = structlog.get_logger("batchllm")
#: how far a batch's creation time may be from our record of preparing it, to be recognised
FIND_WINDOW_S = 600.0
#: schema repairs of one batch's replies sent at once (online, under the job's limits)
REPAIR_WORKERS = 16


@dataclass(frozen=True, slots=True)
class BatchSettings:
    poll_s: float
    max_poll_s: float
    max_attempts: int
    max_requests: int | None = None


@dataclass(frozen=True, slots=True)
class _Repair:
    """A batch reply that failed the schema, to be re-asked online."""

    request: Request
    row: dict[str, Any]
    completion: Completion
    outcome: Outcome


@dataclass(slots=True)
class _Pending:
    """Requests gathered for the next batch."""

    entries: list[bytes]
    rows: list[bytes]
    size: int = 0


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
        #: requests submitted in batches created by this run
        self.sent = 0
        #: recent requests of this run's batches: the tag of the batch holding each, then its
        #: ok outcome once collected, so an identical request later in the input is not paid again
        self.recent: RecentRequests[str | Outcome] = RecentRequests()
        #: batches being collected: too late to add rows to
        self.collecting: set[str] = set()
        #: rows of batches an earlier run left open, (row key, request key) -> tag
        self.in_flight = book.in_flight()
        for (_, key), tag in self.in_flight.items():
            self._remember(key, tag)  # a new row asking one of these requests joins that batch

    async def run(self, queue: asyncio.Queue[tuple[Request, dict[str, Any]] | None]) -> None:
        """Follow the batches left open by an earlier run, and batch everything in ``queue``.

        Interrupted, the batches stay with the provider and in the book; a failing batch API
        stops the run (``FatalProviderError``) the same way, to be resumed by running again.
        """
        try:
            async with asyncio.TaskGroup() as group:
                for tag in self.book.open_tags():
                    group.create_task(self._follow(tag))
                await self._batch(queue, group)
        except ExceptionGroup as caught:
            raise _run_error(caught) from None

    async def _batch(
        self,
        queue: asyncio.Queue[tuple[Request, dict[str, Any]] | None],
        group: asyncio.TaskGroup,
    ) -> None:
        pending = _Pending([], [])
        seen: set[str] = set()
        while (item := await queue.get()) is not None:
            request, copied = item
            if request.request_key not in seen and self._share(request, copied):
                continue
            entry, row = self._lines(request, copied)
            if request.request_key not in seen:
                if self._full(pending, entry):
                    group.create_task(self._follow(self._prepare(pending, keys=seen)))
                    pending, seen = _Pending([], []), set()
                pending.entries.append(entry)
                pending.size += len(entry) + 1
                seen.add(request.request_key)
            pending.rows.append(row)
        if pending.entries:
            group.create_task(self._follow(self._prepare(pending, keys=seen)))

    def _share(self, request: Request, copied: dict[str, Any]) -> bool:
        """Give the row the reply of an identical request in an earlier batch of this run: its
        outcome if collected, else a place among that batch's rows; False when there is none."""
        earlier = self.recent.get(request.request_key)
        if isinstance(earlier, Outcome):
            self.record(shared_outcome(earlier, request, copied))
            return True
        if earlier is None or earlier in self.collecting:
            return False
        self.book.add_row(earlier, self._lines(request, copied)[1])
        return True

    def _remember(self, key: str, holder: str | Outcome | None) -> None:
        if holder is None:
            self.recent.drop(key)
        else:
            self.recent.put(key, holder)

    def _lines(self, request: Request, copied: dict[str, Any]) -> tuple[bytes, bytes]:
        entry = self.api.entry(request.request_key, self.adapter.build(request))
        row = orjson.dumps({"custom_id": request.request_key, "copied": copied,
                            "request": request_json(request)})  # fmt: skip
        return entry, row

    def _full(self, pending: _Pending, entry: bytes) -> bool:
        too_many = len(pending.entries) >= self.max_requests
        return bool(pending.entries) and (
            too_many or pending.size + len(entry) > self.api.max_bytes
        )

    def _prepare(self, pending: _Pending, attempt: int = 1, keys: Iterable[str] = ()) -> str:
        """Write a batch's requests and rows, and book it as prepared; its tag. ``keys``: the
        request keys it holds, remembered for identical requests that come later."""
        tag = f"b{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        (self.book.dir / f"{tag}.jsonl").write_bytes(b"\n".join(pending.entries) + b"\n")
        (self.book.dir / f"{tag}.rows.jsonl").write_bytes(b"\n".join(pending.rows) + b"\n")
        self.book.batches[tag] = {"state": "prepared", "prepared_at": time.time(),
                                  "requests": len(pending.entries), "attempt": attempt}  # fmt: skip
        self.book.save()
        for key in keys:
            self._remember(key, tag)
        return tag

    async def _follow(self, tag: str | None) -> None:
        """Submit (unless already submitted), poll to the end, record the results; then the
        same for the batch of items sent again, until none is left (at most max_attempts)."""
        while tag is not None:
            entry = self.book.batches[tag]
            if "batch_id" not in entry:
                await self._submit(tag, entry)
            state = await self._poll(entry["batch_id"])
            tag = await self._collect(tag, entry, state)

    async def _submit(self, tag: str, entry: dict[str, Any]) -> None:
        found = await self._find(tag, entry)
        if found is None:
            entries = self.book.entries(tag)
            upload = self.api.upload(entries, tag) if "file_id" not in entry else None
            if upload is not None:
                entry["file_id"] = self.api.parse_uploaded(*await self._call(upload))
                entry["state"] = "uploaded"
            # Booked before the create call: after a crash, the batch may exist without its id.
            entry["creating"] = True
            self.book.save()
            create = self.api.create(entries, entry.get("file_id"), tag)
            found = self.api.parse_created(*await self._call(create))
            self.sent += entry["requests"]
        entry.update(batch_id=found, state="submitted", submitted_at=time.time())
        self.book.save()
        log.info("batch.submitted", tag=tag, batch_id=found, requests=entry["requests"])

    async def _find(self, tag: str, entry: dict[str, Any]) -> str | None:
        """A batch created for ``tag`` before a crash kept its id from being recorded."""
        if not entry.get("creating"):
            return None  # the create call was never sent
        listed = self.api.parse_list(*await self._call(self.api.recent()))
        known = self.book.batch_ids()
        for state in listed:
            if state.tag == tag:
                return state.id
            close = state.created_at is not None and (
                abs(state.created_at - entry["prepared_at"]) < FIND_WINDOW_S
            )
            same = state.tag is None and close and state.total == entry["requests"]
            if same and state.id not in known:
                log.info("batch.found", tag=tag, batch_id=state.id)
                return state.id
        return None

    async def _poll(self, batch_id: str) -> BatchState:
        wait = self.settings.poll_s
        while True:
            try:
                state = self.api.parse_batch(*await self._call(self.api.get(batch_id)))
            except RequestRejected as exc:
                if exc.status != 404:
                    raise
                log.warning("batch.lost", batch_id=batch_id, error=str(exc))
                return BatchState(batch_id, "lost", ended=True)
            if state.ended:
                return state
            log.info("batch.poll", batch_id=batch_id, status=state.status, done=state.succeeded,
                     failed=state.failed, total=state.total, next_s=round(wait, 1))  # fmt: skip
            await asyncio.sleep(wait)
            wait = min(wait * 1.5, self.settings.max_poll_s)

    async def _collect(self, tag: str, entry: dict[str, Any], state: BatchState) -> str | None:
        """Record every row of an ended batch; the tag of the batch of items to send again."""
        self.collecting.add(tag)
        items = await self._items(state)
        lines = self.book.rows(tag)
        rows = [orjson.loads(line) for line in lines]
        settled: dict[str, Outcome | None] = {}
        repairs: list[_Repair] = []
        for row in rows:
            key = row["custom_id"]
            if key not in settled:
                found = self._outcome(row, items.get(key), entry["attempt"], state.error)
                repairs += [found] if isinstance(found, _Repair) else []
                settled[key] = found.outcome if isinstance(found, _Repair) else found
        settled.update(await self._repair(repairs))
        again = self._record_rows(tag, lines, rows, settled)
        entry.update(state="done", status=state.status)
        self.book.save()
        log.info("batch.done", tag=tag, batch_id=state.id, status=state.status,
                 requests=len(settled), again=len(again.entries))  # fmt: skip
        again_tag = None
        if again.entries:
            log.info("batch.resubmit", requests=len(again.entries), attempt=entry["attempt"] + 1)
            again_tag = self._prepare(again, entry["attempt"] + 1)
        for key, outcome in settled.items():
            if self.recent.get(key) == tag:
                ok = outcome is not None and outcome.status == OK
                self._remember(key, outcome if ok else again_tag if outcome is None else None)
        self.collecting.discard(tag)
        return again_tag

    async def _items(self, state: BatchState) -> dict[str, ItemResult]:
        items: dict[str, ItemResult] = {}
        for call in self.api.results(state):
            for found in self.api.parse_results((await self._call(call))[1]):
                items[found.custom_id] = found
        return items

    def _record_rows(
        self,
        tag: str,
        lines: list[bytes],
        rows: list[dict[str, Any]],
        settled: dict[str, Outcome | None],
    ) -> _Pending:
        """Record each row's outcome (rows sharing a request share its reply, paid once); the
        requests to send again, with their rows."""
        entries = {orjson.loads(line)["custom_id"]: line for line in self.book.entries(tag)}
        again = _Pending([], [])
        seen: set[str] = set()
        for line, row in zip(lines, rows, strict=True):
            key = row["custom_id"]
            outcome = settled[key]
            if outcome is None:
                again.entries += [] if key in seen else [entries[key]]
                again.rows.append(line)
            else:
                self.record(_shared(outcome, row) if key in seen else outcome)
            seen.add(key)
        return again

    def _outcome(
        self, row: dict[str, Any], item: ItemResult | None, attempt: int, refused: str | None
    ) -> Outcome | _Repair | None:
        """A row's outcome, a reply to repair online, or None when its request goes out again;
        ``refused``: why the provider failed the whole batch, if it did."""
        request = request_from(row["request"])
        last = attempt >= self.settings.max_attempts
        if item is None or item.kind in UNFINISHED:
            if not last:
                return None
            kind = "missing" if item is None else "canceled" if "cancel" in item.kind else "expired"
            kind = "failed" if item is None and refused else kind
            error = f"batch item {kind} on its last attempt ({attempt})"
            error += f": the provider failed the batch: {refused}" if refused else ""
            return self._failed(request, row, error, f"batch_{kind}", attempt)
        try:
            completion = self.adapter.parse(item.status, {}, item.body)
        except ProviderError as exc:
            if exc.fatal:
                raise FatalProviderError(f"{exc.kind}: {exc}") from None
            if exc.retryable and not last:
                return None
            return self._failed(request, row, str(exc), exc.kind, attempt)
        return self._finished(request, row, completion, attempt)

    async def _repair(self, repairs: list[_Repair]) -> dict[str, Outcome]:
        """Re-ask online for the replies that failed the schema, a few at a time."""
        repaired: dict[str, Outcome] = {}
        todo = iter(repairs)

        async def worker() -> None:
            for job in todo:  # one iterator shared by the workers: each takes the next
                found = await self.repairer.repair(job.request, job.row["copied"], job.completion)
                repaired[job.request.request_key] = _merge(job.outcome, found)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(len(repairs), REPAIR_WORKERS)):
                group.create_task(worker())
        return repaired

    def _finished(
        self, request: Request, row: dict[str, Any], completion: Completion, attempt: int
    ) -> Outcome | _Repair:
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
        if checked is None or checked.value is not None:
            return outcome
        kind = "truncated" if checked.truncated else "invalid_output"
        outcome = replace(outcome, error_type=kind, error=checked.error)
        return _Repair(request, row, completion, outcome) if self.repairer.max_repairs else outcome

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


def _run_error(group: ExceptionGroup[Exception]) -> Exception:
    """What stopped the batches: a fatal provider error, or the batch API failing for good."""
    leaves = list(_leaves(group))
    for leaf in leaves:
        if isinstance(leaf, FatalProviderError):
            return leaf
    for leaf in leaves:
        if isinstance(leaf, ProviderError):
            return FatalProviderError(f"{leaf.kind}: {leaf}")
    return group


def _leaves(group: BaseExceptionGroup[Exception]) -> Iterator[Exception]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def _shared(earlier: Outcome, row: dict[str, Any]) -> Outcome:
    """The outcome of the same request for another row of the batch: same answer, no cost."""
    return shared_outcome(earlier, request_from(row["request"]), row["copied"])


def _merge(batch: Outcome, repaired: Outcome) -> Outcome:
    """The batch reply's usage and cost (batch price) plus the online repairs' (their own)."""
    return replace(
        repaired,
        attempts=batch.attempts + repaired.attempts,
        input_tokens=batch.input_tokens + repaired.input_tokens,
        output_tokens=batch.output_tokens + repaired.output_tokens,
        cached_tokens=batch.cached_tokens + repaired.cached_tokens,
        cache_write_tokens=batch.cache_write_tokens + repaired.cache_write_tokens,
        reasoning_tokens=batch.reasoning_tokens + repaired.reasoning_tokens,
        usage_estimated=batch.usage_estimated or repaired.usage_estimated,
        cost_usd=batch.cost_usd + repaired.cost_usd,
        repair_cost_usd=repaired.cost_usd,
    )


__all__: Sequence[str] = [
    "BatchMode",
    "BatchSettings",
    "Book",
    "batch_api",
    "batch_status",
    "cancel_batches",
]
