"""Media URLs fetched when their row is sent, for parts a provider cannot take as a URL.

Owns fetching the references ``media_parts.admit`` marked (``MediaRef.fetch``): one GET each, over
the run's HTTP session but without its endpoint pool, within the request timeout, reading at most
the format's bytes a request (a larger reply is cut off, not read to its end). The media type is
sniffed from the bytes, never taken from ``Content-Type``; the bytes are then checked against the
format's limits like a file's (downscaled when ``[input] resize_images`` allows), and the request's
token estimate takes the image's real size in place of the unknown-size figure.

Redirects are followed (at most ``MAX_REDIRECTS``) only to the same host, and from http to https,
never back: a row names the host its media come from, and a server there cannot steer the fetch
to a host the input never named (an internal address, say), nor down to plain HTTP. A URL that
cannot be fetched (an HTTP error, a redirect elsewhere, a timeout, too large, not an image or
PDF) is ``MediaUnavailable``: its row fails naming the URL and the reason, and the run goes on
(no attempt was made, so the outage watch does not count it). It is not retried within the run;
``--retry-failed`` sends the row again.

It does not decide which URLs are fetched (``batchllm.providers.media_parts``) nor read files
(``batchllm.media``).
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urljoin, urlsplit

import aiohttp

from batchllm.errors import ProviderError, RowError
from batchllm.media import MediaRef, fetched
from batchllm.providers import media_parts
from batchllm.render import Request

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


class MediaUnavailable(ProviderError):
    """A media URL that could not be fetched, or whose content cannot be sent."""

    kind = "media"


async def fetch_media(
    request: Request, session: aiohttp.ClientSession, timeout_s: float
) -> Request:
    """``request`` with its marked URLs fetched and checked; itself when none is marked."""
    marked = [ref.fetch for ref in request.media if ref.fetch is not None and ref.is_url]
    if not marked:
        return request
    style = marked[0]
    cap = media_parts.LIMITS[style].request_bytes
    media: list[MediaRef] = []
    try:
        for ref in request.media:
            if ref.fetch is not None and ref.is_url:
                ref = fetched(ref, await fetch_url(session, ref.source, cap, timeout_s))
            media.append(ref)
        resize = any(ref.may_resize for ref in request.media)
        sent = media_parts.admit(style, media, resize)
    except RowError as exc:
        raise MediaUnavailable(str(exc)) from None
    guessed = media_parts.media_tokens(style, request.media)
    known = media_parts.media_tokens(style, sent)
    tokens = max(1, request.est_input_tokens - guessed + known)
    return replace(request, media=sent, est_input_tokens=tokens)


async def fetch_url(session: aiohttp.ClientSession, url: str, cap: int, timeout_s: float) -> bytes:
    """The bytes at ``url`` (at most ``cap``), or ``MediaUnavailable`` naming it and why."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    at = url
    try:
        for _ in range(MAX_REDIRECTS + 1):
            async with session.get(
                at, allow_redirects=False, timeout=timeout, middlewares=()
            ) as response:
                if response.status in _REDIRECTS:
                    at = _redirect(url, at, response.headers.get("Location"))
                    continue
                if response.status != 200:
                    raise MediaUnavailable(f"{url}: HTTP {response.status} {response.reason}")
                return await _read(response, url, cap)
        raise MediaUnavailable(f"{url}: more than {MAX_REDIRECTS} redirects")
    except TimeoutError:
        raise MediaUnavailable(f"{url}: not fetched within {timeout_s:g} s") from None
    except aiohttp.ClientError as exc:
        raise MediaUnavailable(f"{url}: fetch failed: {type(exc).__name__}: {exc}") from None


def _redirect(url: str, at: str, location: str | None) -> str:
    """Where a redirect leads, when it stays on the URL's host (http may become https)."""
    if not location:
        raise MediaUnavailable(f"{url}: a redirect without a Location")
    target = urljoin(at, location)
    before, after = urlsplit(at), urlsplit(target)
    followed = before.hostname == after.hostname
    if before.scheme == after.scheme:
        followed = followed and before.port == after.port
    elif (before.scheme, after.scheme) != ("http", "https"):
        followed = False
    if not followed:
        raise MediaUnavailable(f"{url}: redirected to {target} (another host): not followed")
    return target


async def _read(response: aiohttp.ClientResponse, url: str, cap: int) -> bytes:
    """The body, stopped as soon as it passes ``cap`` bytes."""
    too_large = f"{url}: larger than {cap:,} bytes, the most one request can carry"
    if response.content_length is not None and response.content_length > cap:
        raise MediaUnavailable(f"{too_large} ({response.content_length:,} bytes)")
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > cap:
            raise MediaUnavailable(too_large)
    return bytes(body)
