"""The seam between the simulated provider and the wire formats it speaks.

Owns the format-neutral values a request flows through (``Incoming`` in, ``SimRequest`` parsed,
``SimUsage`` and ``Reply`` out, ``ErrorReply`` for anything but a 200) and the ``WireFormat``
protocol each format module implements: OpenAI Chat (``wire``), OpenAI Responses
(``responses``), Anthropic Messages (``anthropic``), Gemini
(``gemini``) and Azure OpenAI (``azure``). A parsed request is always in the
Chat shape (chat messages, a Chat ``response_format``), so content generation, token counting,
rate limiting and faults are written once, in ``batchllm.simulate.flow``, for every format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from batchllm.simulate.content import Reply
from batchllm.simulate.limits import QuotaState, Rejection

BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


@dataclass(frozen=True, slots=True)
class Incoming:
    """One HTTP request as the simulator received it, without aiohttp objects."""

    path: Mapping[str, str]
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    #: 32 hex digits, deterministic per request number; formats dress it as their request id
    request_id: str
    #: 16 hex digits for the reply's own id (chatcmpl-..., msg_..., resp_...)
    reply_id: str


@dataclass(frozen=True, slots=True)
class SimRequest:
    """The parts of a request the simulator uses, in the Chat shape whatever the wire format."""

    model: str
    messages: list[Any]
    max_tokens: int | None
    response_format: Any
    #: text of the prompt prefix the request asks to cache (Anthropic ``cache_control``)
    cache_prefix: str | None = None
    #: input tokens of the request's images and documents (``batchllm.simulate.media``)
    media_tokens: int = 0


@dataclass(frozen=True, slots=True)
class SimUsage:
    """Token counts of one reply; ``prompt_tokens`` includes cache reads and writes."""

    prompt_tokens: int
    completion_tokens: int
    cache_read: int = 0
    cache_write: int = 0


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """A ready-made error response, with any headers it needs (retry-after on a 429)."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


class WireFormat(Protocol):
    """One provider's wire format: pure functions from neutral values to bodies and headers."""

    #: where a request carries its JSON Schema, named in the 400 of a server without support
    schema_field: str

    def model_of(self, incoming: Incoming) -> str:
        """The model a request names, for errors about requests not otherwise parsed."""
        ...

    def authorize(self, expected: str | None, incoming: Incoming) -> ErrorReply | None:
        """The error for a wrong or missing key, or None (also when no key is required)."""
        ...

    def parse(self, incoming: Incoming) -> SimRequest | ErrorReply:
        """The request, or the 400 the provider answers to it."""
        ...

    def bad_request(self, message: str, param: str | None, incoming: Incoming) -> ErrorReply:
        """A 400 in this format's envelope (e.g. structured output unsupported)."""
        ...

    def reply(
        self, request: SimRequest, reply: Reply, usage: SimUsage, incoming: Incoming
    ) -> bytes:
        """The 200 body; ``reply.finish_reason`` is "stop" or "length"."""
        ...

    def error(self, kind: str, incoming: Incoming) -> ErrorReply:
        """The reply to a scripted or random error: "500", "502" (an HTML page), "502-json",
        "503", "529", "400", "401", "403" or "insufficient_quota"."""
        ...

    def rate_limited(
        self, rejection: Rejection, model: str, with_wait: bool, incoming: Incoming
    ) -> ErrorReply:
        """The 429 for ``rejection``; ``with_wait``: say when to retry the format's own way."""
        ...

    def headers(
        self, incoming: Incoming, processing_ms: int, quotas: Sequence[QuotaState]
    ) -> dict[str, str]:
        """Headers on every reply: request id and the format's rate-limit headers."""
        ...
