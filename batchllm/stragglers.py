"""Stragglers: requests still waiting at the end of a run, when nothing else is left to send.

While rows wait to be sent, a hung request costs one connection slot and nothing more: the other
workers go on. At the end of a run it costs wall-clock time, because the run waits for it up to
``[retry] timeout_s``. So once every row has been handed to a worker (the tail), a request that has
waited ``CUT_FACTOR`` times the run's recent 99th-percentile reply time (at least ``CUT_FLOOR_S``)
is given up and sent again, as a timeout would be.

What keeps this safe for replies that are slow rather than lost: it happens at most once a row and
never on a row's last attempt, and the copy sent again waits the whole ``timeout_s``. What it
can cost: a provider may bill the copy given up when it was slow rather than hung, so at most one
extra request per straggler, and stragglers exist only in the tail. ``[retry] resend_stragglers =
false`` turns it off. Nothing happens before ``MIN_REPLIES`` replies are known.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from types import TracebackType

#: a straggler has waited this many times the recent p99 reply time
CUT_FACTOR = 3.0
#: and at least this long
CUT_FLOOR_S = 1.0
#: replies needed before the p99 is trusted
MIN_REPLIES = 50
#: recent replies the p99 is taken over
WINDOW = 1000


class Stragglers:
    """Watches the requests in flight; at the tail, gives up those that wait far too long."""

    def __init__(self, timeout_s: float, enabled: bool = True) -> None:
        self.timeout_s = timeout_s
        self.enabled = enabled
        self.tail = False
        #: requests given up and sent again
        self.resent = 0
        self._replies: deque[float] = deque(maxlen=WINDOW)
        self._open: set[Watch] = set()

    def replied(self, seconds: float) -> None:
        """Record how long a request took to get its reply."""
        self._replies.append(seconds)

    def cut_after_s(self) -> float | None:
        """How long a request may wait in the tail, or None when no cut would be earlier than
        the timeout (or too few replies are known to say)."""
        if len(self._replies) < MIN_REPLIES:
            return None
        ordered = sorted(self._replies)
        p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
        cut = max(CUT_FLOOR_S, CUT_FACTOR * p99)
        return cut if cut < self.timeout_s else None

    def watch(self, armed: bool) -> Watch:
        """A context for one request; only an ``armed`` one can be given up."""
        return Watch(self, armed and self.enabled)

    def begin_tail(self) -> None:
        """Every row has been handed out: from now on, stragglers are given up."""
        if self.tail or not self.enabled:
            return
        self.tail = True
        cut = self.cut_after_s()
        if cut is not None:
            for watch in self._open:
                watch.cut_at(cut)

    def _opened(self, watch: Watch) -> None:
        self._open.add(watch)
        if self.tail and (cut := self.cut_after_s()) is not None:
            watch.cut_at(cut)


class Watch:
    """One request under watch: ``TimeoutError`` on exit means it was given up as a straggler."""

    __slots__ = ("_deadline", "_owner", "armed", "started", "waited_s")

    def __init__(self, owner: Stragglers, armed: bool) -> None:
        self._owner = owner
        self.armed = armed
        self._deadline: asyncio.Timeout | None = None
        self.started = 0.0
        #: how long it had waited when given up
        self.waited_s = 0.0

    async def __aenter__(self) -> Watch:
        if self.armed:
            self._deadline = asyncio.timeout(None)
            await self._deadline.__aenter__()
            self.started = asyncio.get_running_loop().time()
            self._owner._opened(self)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._deadline is None:
            return
        self._owner._open.discard(self)
        try:
            await self._deadline.__aexit__(kind, exc, traceback)
        except TimeoutError:
            self._owner.resent += 1
            self.waited_s = asyncio.get_running_loop().time() - self.started
            raise

    def cut_at(self, after_s: float) -> None:
        """Give the request up ``after_s`` after it was sent (at once if that has passed)."""
        if self._deadline is not None:
            self._deadline.reschedule(self.started + after_s)
