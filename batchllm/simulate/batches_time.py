"""How long a simulated batch takes: most on time, a tail of late ones, a few that stall.

Owns ``batch_time``, a draw per (seed, batch number) from the ``[simulate]`` settings: a batch
is stalled (``batch_stall_rate``: it ends at ``batch_window_s`` with every item expired), late
(``batch_late_rate``: uniform between ``batch_late_min_s`` and ``batch_late_max_s``) or on time
(uniform between (1 - ``batch_delay_spread``) x ``batch_delay_s`` and ``batch_delay_s``). With
the defaults every batch takes exactly ``batch_delay_s``. The batch engine and the benchmark's
simulated nights draw from it alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchllm.job.spec import SimulateSpec
from batchllm.simulate.config import unit

_KIND_SALT, _SPAN_SALT = 21, 22


@dataclass(frozen=True, slots=True)
class BatchTime:
    seconds: float
    #: the batch never finishes: at ``seconds`` every item expires
    stalled: bool = False


def batch_time(config: SimulateSpec, number: int) -> BatchTime:
    """The time of the ``number``-th batch of a simulated provider."""
    kind = unit(config.seed, number, _KIND_SALT)
    span = unit(config.seed, number, _SPAN_SALT)
    if kind < config.batch_stall_rate:
        return BatchTime(config.batch_window_s, stalled=True)
    if kind < config.batch_stall_rate + config.batch_late_rate:
        low, high = config.batch_late_min_s, config.batch_late_max_s
        return BatchTime(low + (high - low) * span)
    shortest = config.batch_delay_s * (1 - config.batch_delay_spread)
    return BatchTime(shortest + (config.batch_delay_s - shortest) * span)
