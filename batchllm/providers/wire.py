"""Reading the parts of an HTTP reply every wire format shares: error bodies and wait headers.

Owns the tolerant readers adapters use on replies and headers: a body as JSON or nothing, an
error's message whatever its envelope, a short line from an HTML page, ``retry-after`` in its
three spellings, Go-style durations, numbers in headers and token counts in bodies. Every number
read from a provider is finite, not negative and below a sane bound, or it is not read at all
(``None``, or 0 for a count): no value a server sends can raise here. It does not say what an
error *means* (that is ``batchllm.errors.error_for_status`` and each adapter's quirks), nor which
headers carry rate limits (``batchllm.providers.ratelimits``).
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_SCALE = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
#: the largest number read from a header or a usage block; anything above is garbage
MAX_NUMBER = 1e15
#: the longest wait a header may ask for (a year); anything longer is garbage, not a wait
MAX_WAIT_S = 366 * 86400.0


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
    """Seconds to wait from ``retry-after-ms`` (or Azure's ``x-ms-retry-after-ms``),
    ``retry-after`` (seconds or an HTTP date); None when absent or unreadable (negative, not a
    number, infinite, longer than ``MAX_WAIT_S``)."""
    millis = float_or_none(headers.get("retry-after-ms") or headers.get("x-ms-retry-after-ms"))
    if millis is not None:
        return wait_or_none(millis / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = float_or_none(value)
    if seconds is not None:
        return wait_or_none(seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return wait_or_none(max(when.timestamp() - time.time(), 0.0))


def wait_or_none(seconds: float | None) -> float | None:
    """A wait a provider asked for, if it is one: finite, not negative, at most a year."""
    if seconds is None or not 0.0 <= seconds <= MAX_WAIT_S:
        return None
    return seconds


def parse_duration(value: str | None) -> float | None:
    """Parse Go-style durations (``"12ms"``, ``"1.5s"``, ``"6m0s"``) into seconds."""
    if not value:
        return None
    parts = _DURATION_PART.findall(value[:64])
    if not parts:
        return wait_or_none(float_or_none(value))
    return wait_or_none(sum(float(number) * _DURATION_SCALE[unit] for number, unit in parts))


def int_or_none(value: str | None) -> int | None:
    """A header value as an int, or None when missing or not a sane number."""
    number = float_or_none(value)
    return int(number) if number is not None else None


def float_or_none(value: str | None) -> float | None:
    """A header value as a float, or None when missing, not a number, not finite, negative or
    above ``MAX_NUMBER``."""
    if value is None:
        return None
    try:
        number = float(value.strip()[:64])
    except (ValueError, AttributeError):
        return None
    return number if math.isfinite(number) and 0.0 <= number <= MAX_NUMBER else None


def count(raw: Mapping[str, Any] | None, key: str) -> int:
    """A token count from a usage block: 0 when missing, null or not a sane number."""
    value = raw.get(key) if isinstance(raw, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0
    try:
        number = float_or_none(value) if isinstance(value, str) else float(value)
    except OverflowError:
        return 0
    if number is None or not math.isfinite(number) or not 0 <= number <= MAX_NUMBER:
        return 0
    return int(number)
