"""The single place batchllm sends HTTP: one call, one timeout, errors made typed."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp

from batchllm.errors import ConnectionFailed, Timeout
from batchllm.providers.base import HttpCall


async def send(
    session: aiohttp.ClientSession, call: HttpCall, timeout_s: float
) -> tuple[int, Mapping[str, str], bytes]:
    """Send ``call``; return status, headers and body, or raise ``Timeout``/``ConnectionFailed``."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with session.request(
            call.method, call.url, headers=call.headers, data=call.body, timeout=timeout
        ) as response:
            body = await response.read()
            return response.status, response.headers, body
    except TimeoutError:
        raise Timeout(f"no reply within {timeout_s:g} s") from None
    except aiohttp.ClientError as exc:
        raise ConnectionFailed(f"connection failed: {type(exc).__name__}: {exc}") from None
    except asyncio.IncompleteReadError as exc:
        raise ConnectionFailed(f"connection closed mid-reply: {exc}") from None
