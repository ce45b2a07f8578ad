"""How the simulated provider behaves: its settings, scripted faults and reproducible draws.

Owns ``SimConfig`` (latency, limits, fault rates, key, seed), ``Fault`` and the FIFO that serves
scripted faults, and ``unit``, the per-request random draw that makes faults and latency a function
of (seed, request number). The request flow that uses them lives in ``batchllm.simulate.flow``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

FAULT_KINDS = frozenset(
    {"429", "500", "502", "503", "529", "hang", "reset", "401", "403", "400"}
    | {"insufficient_quota", "malformed"}
)
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class SimConfig:
    """How the simulated provider behaves; rates are fractions of requests (any format).

    error_rate splits evenly over 500, 502 and 503 (half the 502s are a Cloudflare HTML page);
    error, hang and reset rates are exclusive slices of one draw, so their sum is at most 1.
    malformed_rate is a separate draw that applies to JSON (schema or json_object) replies only.
    Batch items are drawn apart from online requests: batch_expire_rate and batch_error_rate are
    exclusive slices of one draw per (seed, custom_id, attempt), where the attempt counts the
    batches that carried that custom_id, so a resubmitted item may succeed.
    """

    rpm: int | None = None
    tpm: int | None = None
    latency_ms: float = 50.0
    jitter_ms: float = 20.0
    error_rate: float = 0.0
    hang_rate: float = 0.0
    reset_rate: float = 0.0
    malformed_rate: float = 0.0
    api_key: str | None = None
    retry_after: bool = True
    seed: int = 0
    #: False: answer a native structured-output request with 400, like servers without support
    native_schema: bool = True
    #: Batch APIs: seconds from a batch's creation to its end (a cancel ends it sooner)
    batch_delay_s: float = 1.0
    #: shares of batch items that expire unanswered, or are answered 500, drawn per attempt
    batch_expire_rate: float = 0.0
    batch_error_rate: float = 0.0

    def __post_init__(self) -> None:
        rates = (self.error_rate, self.hang_rate, self.reset_rate, self.malformed_rate)
        if any(not 0.0 <= r <= 1.0 for r in rates):
            raise ValueError("fault rates must be between 0 and 1")
        if self.error_rate + self.hang_rate + self.reset_rate > 1.0:
            raise ValueError("error_rate + hang_rate + reset_rate must not exceed 1")
        if any(limit is not None and limit < 1 for limit in (self.rpm, self.tpm)):
            raise ValueError("rpm and tpm must be positive or None")
        self._check_batch()

    def _check_batch(self) -> None:
        rates = (self.batch_expire_rate, self.batch_error_rate)
        if any(not 0.0 <= r <= 1.0 for r in rates) or sum(rates) > 1.0:
            raise ValueError("batch rates must be between 0 and 1, and their sum at most 1")
        if self.batch_delay_s < 0:
            raise ValueError("batch_delay_s must not be negative")


@dataclass(frozen=True, slots=True)
class Fault:
    """A scripted fault applied to ``count`` requests once ``after`` more have passed untouched.

    Kinds are FAULT_KINDS. Every wire format answers a fault in its own envelope.
    ``retry_after_s`` is read by "429" only: when given, the 429 says when to retry the format's
    own way (retry-after headers, or Gemini's RetryInfo); when None, it carries no retry hint
    beyond the message's wording.
    "malformed" on a plain-text request cuts the reply in half with finish reason "length".
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
