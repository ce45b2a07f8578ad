"""Images and documents in each wire format: part shapes, the providers' limits, token rules.

Owns where a row's media sit in its prompt (a marker the template functions print, split out
here), each format's parts (OpenAI Chat ``image_url`` and ``file``, Responses ``input_image`` and
``input_file``, Anthropic ``image`` and ``document`` blocks, Gemini ``inline_data`` and
``file_data``), the limits checked before a row is sent (accepted types, bytes per image and per
request, pixels, counts, PDF pages) and the published token rules the estimate, the limiter and
the budget reserve by. Reading and resizing the bytes is ``batchllm.media``.

Limits and rules (providers' documentation, 2026; an OpenAI-compatible server gets OpenAI's):

- OpenAI (Chat and Responses): PNG, JPEG, WebP, non-animated GIF; 20 MB an image, 500 images and
  50 MB a request; PDFs inline up to 32 MB and 100 pages. Image tokens by tiles: ``detail="low"``
  85; otherwise fit in 2048×2048, shortest side to 768, then 85 + 170 per 512-px tile.
- Anthropic: PNG, JPEG, WebP, GIF; 5 MB and 8000×8000 px an image (2000×2000 when a request has
  more than 20), 100 images and 32 MB a request; PDFs 32 MB and 100 pages. Image tokens
  width × height / 750 after fitting the long edge to 1568 px (at most 1600).
- Gemini: PNG, JPEG, WebP, HEIC, HEIF; inline data up to 20 MB a request, 3600 images; PDFs up to
  1000 pages. An image both sides ≤ 384 px is 258 tokens, a larger one 258 per 768×768 tile; a PDF
  page is 258 tokens.

PDF pages, per page (``document_tokens``):

- Anthropic: 2,250 tokens, the middle of the 1,500–3,000 a page its PDF support page gives (each
  page is sent as its extracted text and an image of the page).
- OpenAI: no published figure; a page is sent as its extracted text and an image of the page,
  estimated as one letter-size page image by the tile rule (768×994: 4 tiles, 765 tokens) plus
  about 250 tokens of text, 1,000 in all.
- Gemini: 258 tokens, as its document understanding page gives (a page is tokenized as an
  image).

All are estimates for the limiter, the budget and ``estimate``: the pilot calibrates them like
text, and the reply's usage settles every row.

URLs. Where a format takes a URL for a part, the URL is sent as given (OpenAI ``image_url`` and
Responses ``input_image`` / ``input_file``, Anthropic ``url`` sources, Gemini ``file_data`` for
``gs://`` and Files API URIs); where it does not (OpenAI Chat ``file`` parts for PDFs, Gemini with
a plain http(s) URL), or ``[input] fetch_urls`` asks for it, the ref is marked to be fetched when
its row is sent (``batchllm.media_fetch``) and then checked against these limits like a file. An
image whose size is unknown until the provider fetches it is estimated at the format's largest
charge for one image: OpenAI 1,445 tokens (2048×768, 8 tiles; 85 with ``detail="low"``),
Anthropic 1,600; Gemini's rule has no largest, so 1536×1536 (4 tiles, 1,032 tokens).
"""

from __future__ import annotations

import math
import mimetypes
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from batchllm.errors import RowError
from batchllm.media import DOCUMENT, MediaRef, can_resize, load_base64

CHAT, RESPONSES, ANTHROPIC, GEMINI = "chat", "responses", "anthropic", "gemini"
_STYLE = {"openai-responses": RESPONSES, "anthropic": ANTHROPIC, "gemini": GEMINI}
_MARK = re.compile("\ue000(\\d+)\ue001")
_MB = 1024 * 1024
#: the size an image of unknown size is taken as: the format's largest charge (see above)
_UNKNOWN_SIZE = {CHAT: (2048, 768), RESPONSES: (2048, 768), ANTHROPIC: (1568, 1568),
                 GEMINI: (1536, 1536)}  # fmt: skip
#: Gemini takes these URLs in ``file_data``: Cloud Storage and its own Files API
GEMINI_URIS = ("gs://", "https://generativelanguage.googleapis.com/")
_OPENAI_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})


@dataclass(frozen=True, slots=True)
class Limits:
    """One format's limits on the media of a request."""

    name: str
    image_types: frozenset[str]
    image_bytes: int | None
    image_side: int | None
    images: int
    request_bytes: int
    pdf_pages: int
    #: (more than this many images, then this many px a side)
    crowded: tuple[int, int] | None = None


LIMITS = {
    CHAT: Limits("OpenAI Chat", _OPENAI_TYPES, 20 * _MB, None, 500, 50 * _MB, 100),
    RESPONSES: Limits("OpenAI Responses", _OPENAI_TYPES, 20 * _MB, None, 500, 50 * _MB, 100),
    ANTHROPIC: Limits(
        "Anthropic", _OPENAI_TYPES, 5 * _MB, 8000, 100, 32 * _MB, 100, crowded=(20, 2000)
    ),
    GEMINI: Limits(
        "Gemini",
        frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"}),
        None,
        None,
        3600,
        20 * _MB,
        1000,
    ),
}
#: a PDF page's input tokens (sources above)
_PAGE_TOKENS = {CHAT: 1000, RESPONSES: 1000, ANTHROPIC: 2250, GEMINI: 258}


