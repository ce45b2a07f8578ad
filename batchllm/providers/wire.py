"""Reading the parts of an HTTP reply every wire format shares: error bodies and wait headers.

Owns the tolerant readers adapters use on error replies and rate-limit headers: a body as JSON
or nothing, an error's message whatever its envelope, a short line from an HTML page,
``retry-after`` in its three spellings, Go-style durations and integer headers. It does not say
what an error *means*; that is ``batchllm.errors.error_for_status`` and each adapter's quirks.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_SCALE = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def json_or_none(body: bytes) -> Any:
    """The body as JSON, or None when it is not JSON (an HTML gateway page, say)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def error_text(data: Any) -> str:
    """The message of an error body, whatever its envelope (object, string, flat)."""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    if error is not None:
        return str(error)
    if isinstance(data, dict) and "message" in data:
        return str(data["message"])
    return str(data)[:300]


def snippet(body: bytes) -> str:
    """A non-JSON error body in one short line: an HTML page's title, else its first words."""
    text = body.decode("utf-8", errors="replace")
    title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    return (title.group(1) if title else " ".join(text.split()))[:200] or "(empty body)"


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``retry-after`` (seconds or an HTTP date)."""
    millis = float_or_none(headers.get("retry-after-ms"))
    if millis is not None and millis >= 0:
        return millis / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = float_or_none(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def parse_duration(value: str | None) -> float | None:
    """Parse Go-style durations (``"12ms"``, ``"1.5s"``, ``"6m0s"``) into seconds."""
    if not value:
        return None
    parts = _DURATION_PART.findall(value)
    if not parts:
        return float_or_none(value)
    return sum(float(number) * _DURATION_SCALE[unit] for number, unit in parts)


def int_or_none(value: str | None) -> int | None:
    """A header value as an int, or None when missing or not a number."""
    number = float_or_none(value)
    return int(number) if number is not None else None


def float_or_none(value: str | None) -> float | None:
    """A header value as a float, or None when missing or not a number."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
