"""When a deadline falls: ``06:00`` (the next 06:00, local time) or an ISO date and time.

Owns reading a deadline against a clock; the plan that keeps it is ``batchllm.plan.planner``'s.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def deadline_problem(text: str) -> str | None:
    """Why ``text`` is not a deadline, or None."""
    try:
        deadline_at(text, 0.0)
    except ValueError as exc:
        return str(exc)
    return None


def deadline_at(text: str, now: float) -> float:
    """The deadline as epoch seconds: ``HH:MM`` is the first such time after ``now`` (local
    time); anything else is an ISO 8601 date and time (local time unless it names a zone)."""
    found = _CLOCK.match(text.strip())
    if found is not None:
        start = datetime.fromtimestamp(now).astimezone()
        at = start.replace(hour=int(found[1]), minute=int(found[2]), second=0, microsecond=0)
        if at.timestamp() <= now:
            at += timedelta(days=1)
        return at.timestamp()
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"deadline {text!r}: expected HH:MM or an ISO date and time (2026-12-05T06:00)"
        ) from None
    return (parsed if parsed.tzinfo else parsed.astimezone()).timestamp()
