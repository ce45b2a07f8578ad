"""Logging setup: readable on a terminal, one JSON object per line otherwise.

Configured once, by the CLI. A processor scrubs the API key from every event, whatever the level.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_secrets: list[str] = []


def add_secret(value: str | None) -> None:
    """Never let ``value`` reach a log line."""
    if value and value not in _secrets:
        _secrets.append(value)


def _scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if _secrets:
        for key, value in event.items():
            if isinstance(value, str):
                for secret in _secrets:
                    value = value.replace(secret, "***")
                event[key] = value
    return event


def configure(fmt: str = "auto", quiet: bool = False, verbose: bool = False) -> None:
    """``fmt`` is ``auto`` (console on a TTY, else JSON), ``console`` or ``json``."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _scrub,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