def style_of(provider: str) -> str:
    """The media format a provider speaks: its own, or OpenAI Chat's."""
    return _STYLE.get(provider, CHAT)


def marker(index: int) -> str:
    """What the template prints where the row's ``index``-th medium sits."""
    return f"\ue000{index}\ue001"


def strip_markers(text: str) -> str:
    return _MARK.sub("", text)


def segments(text: str, media: Sequence[MediaRef]) -> Iterator[str | MediaRef]:
    """The text between the markers, and the media where they are."""
    at = 0
    for found in _MARK.finditer(text):
        if found.start() > at:
            yield text[at : found.start()]
        yield media[int(found.group(1))]
        at = found.end()
    if at < len(text):
        yield text[at:]


# -- token rules -------------------------------------------------------------------------------


def image_tokens(style: str, width: int | None, height: int | None, detail: str | None) -> int:
    """An image's input tokens by the format's published rule (the format's largest charge
    when the size is unknown)."""
    if width is None or height is None:
        width, height = _UNKNOWN_SIZE[style]
    w, h = width, height
    if style == ANTHROPIC:
        fit = min(1.0, 1568 / max(w, h))
        return min(math.ceil(round(w * fit) * round(h * fit) / 750), 1600)
    if style == GEMINI:
        return 258 if w <= 384 and h <= 384 else math.ceil(w / 768) * math.ceil(h / 768) * 258
    if detail == "low":
        return 85
    fit = min(1.0, 2048 / max(w, h))
    fitted_w, fitted_h = w * fit, h * fit
    shrink = min(1.0, 768 / min(fitted_w, fitted_h))
    tiles = math.ceil(fitted_w * shrink / 512) * math.ceil(fitted_h * shrink / 512)
    return 85 + 170 * tiles


def document_tokens(style: str, pages: int | None) -> int:
    """A PDF's input tokens, by pages (one when unknown)."""
    return _PAGE_TOKENS[style] * (pages or 1)


def media_tokens(style: str, media: Sequence[MediaRef]) -> int:
    """The input tokens of a request's media."""
    total = 0
    for ref in media:
        if ref.kind == DOCUMENT:
            total += document_tokens(style, ref.pages)
        else:
            total += image_tokens(style, ref.width, ref.height, ref.detail)
    return total


# -- limits ------------------------------------------------------------------------------------


def admit(
    style: str, media: Sequence[MediaRef], resize: bool, fetch_urls: bool = False
) -> tuple[MediaRef, ...]:
    """The media as they will be sent (over-limit images downscaled when ``resize``; URLs the
    format cannot take, or every URL when ``fetch_urls``, marked to be fetched), or a
    ``RowError`` naming the first one the provider would refuse."""
    media = [_url_plan(style, ref, resize, fetch_urls) if ref.is_url else ref for ref in media]
    limits = LIMITS[style]
    images = sum(1 for ref in media if ref.kind != DOCUMENT)
    if images > limits.images:
        raise RowError(f"{images} images; {limits.name} takes at most {limits.images}")
    side = limits.image_side
    if limits.crowded is not None and images > limits.crowded[0]:
        side = limits.crowded[1]
    sent = tuple(_admit_one(limits, ref, side, resize) for ref in media)
    total = sum(math.ceil((ref.size or 0) * 4 / 3) for ref in sent)
    if total > limits.request_bytes:
        raise RowError(
            f"the media of this row are {total / _MB:.1f} MB encoded, over {limits.name}'s "
            f"{limits.request_bytes // _MB} MB a request"
        )
    return sent


def takes_url(style: str, ref: MediaRef) -> bool:
    """Whether the format takes this URL as a URL part (else its bytes are fetched and sent)."""
    if style == GEMINI:
        return ref.source.startswith(GEMINI_URIS)
    return not (style == CHAT and ref.kind == DOCUMENT)


def _url_plan(style: str, ref: MediaRef, resize: bool, fetch_urls: bool) -> MediaRef:
    """A URL as given, or marked to be fetched when its row is sent."""
    if ref.source.startswith("gs://"):
        if style != GEMINI:
            raise RowError(f"{ref.source}: only Gemini reads gs:// URIs; give an http(s) URL")
        return ref
    if fetch_urls or not takes_url(style, ref):
        return replace(ref, fetch=style, may_resize=resize)
    return ref


