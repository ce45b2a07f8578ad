"""The provider seam: provider-neutral values and the adapter protocol.

An adapter is sans-I/O: ``build`` turns a ``Request`` into an ``HttpCall`` and ``parse`` turns
the HTTP reply into a ``Completion`` or raises a typed ``ProviderError``. Provider JSON never
leaves its adapter. The one function that sends HTTP lives in ``batchllm.providers.http``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from batchllm.render import Request


@dataclass(frozen=True, slots=True)
class HttpCall:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts in one convention: ``input_tokens`` includes cached and cache-write tokens,
    ``output_tokens`` includes reasoning tokens."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    finish_reason: str | None
    usage: Usage
    model: str
    request_id: str | None
    #: the service tier the provider says it served the request at (None: it did not say)
    service_tier: str | None = None


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What a reply's headers said about the account's limits (any field may be missing)."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None
    #: on a 429, the limit it said was passed ("tokens", "requests"), when it said
    limited: str | None = None


class Adapter(Protocol):
    """One wire format, without I/O. Made by the registry's factory from (base_url, api_key);
    holds no state that changes between requests, so one adapter serves every worker."""

    #: the wire format's name, as in logs
    name: str

    def build(self, request: Request) -> HttpCall:
        """The HTTP call for ``request``: URL, headers (with the key) and JSON body."""
        ...

    def parse(self, status: int, headers: Mapping[str, str], body: bytes) -> Completion:
        """The reply as a ``Completion``; raises the ``ProviderError`` subclass a failed one
        stands for (``batchllm.errors.error_for_status`` reads the common statuses)."""
        ...

    def rate_limits(self, headers: Mapping[str, str]) -> RateLimitInfo:
        """What the reply's headers say about the account's limits (empty when nothing)."""
        ...


_KEYLIKE = re.compile(r"\b(sk|key|api)[-_][A-Za-z0-9*_\-.]{4,}", re.IGNORECASE)


def redact(text: str, secret: str | None = None) -> str:
    """Remove API keys (and anything shaped like one) from a provider's message."""
    if secret:
        text = text.replace(secret, "***")
    return _KEYLIKE.sub(lambda m: m.group(1) + "-***", text)
