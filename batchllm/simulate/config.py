"""How the simulated provider behaves: its settings, scripted faults and reproducible draws.

Owns ``SimConfig`` (the job's ``SimulateSpec`` plus key and format switches), ``Fault`` and the
FIFO that serves scripted faults, and ``unit``, the per-request random draw that makes faults
and latency a function of (seed, request number). The request flow that uses them lives in
``batchllm.simulate.flow``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any

from batchllm.job.spec import SimulateSpec

FAULT_KINDS = frozenset(
    {"429", "500", "502", "503", "529", "hang", "reset", "401", "403", "400"}
    | {"insufficient_quota", "malformed", "empty"}
)
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class SimConfig(SimulateSpec):
    """The job's ``[simulate]`` settings (``SimulateSpec``: latency, limits, fault and batch
    rates, seed, and where each is explained), plus what only a standalone or test simulator
    sets: the key it requires, whether 429s say when to retry, and structured-output support.

    Batch item fates are drawn per (seed, custom_id, attempt), where the attempt counts the
    batches that carried that custom_id, so a resubmitted item may succeed.
    """

    api_key: str | None = None
    retry_after: bool = True
    native_schema: bool = field(
        default=True,
        metadata={"help": "Accept json_schema response_format (--no-native-schema: answer 400)."},
    )
    max_media_bytes: int | None = field(
        default=None,
        metadata={"help": "Answer 400 to an image or document larger than this many bytes."},
    )
    streams_by_default: bool = field(
        default=False,
        metadata={"help": 'Stream replies unless a request says "stream": false.'},
    )
    #: headers added to every reply (a proxy's, or hostile values), over the format's own
    reply_headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_spec(cls, spec: SimulateSpec, **extra: Any) -> SimConfig:
        """A job's ``[simulate]`` settings as a ``SimConfig``, with ``extra`` settings."""
        shared = {f.name: getattr(spec, f.name) for f in fields(SimulateSpec)}
        return cls(**shared, **extra)


@dataclass(frozen=True, slots=True)
class Fault:
    """A scripted fault applied to ``count`` requests once ``after`` more have passed untouched.

    Kinds are FAULT_KINDS. Every wire format answers a fault in its own envelope.
    ``retry_after_s`` is read by "429" only: when given, the 429 says when to retry the format's
    own way (retry-after headers, or Gemini's RetryInfo); when None, it carries no retry hint
    beyond the message's wording.
    "malformed" on a plain-text request cuts the reply in half with finish reason "length".
    "empty" answers 200 with the usage but without the text (Chat ``content`` null, no Responses
    output items, no Anthropic content blocks, no Gemini parts).
    """

    kind: str
    count: int = 1
    retry_after_s: float | None = None
    after: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(
                f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}"
            )
        if self.count < 1:
            raise ValueError("fault count must be at least 1")
        if self.after < 0:
            raise ValueError("fault after must not be negative")


class FaultScript:
    """FIFO of scripted faults; each entry lets ``after`` requests pass, then serves ``count``."""

    __slots__ = ("_queue",)

    def __init__(self) -> None:
        self._queue: deque[tuple[Fault, int, int]] = deque()

    def add(self, faults: list[Fault]) -> None:
        self._queue.extend((fault, fault.after, fault.count) for fault in faults)

    def take(self) -> Fault | None:
        if not self._queue:
            return None
        fault, skip, left = self._queue[0]
        if skip > 0:
            self._queue[0] = (fault, skip - 1, left)
            return None
        if left == 1:
            self._queue.popleft()
        else:
            self._queue[0] = (fault, 0, left - 1)
        return fault

    def clear(self) -> None:
        self._queue.clear()


def mix(seed: int, n: int, salt: int) -> int:
    """splitmix64 over (seed, n, salt): a cheap, well-spread, reproducible draw per request."""
    z = (seed * 0x9E3779B97F4A7C15 + n * 0xBF58476D1CE4E5B9 + salt * 0x94D049BB133111EB) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def unit(seed: int, n: int, salt: int) -> float:
    """``mix`` as a float in [0, 1)."""
    return mix(seed, n, salt) / 2.0**64
