"""Anthropic Messages usage, in batchllm's one convention.

Anthropic reports ``input_tokens`` *after* the last cache breakpoint only, with cache writes and
reads beside it, not inside it; batchllm's ``Usage.input_tokens`` includes both (the OpenAI
convention, and what genai-prices expects). Thinking tokens are already inside ``output_tokens``.
"""

from __future__ import annotations

from typing import Any

from batchllm.providers.base import Usage


def parse_usage(raw: Any) -> Usage:
    """A Messages ``usage`` block as a ``Usage``; missing or null fields count as 0."""
    if not isinstance(raw, dict):
        return Usage(estimated=True)
    written = int(raw.get("cache_creation_input_tokens") or 0)
    read = int(raw.get("cache_read_input_tokens") or 0)
    details = raw.get("output_tokens_details") or {}
    return Usage(
        input_tokens=int(raw.get("input_tokens") or 0) + written + read,
        output_tokens=int(raw.get("output_tokens") or 0),
        cached_tokens=read,
        cache_write_tokens=written,
        reasoning_tokens=int(details.get("thinking_tokens") or 0),
    )
