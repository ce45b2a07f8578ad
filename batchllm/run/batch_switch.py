"""The switch point of a run with a deadline: when rows still in a batch move online.

Owns ``Switch``: the moment (from the plan; it may move earlier while the run learns the online
rate), the queue of rows moved online (the run's online workers take them), the rows sent online
from the start to learn that rate (``samples``), and turning a batch's row lines back into queue
items; each move is told (``handed``) to the plan's learner, which decides the tier the rows go
at (``batchllm.plan.capacity``). Batch mode decides
what moves and when it is safe to (``batchllm.run.batch``): a row goes online only once no batch
that could answer it is open, so no row is paid twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import orjson
import structlog

from batchllm.run.batch_book import request_from
from batchllm.run.workers import Item

log = structlog.get_logger("batchllm")


class Switch:
    """Rows move online from ``at`` (epoch seconds) on."""

    def __init__(
        self,
        at: float,
        clock: Callable[[], float] = time.time,
        samples: int = 0,
        handed: Callable[[int], None] | None = None,
    ) -> None:
        self.at, self.clock = at, clock
        #: told how many rows each move hands online (the tier they go at follows from it)
        self.handed = handed
        #: rows still to send online at once, whose replies' rate-limit headers teach the run the
        #: provider's real online rate before the switch point (``batchllm.plan.capacity``)
        self.samples = samples
        #: rows to send online, ended by one None per online worker
        self.online: asyncio.Queue[Item | None] = asyncio.Queue()
        #: rows moved so far
        self.moved = 0

    def due(self) -> bool:
        return self.clock() >= self.at

    def wait_s(self) -> float:
        """Seconds until the switch point (0 once it is due)."""
        return max(self.at - self.clock(), 0.0)

    def sample(self, item: Item) -> bool:
        """Send ``item`` online now, when rows are still wanted to learn the online rate."""
        if self.samples <= 0:
            return False
        self.samples -= 1
        log.info("plan.sample_online", row_key=item[0].row_key)
        self.online.put_nowait(item)
        return True

    def follow(self, item: Item) -> None:
        """Send ``item`` online after an identical request sent online (a sample): the online
        workers give it that request's reply, in flight or answered, rather than send it."""
        self.online.put_nowait(item)

    def move(self, item: Item) -> None:
        """Move one row online (past the switch point, it is not batched)."""
        self._put(item)
        if self.handed is not None:
            self.handed(1)

    def move_lines(self, lines: Iterable[bytes], why: str) -> None:
        """Move a batch's rows (their row lines) online."""
        count = 0
        for line in lines:
            row = orjson.loads(line)
            self._put((request_from(row["request"]), row["copied"]))
            count += 1
        log.info("plan.moved_online", rows=count, why=why)
        if self.handed is not None and count:
            self.handed(count)

    def _put(self, item: Item) -> None:
        self.moved += 1
        self.online.put_nowait(item)

    def end(self, workers: int) -> None:
        for _ in range(workers):
            self.online.put_nowait(None)
