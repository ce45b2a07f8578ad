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
batch, up to ``max_attempts``; replies that fail the schema are repaired online. Turning items
into outcomes is ``batch_collect``'s; the files and the book are ``batch_book``'s; the control
call, ``status`` and ``cancel`` are ``batch_control``'s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from batchllm.dispatch import Dispatcher
from batchllm.errors import RequestRejected
from batchllm.media_fetch import MediaUnavailable, fetch_media
from batchllm.outcome import OK, Outcome, Outcomes, RecentRequests, shared_outcome
from batchllm.plan.history import History
from batchllm.pricing import Price
from batchllm.providers.base import HttpCall
from batchllm.providers.batches import BatchApi, BatchState, ItemResult
from batchllm.render import Request
from batchllm.run.batch_book import Book, Pending, Spool, new_tag, request_json
from batchllm.run.batch_collect import Collector
from batchllm.run.batch_control import (
    batch_api,
    batch_status,
    cancel_batches,
    control_call,
    run_error,
)
from batchllm.run.batch_switch import Switch
from batchllm.run.context import RunContext
from batchllm.run.workers import Answers, Item

log = structlog.get_logger("batchllm")
#: what ``BatchMode.recent`` holds for a request sent online (a row sampled for the online rate):
#: an identical request later in the input goes online too, where it shares that reply
ONLINE = "online"
#: how far a batch's creation time may be from our record of preparing it, to be recognised
FIND_WINDOW_S = 600.0


@dataclass(frozen=True, slots=True)
class BatchSettings:
    poll_s: float
    max_poll_s: float
    max_attempts: int
    max_requests: int | None = None


