"""The single place batchllm sends HTTP: one call, one timeout, errors made typed.

Two guards live here because every byte from a provider passes through this function:

- Redirects are never followed. A base URL that answers 3xx would otherwise receive the next
  request (with its key header) at whatever host the ``Location`` names, perhaps over plain
  HTTP; instead the redirect is a fatal error that names both URLs.
- Whatever credential the call carried is cut out of the reply's body and headers before anyone
  reads them, so a server or proxy that echoes request headers cannot put the key into an error
  message, a log line or the results.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp
from multidict import CIMultiDict

from batchllm.errors import ConnectionFailed, Redirected, Timeout
from batchllm.providers.base import HttpCall

#: request headers whose values are credentials, lower-cased
CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "x-goog-api-key"})
_MASK = b"***"


async def send(
    session: aiohttp.ClientSession, call: HttpCall, timeout_s: float
) -> tuple[int, Mapping[str, str], bytes]:
    """Send ``call``; return status, headers and body, or raise ``Timeout``/``ConnectionFailed``
    (``Redirected`` for a 3xx)."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    headers: Mapping[str, str]
    secrets = credentials(call.headers)
    try:
        async with session.request(
            call.method,
            call.url,
            headers=call.headers,
            data=call.body,
            timeout=timeout,
            allow_redirects=False,
        ) as response:
            body = await response.read()
            status, headers = response.status, response.headers
    except TimeoutError:
        raise Timeout(f"no reply within {timeout_s:g} s") from None
    except aiohttp.ClientError as exc:
        raise ConnectionFailed(f"connection failed: {type(exc).__name__}: {exc}") from exc
    except asyncio.IncompleteReadError as exc:
        raise ConnectionFailed(f"connection closed mid-reply: {exc}") from exc
    if secrets:
        body, headers = scrub(body, secrets), _scrub_headers(headers, secrets)
    if 300 <= status < 400:
        raise Redirected(_redirect_message(call, status, headers), status=status)
    return status, headers, body


def credentials(headers: Mapping[str, str]) -> tuple[bytes, ...]:
    """The secret values among a call's headers (a bearer token without its scheme)."""
    found: list[bytes] = []
    for name, value in headers.items():
        if name.lower() not in CREDENTIAL_HEADERS or not value:
            continue
        scheme, _, token = value.partition(" ")
        secret = token.strip() if token and scheme.lower() == "bearer" else value
        if len(secret) >= 4:
            found.append(secret.encode())
    return tuple(found)


def scrub(data: bytes, secrets: tuple[bytes, ...]) -> bytes:
    """``data`` with every occurrence of each secret replaced by ``***``."""
    for secret in secrets:
        if secret in data:
            data = data.replace(secret, _MASK)
    return data


def _scrub_headers(headers: Mapping[str, str], secrets: tuple[bytes, ...]) -> Mapping[str, str]:
    texts = [secret.decode() for secret in secrets]
    if not any(secret in value for value in headers.values() for secret in texts):
        return headers
    clean: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        for secret in texts:
            value = value.replace(secret, "***")
        clean.add(name, value)
    return clean


def _redirect_message(call: HttpCall, status: int, headers: Mapping[str, str]) -> str:
    location = headers.get("Location") or "(no Location header)"
    return (
        f"{call.method} {call.url} answered HTTP {status}, a redirect to {location}; "
        "batchllm does not follow redirects, so your key is never sent to another address: "
        "set base_url to the address the server redirects to"
    )
