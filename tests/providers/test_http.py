"""The one send: a call's reply, or a typed error for every way the network can fail."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from batchllm.errors import ConnectionFailed, Redirected, Timeout
from batchllm.providers.base import HttpCall
from batchllm.providers.http import send

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start a loopback server answering every path with ``handler``; yields its root URL."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


def _call(url: str, key: str = "sk-test-0123456789") -> HttpCall:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return HttpCall("POST", f"{url}/v1/chat/completions", headers, b"{}")


async def test_a_reply_comes_back_with_status_headers_and_body(serve, session) -> None:
    """Any status is returned as it is (the adapter decides what it means)."""

    async def handler(request: web.Request) -> web.Response:
        assert await request.read() == b"{}"
        return web.Response(status=503, body=b"busy", headers={"retry-after": "2"})

    root = await serve(handler)
    status, headers, body = await send(session, _call(root), 5)
    assert (status, headers["retry-after"], body) == (503, "2", b"busy")


async def test_no_reply_within_the_timeout_is_a_timeout(serve, session) -> None:
    """A server that never answers: Timeout after timeout_s, retryable."""

    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    root = await serve(handler)
    with pytest.raises(Timeout, match=r"no reply within 0\.2 s") as caught:
        await send(session, _call(root), 0.2)
    assert caught.value.retryable


async def test_a_refused_connection_is_a_connection_failure(session) -> None:
    """Nothing listening on the port: ConnectionFailed, retryable, naming what went wrong."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionFailed, match="connection failed") as caught:
        await send(session, _call(f"http://127.0.0.1:{port}"), 5)
    assert caught.value.retryable
    assert caught.value.__cause__ is not None, "the cause is kept for a developer"


async def test_a_connection_dropped_mid_reply_is_a_connection_failure(serve, session) -> None:
    """The server promises a body and hangs up halfway: ConnectionFailed, not a short body."""

    async def handler(request: web.Request) -> web.StreamResponse:
        reply = web.StreamResponse(headers={"Content-Length": "1000"})
        await reply.prepare(request)
        await reply.write(b"x" * 10)
        assert request.transport is not None
        request.transport.close()
        return reply

    root = await serve(handler)
    with pytest.raises(ConnectionFailed):
        await send(session, _call(root), 5)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_an_error_naming_where_it_points(serve, session, status: int) -> None:
    """Every redirect status is refused (fatal), naming the URL called and the Location."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": "http://elsewhere.test/x"})

    root = await serve(handler)
    with pytest.raises(Redirected) as caught:
        await send(session, _call(root), 5)
    message = str(caught.value)
    assert f"{root}/v1/chat/completions" in message and "http://elsewhere.test/x" in message
    assert caught.value.fatal and caught.value.status == status


async def test_a_redirect_without_a_location_still_says_so(serve, session) -> None:
    """A 3xx with no Location header: refused, saying there was none."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=302)

    root = await serve(handler)
    with pytest.raises(Redirected, match="no Location header"):
        await send(session, _call(root), 5)


async def test_the_key_is_masked_in_headers_and_body_of_any_reply(serve, session) -> None:
    """A reply echoing the bearer token (body and a header) comes back with *** in its place;
    other text is untouched."""
    key = "sk-echo-abcdef123456"

    async def handler(request: web.Request) -> web.Response:
        token = request.headers["Authorization"]
        return web.Response(body=f"got {token} ok".encode(), headers={"x-seen": token})

    root = await serve(handler)
    _, headers, body = await send(session, _call(root, key), 5)
    assert body == b"got Bearer *** ok"
    assert headers["x-seen"] == "Bearer ***"


async def test_a_call_without_credentials_is_passed_through_untouched(serve, session) -> None:
    """No key header: nothing to mask, the reply is returned byte for byte."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"Bearer sk-not-ours-000000")

    root = await serve(handler)
    call = HttpCall("GET", f"{root}/v1/models", {}, b"")
    _, _, body = await send(session, call, 5)
    assert body == b"Bearer sk-not-ours-000000"


async def test_one_session_carries_many_calls(serve) -> None:
    """Calls share the session's connection pool: 50 calls over a limit of 4 connections."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"ok")

    root = await serve(handler)
    connector = aiohttp.TCPConnector(limit=4)
    async with aiohttp.ClientSession(connector=connector) as pooled:
        replies = await asyncio.gather(*(send(pooled, _call(root), 5) for _ in range(50)))
    assert {body for _, _, body in replies} == {b"ok"}