class BatchMode:
    """Sends the run's admitted requests as provider batches and records their outcomes."""

    def __init__(
        self,
        context: RunContext,
        *,
        api: BatchApi,
        book: Book,
        record: Callable[[Outcome], None],
        repairer: Dispatcher,
        price: Price,
        settings: BatchSettings,
    ) -> None:
        self.api, self.adapter, self.book = api, context.adapter, book
        self.session, self.record, self.settings = context.session, record, settings
        self.outcomes = Outcomes(context.run_id, price, context.schema)
        self.timeout_s = context.settings.timeout_s
        self.collector = Collector(
            context.adapter, self.outcomes, repairer, settings.max_attempts, record
        )
        self.max_requests = min(settings.max_requests or api.max_requests, api.max_requests)
        #: requests submitted in batches created by this run
        self.sent = 0
        #: recent requests of this run's batches: the tag of the batch holding each, then its
        #: ok outcome once collected, so an identical request later in the input is not paid again
        self.recent: RecentRequests[str | Outcome] = RecentRequests()
        #: the run directory's stored replies, reused rather than sent again
        self.answers: Answers | None = None
        #: batches being collected: too late to add rows to
        self.collecting: set[str] = set()
        #: rows of batches an earlier run left open, (row key, request key) -> tag
        self.in_flight = book.in_flight()
        #: the switch point of a run with a deadline (None: batches are followed to their end)
        self.switch: Switch | None = None
        #: the run directory's record of batch times, and the provider they are kept under
        self.history: tuple[History, str] | None = None
        for (_, key), tag in self.in_flight.items():
            self._remember(key, tag)  # a new row asking one of these requests joins that batch

    async def run(self, queue: asyncio.Queue[Item | None]) -> None:
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
            raise run_error(caught) from None

    async def _batch(
        self,
        queue: asyncio.Queue[Item | None],
        group: asyncio.TaskGroup,
    ) -> None:
        spool: Spool | None = None
        seen: set[str] = set()
        while (item := await queue.get()) is not None:
            request, copied = item
            if request.request_key not in seen and (
                self._share(request, copied) or await self._reuse(request, copied)
            ):
                continue
            if self.switch is not None and self.switch.sample(item):
                self._remember(request.request_key, ONLINE)
                continue
            if (switch := self._moving()) is not None:
                self._move_pending(spool)
                spool, seen = None, set()
                switch.move(item)
                continue
            if request.request_key not in seen:
                entry = await self._entry(request, copied)
                if entry is None:
                    continue
                if spool is not None and self._full(spool, entry):
                    group.create_task(self._follow(self._seal(spool, keys=seen)))
                    spool, seen = None, set()
                spool = spool or Spool(self.book.dir)
                spool.add_entry(entry)
                seen.add(request.request_key)
            assert spool is not None  # a request key is seen only while its spool is open
            spool.add_row(self._row(request, copied))
        if self._moving() is not None:
            self._move_pending(spool)
        elif spool is not None:
            group.create_task(self._follow(self._seal(spool, keys=seen)))

    def _moving(self) -> Switch | None:
        """The switch, once past its point: rows go online rather than into a new batch."""
        return self.switch if self.switch is not None and self.switch.due() else None

    def _move_pending(self, spool: Spool | None) -> None:
        """Rows gathered for a batch not prepared yet: no batch holds them, they go online."""
        lines = spool.discard() if spool is not None else []
        if lines and self.switch is not None:
            self.switch.move_lines(lines, "switch point: not batched yet")

    def _share(self, request: Request, copied: dict[str, Any]) -> bool:
        """Give the row the reply of an identical request in an earlier batch of this run: its
        outcome if collected, else a place among that batch's rows; or send it online after an
        identical request sent online, whose reply the online workers share with it. False
        when there is none."""
        earlier = self.recent.get(request.request_key)
        if isinstance(earlier, Outcome):
            self.record(shared_outcome(earlier, request, copied))
            return True
        if earlier == ONLINE and self.switch is not None:
            self.switch.follow((request, copied))
            return True
        if earlier is None or earlier in self.collecting:
            return False
        self.book.add_row(earlier, self._row(request, copied))
        return True

    async def _reuse(self, request: Request, copied: dict[str, Any]) -> bool:
        """Give the row the stored reply of an identical request (any run); False if none."""
        earlier = None if self.answers is None else await self.answers.find(request.request_key)
        if earlier is not None:
            self.record(shared_outcome(earlier, request, copied))
        return earlier is not None

    def _remember(self, key: str, holder: str | Outcome | None) -> None:
        if holder is None:
            self.recent.drop(key)
        else:
            self.recent.put(key, holder)

    async def _entry(self, request: Request, copied: dict[str, Any]) -> bytes | None:
        """The request as the batch API takes it, its URLs fetched if need be; None when they
        cannot be (the row is recorded failed)."""
        try:
            sent = await fetch_media(request, self.session, self.timeout_s)
        except MediaUnavailable as exc:
            self.record(self.outcomes.failed(request, copied, str(exc), exc.kind, 0))
            return None
        return self.api.entry(request.request_key, self.adapter.build(sent))

    def _row(self, request: Request, copied: dict[str, Any]) -> bytes:
        return orjson.dumps({"custom_id": request.request_key, "copied": copied,
                             "request": request_json(request)})  # fmt: skip

    def _full(self, spool: Spool, entry: bytes) -> bool:
        too_many = spool.requests >= self.max_requests
        return too_many or spool.size + len(entry) > self.api.max_bytes

    def _seal(self, spool: Spool, keys: Iterable[str]) -> str:
        """Book a gathered batch as prepared; its tag."""
        spool.seal()
        return self._book(spool.tag, spool.requests, 1, keys)

    def _prepare(self, pending: Pending, attempt: int) -> str:
        """Write a batch of requests sent again and its rows, and book it as prepared."""
        tag = new_tag()
        (self.book.dir / f"{tag}.jsonl").write_bytes(b"\n".join(pending.entries) + b"\n")
        (self.book.dir / f"{tag}.rows.jsonl").write_bytes(b"\n".join(pending.rows) + b"\n")
        return self._book(tag, len(pending.entries), attempt, ())

    def _book(self, tag: str, requests: int, attempt: int, keys: Iterable[str]) -> str:
        """Book a batch whose files are written as prepared; ``keys``: the request keys it
        holds, remembered for identical requests that come later."""
        self.book.batches[tag] = {"state": "prepared", "prepared_at": time.time(),
                                  "requests": requests, "attempt": attempt}  # fmt: skip
        self.book.save()
        for key in keys:
            self._remember(key, tag)
        return tag

    async def _follow(self, tag: str | None) -> None:
        """Submit (unless already submitted), poll to the end, record the results; then the
        same for the batch of items sent again, until none is left (at most max_attempts)."""
        while tag is not None:
            entry = self.book.batches[tag]
            moving = self._moving() is not None
            if "batch_id" not in entry and moving and not await self._found(tag, entry):
                self._move_unsent(tag, entry)
                return
            if "batch_id" not in entry:
                await self._submit(tag, entry)
            state = await self._poll(entry["batch_id"], entry)
            tag = await self._collect(tag, entry, state)

    async def _found(self, tag: str, entry: dict[str, Any]) -> bool:
        """Whether a batch was made for ``tag`` (its id then booked): one that may answer."""
        found = await self._find(tag, entry)
        if found is not None:
            entry.update(batch_id=found, state="submitted", submitted_at=time.time())
            self.book.save()
        return found is not None

    def _move_unsent(self, tag: str, entry: dict[str, Any]) -> None:
        """Past the switch point, a batch never submitted: its rows go online instead. Booked
        done first: killed before they are sent, the next run admits them again."""
        entry.update(state="done", status="moved_online")
        self.book.save()
        lines = self.book.rows(tag)
        for key in {orjson.loads(line)["custom_id"] for line in lines}:
            self._remember(key, None)
        assert self.switch is not None
        self.switch.move_lines(lines, "switch point: batch not submitted")

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

    async def _poll(self, batch_id: str, entry: dict[str, Any]) -> BatchState:
        wait = self.settings.poll_s
        while True:
            if self._moving() is not None and entry.get("cancel") != "sent":
                await self._cancel(batch_id, entry)
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
            switch_s = self.switch.wait_s() if self.switch is not None else wait
            await asyncio.sleep(min(wait, switch_s) if switch_s > 0 else self.settings.poll_s)
            wait = min(wait * 1.5, self.settings.max_poll_s)

    async def _cancel(self, batch_id: str, entry: dict[str, Any]) -> None:
        """The switch point: ask the provider to cancel; polling goes on until it says the batch
        ended, and what it finished is collected. Booked before the call and after it."""
        entry["cancel"] = "asked"
        self.book.save()
        log.info("plan.switch", batch_id=batch_id, requests=entry["requests"])
        try:
            self.api.parse_batch(*await self._call(self.api.cancel(batch_id)))
        except RequestRejected as exc:  # it ended before the cancel came
            log.info("batch.cancel_refused", batch_id=batch_id, error=str(exc))
        entry["cancel"] = "sent"
        self.book.save()

    async def _collect(self, tag: str, entry: dict[str, Any], state: BatchState) -> str | None:
        """Record every row of an ended batch; the tag of the batch of items to send again."""
        self.collecting.add(tag)
        items = await self._items(state)
        lines = self.book.rows(tag)
        rows = [orjson.loads(line) for line in lines]
        settled = await self.collector.settle(rows, items, entry["attempt"], state.error)
        again = self.collector.record_rows(self.book.entries(tag), lines, rows, settled)
        entry.update(state="done", status=state.status)
        self.book.save()
        log.info("batch.done", tag=tag, batch_id=state.id, status=state.status,
                 requests=len(settled), again=len(again.entries))  # fmt: skip
        self._remember_time(entry, state)
        again_tag = None
        moving = self._moving() is not None or "cancel" in entry
        if again.entries and self.switch is not None and moving:
            for key in {orjson.loads(line)["custom_id"] for line in again.rows}:
                self._remember(key, None)
            self.switch.move_lines(again.rows, "switch point: unfinished in the batch")
        elif again.entries:
            log.info("batch.resubmit", requests=len(again.entries), attempt=entry["attempt"] + 1)
            again_tag = self._prepare(again, entry["attempt"] + 1)
        for key, outcome in settled.items():
            if self.recent.get(key) == tag:
                ok = outcome is not None and outcome.status == OK
                self._remember(key, outcome if ok else again_tag if outcome is None else None)
        self.collecting.discard(tag)
        return again_tag

    def _remember_time(self, entry: dict[str, Any], state: BatchState) -> None:
        if self.history is not None and "submitted_at" in entry:
            history, provider = self.history
            seconds = time.time() - entry["submitted_at"]
            history.add(provider, entry["requests"], seconds, state.status)

    async def _items(self, state: BatchState) -> dict[str, ItemResult]:
        items: dict[str, ItemResult] = {}
        for call in self.api.results(state):
            for found in self.api.parse_results((await self._call(call))[1]):
                items[found.custom_id] = found
        return items

    async def _call(self, call: HttpCall) -> tuple[int, bytes]:
        return await control_call(self.session, call)


__all__: Sequence[str] = [
    "BatchMode",
    "BatchSettings",
    "Book",
    "batch_api",
    "batch_status",
    "cancel_batches",
]
