"""The online capacity a run learns from the provider, and the plan made again with it.

The plan's online capacity comes from the job's limits (``rpm``, ``tpm``), which may promise more
than the account has. The run's limiter learns the provider's own limits from its rate-limit
headers and lowers its pace to them (``batchllm.limits``); in a run with a deadline ``Learner``
watches it (the run's limiter, wrapped) and, each time it learns a lower limit, makes the plan
again from it (``relearn``): the switch point and the standard-from point only ever move
earlier, since a slower online rate needs more of the time left. What it learned is kept in
``batches/capacity.json`` (per provider and model), and the next plan of the job starts from it
(``remembered``) rather than from the job's promise. A provider that sends no rate-limit
headers (Gemini) teaches nothing. A batch plan whose rate rests on limits the job gave sends
``SAMPLE_ROWS`` row online at once (``samples``), so its replies teach the run before the switch
point. Rows a batch hands back at the switch point (``handed_back``) go at flex first when the
time left allows (``planner.flex_until``): the standard-from point moves to the latest moment that
leaves time for all of them at the standard tier. It does not send requests, nor move rows: batch
mode does, at the switch point it is given.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import structlog

from batchllm.job import ModelSpec
from batchllm.limits import Grant, Limiter
from batchllm.plan.planner import Plan, flex_until, make_plan
from batchllm.providers.base import RateLimitInfo

if TYPE_CHECKING:
    from batchllm.run.context import RunContext

log = structlog.get_logger("batchllm")


class _Point(Protocol):
    """A moment the run acts at (the batch switch): epoch seconds, movable."""

    at: float


class _Tiers(Protocol):
    standard_from: float | None


class Learner:
    """Follows what a run's limiter learns: remembers it, and moves the plan's points."""

    def __init__(self, plan: Plan | None, run_dir: Path, model: ModelSpec) -> None:
        self.plan = plan
        self.path = run_dir / "batches" / "capacity.json"
        self.key = f"{model.provider}/{model.name}"
        #: the batch switch and the tier fallback to move (set once they exist)
        self.switch: _Point | None = None
        self.tiers: _Tiers | None = None
        self._seen: tuple[float | None, float | None] | None = None
        #: rows moved online at or after the switch point, so far
        self.handed = 0
        #: whether handed-back rows go at flex first (None: no row handed back yet)
        self._flex_first: bool | None = None

    def watch(self, context: RunContext) -> RunContext:
        """The context with its limiter watched (as it is without a plan to move)."""
        if self.plan is None:
            return context
        limiter = _Watched(context.limiter, self)
        self._seen = limiter.limits()
        return dataclasses.replace(context, limiter=limiter)

    def observed(self, rpm: float | None, tpm: float | None) -> None:
        """The limiter's limits after a reply; acts when they changed."""
        if (rpm, tpm) == self._seen:
            return
        self._seen = (rpm, tpm)
        if self.plan is None:
            return
        whole = (None if rpm is None else int(rpm), None if tpm is None else int(tpm))
        remember(self.path, self.key, *whole)
        self.plan = relearn(self.plan, *whole, time.time())
        if self.switch is not None and self.plan.switch_at is not None:
            self.switch.at = min(self.switch.at, self.plan.switch_at)
        if self.tiers is not None:
            self.tiers.standard_from = self._standard_from(time.time())

    def handed_back(self, rows: int) -> None:
        """``rows`` more rows moved online at the switch point: they go at flex until the
        moment that leaves time for all of them at the standard tier, if there is time."""
        self.handed += rows
        if self.tiers is not None:
            self.tiers.standard_from = self._standard_from(time.time())

    def _standard_from(self, now: float) -> float | None:
        """The plan's standard-from point; once rows were handed back, the one for them (the
        plan's when there is no time for flex first)."""
        plan = self.plan
        if plan is None or plan.standard_from is None or plan.situation is None or not self.handed:
            return None if plan is None else plan.standard_from
        later = flex_until(plan.situation, self.handed, now)
        if (later is not None) != self._flex_first:
            self._flex_first = later is not None
            log.info("plan.handed_back", rows=self.handed, flex_first=self._flex_first,
                     standard_in_s=_in(later, now))  # fmt: skip
        return later if later is not None else min(plan.standard_from, now)