def _admit_one(limits: Limits, ref: MediaRef, side: int | None, resize: bool) -> MediaRef:
    where = ref.source or "the image in this row"
    if ref.kind == DOCUMENT:
        if ref.pages is not None and ref.pages > limits.pdf_pages:
            raise RowError(
                f"{where}: {ref.pages} pages, over {limits.name}'s {limits.pdf_pages} a PDF"
            )
        return ref
    if ref.media_type is not None and ref.media_type not in limits.image_types:
        raise RowError(f"{where}: {limits.name} does not take {ref.media_type} images")
    target = _fit(ref, limits.image_bytes, side)
    if target is None:
        return ref
    if not resize:
        raise RowError(f"{where}: {_over(ref, limits, side)} (set [input] resize_images = true)")
    if not can_resize():
        raise RowError(f"{where}: downscaling needs Pillow: pip install 'batchllm-jobs[images]'")
    return ref.resized(*target)


def _fit(ref: MediaRef, max_bytes: int | None, side: int | None) -> tuple[int, int] | None:
    """The size to shrink an image to, or None when it is within the limits."""
    if ref.width is None or ref.height is None:
        return None
    scale = 1.0
    if side is not None and max(ref.width, ref.height) > side:
        scale = side / max(ref.width, ref.height)
    if max_bytes is not None and ref.size is not None and ref.size > max_bytes:
        scale = min(scale, 0.9 * math.sqrt(max_bytes / ref.size))
    if scale >= 1.0:
        return None
    return max(1, round(ref.width * scale)), max(1, round(ref.height * scale))


def _over(ref: MediaRef, limits: Limits, side: int | None) -> str:
    if side is not None and max(ref.width or 0, ref.height or 0) > side:
        return f"{ref.width}×{ref.height} px, over {limits.name}'s {side} px a side"
    most = (limits.image_bytes or 0) // _MB
    return f"{(ref.size or 0) / _MB:.1f} MB, over {limits.name}'s {most} MB an image"


# -- parts -------------------------------------------------------------------------------------


def chat_content(text: str, media: Sequence[MediaRef]) -> str | list[dict[str, Any]]:
    """An OpenAI Chat message's content: the text, or text, ``image_url`` and ``file`` parts."""
    if not media:
        return text
    return [_chat_part(item) for item in segments(text, media)]


def _chat_part(item: str | MediaRef) -> dict[str, Any]:
    if isinstance(item, str):
        return {"type": "text", "text": item}
    if item.kind == DOCUMENT:
        return {"type": "file", "file": {"filename": item.filename, "file_data": _data_url(item)}}
    image: dict[str, Any] = {"url": item.source if _by_url(item) else _data_url(item)}
    if item.detail is not None:
        image["detail"] = item.detail
    return {"type": "image_url", "image_url": image}


def responses_content(text: str, media: Sequence[MediaRef]) -> str | list[dict[str, Any]]:
    """A Responses input message's content: ``input_text``, ``input_image``, ``input_file``."""
    if not media:
        return text
    return [_responses_part(item) for item in segments(text, media)]


def _responses_part(item: str | MediaRef) -> dict[str, Any]:
    if isinstance(item, str):
        return {"type": "input_text", "text": item}
    if item.kind == DOCUMENT:
        if _by_url(item):
            return {"type": "input_file", "file_url": item.source}
        return {"type": "input_file", "filename": item.filename, "file_data": _data_url(item)}
    url = item.source if _by_url(item) else _data_url(item)
    return {"type": "input_image", "image_url": url, "detail": item.detail or "auto"}


def anthropic_content(text: str, media: Sequence[MediaRef]) -> str | list[dict[str, Any]]:
    """An Anthropic message's content: ``text``, ``image`` and ``document`` blocks."""
    if not media:
        return text
    return [_anthropic_block(item) for item in segments(text, media)]


def _anthropic_block(item: str | MediaRef) -> dict[str, Any]:
    if isinstance(item, str):
        return {"type": "text", "text": item}
    if _by_url(item):
        source: dict[str, Any] = {"type": "url", "url": item.source}
    else:
        data, media_type = load_base64(item)
        source = {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "document" if item.kind == DOCUMENT else "image", "source": source}


def gemini_parts(text: str, media: Sequence[MediaRef]) -> list[dict[str, Any]]:
    """A Gemini turn's parts: ``text``, ``inline_data`` and ``file_data``."""
    if not media:
        return [{"text": text}]
    return [_gemini_part(item) for item in segments(text, media)]


def _gemini_part(item: str | MediaRef) -> dict[str, Any]:
    if isinstance(item, str):
        return {"text": item}
    if _by_url(item):
        guessed = mimetypes.guess_type(item.source)[0]
        fallback = "application/pdf" if item.kind == DOCUMENT else "image/jpeg"
        return {"file_data": {"mime_type": guessed or fallback, "file_uri": item.source}}
    data, media_type = load_base64(item)
    return {"inline_data": {"mime_type": media_type, "data": data}}


def _by_url(ref: MediaRef) -> bool:
    """Whether the part carries the URL rather than the bytes."""
    return ref.is_url and ref.fetch is None


def _data_url(ref: MediaRef) -> str:
    data, media_type = load_base64(ref)
    return f"data:{media_type};base64,{data}"
