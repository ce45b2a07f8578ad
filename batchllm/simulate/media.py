"""Images and documents in requests the simulated provider receives, in every wire format.

Owns recognising media parts (OpenAI Chat ``image_url`` and ``file``, Responses ``input_image``
and ``input_file``, Anthropic ``image`` and ``document`` blocks, Gemini ``inline_data`` and
``file_data`` in either spelling), checking them the way the providers do (base64 that decodes,
a declared media type the content agrees with and the format accepts, PDFs for documents, an
optional size cap) and charging their tokens by the same published rules the client estimates
with (``batchllm.providers.media_parts``). A URL is not fetched: it is charged as an image of
unknown size; Gemini's ``file_data`` takes only ``gs://`` and Files API URIs, and an OpenAI Chat
``file`` part only bytes, as the providers do. Pure functions; ``flow`` decides what to answer.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from batchllm.media import dimensions, pdf_pages, sniff
from batchllm.providers import media_parts
from batchllm.providers.media_parts import (
    ANTHROPIC,
    CHAT,
    GEMINI,
    GEMINI_URIS,
    LIMITS,
    RESPONSES,
)

_PDF = "application/pdf"


@dataclass(frozen=True, slots=True)
class Inline:
    """One media part as found: its format, kind, declared type, and bytes or URL."""

    style: str
    kind: str
    declared: str | None
    encoded: str | None
    url: str | None = None
    detail: str | None = None


class MediaRejected(Exception):
    """A media part the provider would answer 400 to; the message is that 400's."""


def media_tokens(messages: Sequence[Any], max_bytes: int | None) -> int:
    """The input tokens of every media part in ``messages``; raises ``MediaRejected``."""
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            continue
        for part in content:
            found = _recognise(part) if isinstance(part, Mapping) else None
            if found is not None:
                total += _charge(found, max_bytes)
    return total


def _recognise(part: Mapping[str, Any]) -> Inline | None:
    kind = part.get("type")
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        detail = image.get("detail") if isinstance(image, Mapping) else None
        return _from_url(CHAT, "image", url, detail)
    if kind == "file":
        file = part.get("file")
        data = file.get("file_data") if isinstance(file, Mapping) else None
        return _from_url(CHAT, "document", data, None)
    if kind == "input_image":
        return _from_url(RESPONSES, "image", part.get("image_url"), part.get("detail"))
    if kind == "input_file":
        return _from_url(RESPONSES, "document", part.get("file_data") or part.get("file_url"))
    if kind in ("image", "document"):
        return _anthropic(kind, part.get("source"))
    return _gemini(part)


def _from_url(style: str, kind: str, url: Any, detail: Any = None) -> Inline:
    if not isinstance(url, str):
        raise MediaRejected(f"Invalid {kind} part: expected a URL or a base64 data URL.")
    shown = detail if isinstance(detail, str) else None
    if url.startswith("data:"):
        head, _, encoded = url.partition(",")
        if not head.endswith(";base64"):
            raise MediaRejected(f"Invalid {kind} data URL: expected ';base64,'.")
        return Inline(style, kind, head[5:].removesuffix(";base64"), encoded, detail=shown)
    return Inline(style, kind, None, None, url=url, detail=shown)


def _anthropic(kind: str, source: Any) -> Inline:
    if not isinstance(source, Mapping):
        raise MediaRejected(f"{kind}.source: Field required")
    if source.get("type") == "url":
        return Inline(ANTHROPIC, kind, None, None, url=source.get("url"))
    if source.get("type") != "base64":
        raise MediaRejected(f"{kind}.source.type: Input should be 'base64' or 'url'")
    return Inline(ANTHROPIC, kind, source.get("media_type"), source.get("data"))


def _gemini(part: Mapping[str, Any]) -> Inline | None:
    inline = part.get("inline_data", part.get("inlineData"))
    if isinstance(inline, Mapping):
        declared = inline.get("mime_type", inline.get("mimeType"))
        kind = "document" if declared == _PDF else "image"
        return Inline(GEMINI, kind, declared, inline.get("data"))
    file = part.get("file_data", part.get("fileData"))
    if isinstance(file, Mapping):
        declared = file.get("mime_type", file.get("mimeType"))
        kind = "document" if declared == _PDF else "image"
        return Inline(GEMINI, kind, declared, None, url=file.get("file_uri", file.get("fileUri")))
    return None


def _charge(found: Inline, max_bytes: int | None) -> int:
    if found.encoded is None:
        _check_url(found)
        if found.kind == "document":
            return media_parts.document_tokens(found.style, 1)
        return media_parts.image_tokens(found.style, None, None, found.detail)
    data = _decode(found)
    actual = sniff(data[:16])
    if actual is None or (found.declared is not None and found.declared != actual):
        raise MediaRejected(
            f"The {found.kind} was specified as {found.declared} but its content is "
            f"{actual or 'not a supported image or PDF'}."
        )
    if max_bytes is not None and len(data) > max_bytes:
        raise MediaRejected(f"{found.kind} exceeds {max_bytes} bytes maximum: {len(data)} bytes")
    if found.kind == "document":
        if actual != _PDF:
            raise MediaRejected(f"Documents must be PDF, not {actual}.")
        return media_parts.document_tokens(found.style, pdf_pages(data))
    if actual not in LIMITS[found.style].image_types:
        raise MediaRejected(f"Unsupported image type {actual}.")
    size = dimensions(data[: 64 * 1024], actual)
    width, height = size if size else (None, None)
    return media_parts.image_tokens(found.style, width, height, found.detail)


def _check_url(found: Inline) -> None:
    """A URL part the format takes: Gemini reads only Cloud Storage and Files API URIs, and an
    OpenAI Chat ``file`` part carries its bytes, never a URL."""
    url = found.url if isinstance(found.url, str) else ""
    if found.style == GEMINI:
        if not url.startswith(GEMINI_URIS):
            raise MediaRejected(f"Unsupported file uri: {url[:80]!r}; use the File API or gs://.")
    elif found.style == CHAT and found.kind == "document":
        raise MediaRejected("file.file_data: expected a base64 data URL, not a URL.")
    elif not url.startswith(("http://", "https://")):
        raise MediaRejected(f"Invalid {found.kind} URL: {url[:80]!r}.")


def _decode(found: Inline) -> bytes:
    if not isinstance(found.encoded, str):
        raise MediaRejected(f"{found.kind} data: expected a base64 string")
    try:
        return base64.b64decode(found.encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaRejected(f"Invalid base64 {found.kind} data: {exc}") from exc