class _Watched:
    """A limiter that tells ``Learner`` what the provider's headers taught it."""

    def __init__(self, inner: Limiter, learner: Learner) -> None:
        self.inner, self.learner = inner, learner

    def limits(self) -> tuple[float | None, float | None]:
        return getattr(self.inner, "rpm", None), getattr(self.inner, "tpm", None)

    async def reserve(self, requests: int, tokens: int) -> Grant:
        return await self.inner.reserve(requests, tokens)

    def settle(self, grant: Grant, used_tokens: int) -> None:
        self.inner.settle(grant, used_tokens)

    def observe(self, info: RateLimitInfo) -> None:
        self.inner.observe(info)
        self.learner.observed(*self.limits())

    def rate_limited(self, retry_after_s: float | None) -> None:
        self.inner.rate_limited(retry_after_s)

    @property
    def paused_s(self) -> float:
        return self.inner.paused_s

    @property
    def rate_limited_count(self) -> int:
        return self.inner.rate_limited_count


#: rows a batch plan sends online at once to learn the provider's limits
SAMPLE_ROWS = 1


def samples(plan: Plan) -> int:
    """Rows to send online at the start of a batch plan: its online rate rests on limits the
    job gave (``rpm``, ``tpm``), which one reply's rate-limit headers check before the switch
    point; none when the job gives no limits or the plan has no batch."""
    limits = plan.situation.limits if plan.situation is not None else None
    if not plan.batch or limits is None or (limits.rpm is None and limits.tpm is None):
        return 0
    return SAMPLE_ROWS


def remember(path: Path, key: str, rpm: int | None, tpm: int | None) -> None:
    """Keep the limits learned for ``key`` (provider/model)."""
    known = _read(path)
    known[key] = {"rpm": rpm, "tpm": tpm}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(known, option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)


def remembered(run_dir: Path, provider: str, model: str) -> tuple[int | None, int | None]:
    """The limits an earlier run learned for this provider and model (None: not learned)."""
    found = _read(run_dir / "batches" / "capacity.json").get(f"{provider}/{model}") or {}
    return found.get("rpm"), found.get("tpm")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def relearn(plan: Plan, rpm: int | None, tpm: int | None, now: float) -> Plan:
    """``plan`` with the online capacity of the limits learned (``rpm``, ``tpm``: what the
    provider said, None where it said nothing); the same plan when they change nothing."""
    s = plan.situation
    if s is None or s.limits is None:
        return plan
    learned = dataclasses.replace(s.limits, rpm=lower(s.limits.rpm, rpm),
                                  tpm=lower(s.limits.tpm, tpm))  # fmt: skip
    if learned == s.limits:
        return plan
    again = make_plan(dataclasses.replace(s, rows_per_s=learned.rows_per_s(), limits=learned,
                                          now=now))  # fmt: skip
    switch = _earlier(plan.switch_at, again.switch_at, now)
    standard = _earlier(plan.standard_from, again.standard_from, now)
    log.info("plan.capacity_learned", rpm=learned.rpm, tpm=learned.tpm,
             rows_per_s=round(learned.rows_per_s(), 3), switch_in_s=_in(switch, now),
             standard_in_s=_in(standard, now), problem=again.problem)  # fmt: skip
    if again.problem is not None:
        log.warning("plan.deadline_at_risk", problem=again.problem)
    return dataclasses.replace(plan, online_s=again.online_s, switch_at=switch,
                               standard_from=standard, situation=again.situation)  # fmt: skip


def lower(given: int | None, said: int | None) -> int | None:
    if said is None or said <= 0:
        return given
    return said if given is None else min(given, said)


def _earlier(before: float | None, learned: float | None, now: float) -> float | None:
    """The earlier of two points; a plan that no longer has one wants it now."""
    if before is None:
        return None
    return min(before, learned if learned is not None else now)


def _in(at: float | None, now: float) -> float | None:
    return None if at is None else round(at - now, 3)
