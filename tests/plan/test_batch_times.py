"""The simulator's batch times: a configurable mix of on-time, late and stalled batches."""

from __future__ import annotations

from dataclasses import replace

from batchllm.bench.deadline import HOUR, TIMES
from batchllm.job.spec import SimulateSpec
from batchllm.simulate.batches_time import batch_time


def test_by_default_every_batch_takes_batch_delay_s() -> None:
    """No tail configured: each batch takes exactly ``batch_delay_s``, none stalls."""
    spec = SimulateSpec(batch_delay_s=0.5)
    assert {batch_time(spec, n) for n in range(50)} == {batch_time(spec, 0)}
    assert batch_time(spec, 0).seconds == 0.5 and not batch_time(spec, 0).stalled


def test_the_mix_follows_the_rates_and_ranges() -> None:
    """80% within the on-time range, ~15% late within their range, ~5% stalled to the window."""
    draws = [batch_time(replace(TIMES, seed=n), 0) for n in range(2000)]
    stalled = [d for d in draws if d.stalled]
    late = [d for d in draws if not d.stalled and d.seconds > HOUR]
    on_time = [d for d in draws if not d.stalled and d.seconds <= HOUR]
    assert all(d.seconds == 24 * HOUR for d in stalled)
    assert all(2 * HOUR <= d.seconds <= 6 * HOUR for d in late)
    assert all(d.seconds >= 0.1 * HOUR for d in on_time)
    assert 0.03 < len(stalled) / 2000 < 0.07
    assert 0.12 < len(late) / 2000 < 0.18
