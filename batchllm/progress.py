"""The terminal progress line and the end-of-run summary text."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from batchllm.tally import RunSummary, Tally


class ProgressLine:
    """One self-rewriting line on stderr: rows done, rate, cost so far, ETA."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr  # stderr as it is now
        self.width = 0

    def __call__(self, tally: Tally) -> None:
        elapsed = max(time.monotonic() - tally.started, 1e-9)
        done = tally.done + tally.reused
        rate = tally.done / elapsed
        parts = [f"{done:,}" + (f"/{tally.total:,}" if tally.total else "") + " rows"]
        if tally.total:
            fraction = min(done / tally.total, 1.0)
            filled = int(fraction * 20)
            parts.append(f"[{'#' * filled}{'.' * (20 - filled)}] {fraction:4.0%}")
        parts.append(f"{rate:,.0f} rows/s")
        if tally.failed or tally.invalid:
            parts.append(f"{tally.failed + tally.invalid:,} failed")
        parts.append(money(tally.cost_usd) + _projection(tally, elapsed))
        if tally.total and rate > 0:
            parts.append(f"ETA {_duration(max(tally.total - done, 0) / rate)}")
        line = "  ".join(parts)
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)

    def close(self) -> None:
        if self.width:
            self.stream.write("\n")
            self.stream.flush()


def summary_text(summary: RunSummary) -> str:
    rate = (
        (summary.ok + summary.failed + summary.invalid) / summary.wall_s
        if summary.wall_s > 0
        else 0.0
    )
    lines = [
        f"{summary.job}: {summary.rows:,} rows: {summary.ok:,} ok, {summary.failed:,} failed, "
        + (f"{summary.invalid:,} invalid, " if summary.invalid else "")
        + f"{summary.reused:,} already done"
        + (
            f" ({summary.reused_failed:,} of them failed or invalid)"
            if summary.reused_failed
            else ""
        ),
        f"tokens: {summary.input_tokens:,} in ({summary.cached_tokens:,} cached), "
        f"{summary.output_tokens:,} out; cost {money(summary.cost_usd)} ({summary.price_source})",
        f"wall {_duration(summary.wall_s)} ({rate:,.0f} rows/s); results in {summary.run_dir}",
    ]
    if summary.unresolved:
        lines.append(
            f"{summary.unresolved:,} rows failed or invalid in the results; "
            "--retry-failed sends them again"
        )
    return "\n".join(lines)


def _projection(tally: Tally, elapsed: float) -> str:
    """``→ ~$X total, $Y/min``: the spend so far extrapolated to the rows still to send."""
    per_minute = f", {money(tally.cost_usd / elapsed * 60)}/min"
    if not tally.total or not tally.done:
        return per_minute
    remaining = max(tally.total - tally.done - tally.reused, 0)
    projected = tally.cost_usd + tally.cost_usd / tally.done * remaining
    return f" → ~{money(projected)}{per_minute}"


def money(usd: float) -> str:
    """Dollars with enough digits to see small sums (a test run can cost fractions of a cent)."""
    return f"${usd:,.2f}" if usd >= 100 else f"${usd:,.4f}" if usd >= 0.01 else f"${usd:.6f}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
