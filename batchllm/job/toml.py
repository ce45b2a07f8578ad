"""The generic half of reading a job file: TOML in, and a reader that takes checked values out of
its tables with errors naming the file, the section and the key.

``TableReader`` knows types, required keys, unknown keys (with a did-you-mean) and per-value
checks; what the sections of a job file are, and what each key means, is ``job.file``'s.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from batchllm.errors import JobFileError

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "a table",
    bool: "true or false",
}


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML of ``path``; ``JobFileError`` when it is missing, unreadable or invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobFileError(f"{path}: job file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobFileError(f"{path}: cannot read job file: {exc}") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise JobFileError(f"{path}: invalid TOML: {exc}") from exc


class TableReader:
    """Takes checked values out of the parsed TOML of the file at ``path``."""

    def __init__(self, path: Path, raw: dict[str, Any]) -> None:
        self.path = path
        self.base = path.parent
        self.raw = raw

    def fail(self, where: str, message: str) -> JobFileError:
        return JobFileError(f"{self.path}: {where}: {message}")

    def section(self, name: str, *, required: bool = False) -> dict[str, Any]:
        """The table ``[name]`` (empty when absent and not required)."""
        value = self.raw.get(name)
        if value is None:
            if required:
                raise JobFileError(f"{self.path}: missing section [{name}]")
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"[{name}]", "must be a table")
        return value

    def check_keys(self, name: str, table: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
        """Refuse a key (or, for ``name == ""``, a section) not in ``allowed``, with a hint."""
        for key in table:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                if not name:
                    also = f" (did you mean [{hint[0]}]?)" if hint else ""
                    raise JobFileError(f"{self.path}: unknown section [{key}]{also}")
                also = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise self.fail(f"[{name}]", f"unknown key '{key}'{also}")

    def take(
        self,
        section: str,
        table: Mapping[str, Any],
        key: str,
        kind: type | tuple[type, ...],
        *,
        required: bool = False,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """``table[key]`` if it is of ``kind`` and passes ``check``; None when absent."""
        if key not in table:
            if required:
                raise self.fail(f"[{section}]", f"missing key '{key}'")
            return None
        value = table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        wrong_bool = isinstance(value, bool) and bool not in kinds
        if wrong_bool or not isinstance(value, kinds):
            named = [k for k in kinds if not (k is int and float in kinds)]  # a number is either
            names = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in named)
            raise self.fail(f"[{section}] {key}", f"expected {names}, got {value!r}")
        problem = check(value) if check else None
        if problem:
            raise self.fail(f"[{section}] {key}", problem)
        return value
