"""Checks of single values in a job file: each returns what is wrong, or None.

Owns the rules a value must follow (names, URLs, encodings, ranges, choices); the reader in
``batchllm.job.file`` turns a problem into a ``JobFileError`` naming the file, section and key.
"""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Callable
from typing import Any

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def encoding(value: str) -> str | None:
    try:
        codecs.lookup(value)
    except LookupError:
        return f"unknown encoding '{value}'"
    return None


def valid_name(value: str) -> str | None:
    return None if _NAME.match(value) else "use letters, digits, '-', '_' and '.' only"


def one_of(options: tuple[str, ...]) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in options else f"'{value}' is not one of {', '.join(options)}"

    return check


def strings(value: list[Any]) -> str | None:
    return None if all(isinstance(v, str) for v in value) else "expected a list of column names"


def url(value: str) -> str | None:
    return None if value.startswith(("http://", "https://")) else "expected an http(s) URL"


def env_name(value: str) -> str | None:
    ok = re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value)
    return None if ok else "expected the NAME of an environment variable, not a key"


def positive(value: float) -> str | None:
    if not math.isfinite(value):
        return f"must be a finite number greater than 0, not {value}"
    return None if value > 0 else "must be greater than 0"


def not_negative(value: float) -> str | None:
    if not math.isfinite(value):
        return f"must be a finite number, not {value}"
    return None if value >= 0 else "must not be negative"


def fraction(value: float) -> str | None:
    return None if 0 <= value <= 1 else "must be between 0 and 1"


def delimiter(value: str) -> str | None:
    """One character other than a quote or a line break (TOML writes a tab as ``"\t"``)."""
    if len(value) != 1 or value in '"\r\n':
        return 'expected one character, such as ",", ";" or "\\t" (a tab)'
    return None


def between(low: int, high: int) -> Callable[[int], str | None]:
    def check(value: int) -> str | None:
        return None if low <= value <= high else f"must be between {low} and {high}"

    return check
