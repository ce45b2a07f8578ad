"""A loopback HTTP server of media for URL tests: images and PDFs, and the ways a fetch fails."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from media_files import image, pdf

#: bytes the oversized replies send: over Gemini's 20 MB a request
HUGE = 21 * 1024 * 1024


class MediaServer:
    """Serves ``/cat.png``, ``/doc.pdf``, ``/wide.png`` and the failing paths; counts hits."""

    def __init__(self, folder: Path) -> None:
        self.files = {
            "/cat.png": image(folder / "cat.png", (40, 30), "blue").read_bytes(),
            "/doc.pdf": pdf(folder / "doc.pdf", pages=2).read_bytes(),
            "/wide.png": image(folder / "wide.png", (8001, 8)).read_bytes(),
        }
        self.hits: Counter[str] = Counter()
        self.url = ""

    def __call__(self, path: str, host: str = "127.0.0.1") -> str:
        """The URL of ``path`` on this server, under ``host``."""
        return self.url.replace("127.0.0.1", host) + path

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] += 1
        if path in self.files:  # a type that says nothing: the bytes tell
            return web.Response(body=self.files[path], content_type="application/octet-stream")
        if path == "/page.html":
            page = "<html><body>not an image</body></html>"
            return web.Response(text=page, content_type="text/html")
        if path == "/hop.png":
            raise web.HTTPFound("/cat.png")
        if path == "/away.png":
            raise web.HTTPFound(self("/cat.png", host="localhost"))
        if path == "/slow.png":
            await asyncio.sleep(1.5)
            return web.Response(body=self.files["/cat.png"])
        if path in ("/huge.png", "/declared.png"):
            return await self._huge(request, declared=path == "/declared.png")
        raise web.HTTPNotFound()

    async def _huge(self, request: web.Request, *, declared: bool) -> web.StreamResponse:
        response = web.StreamResponse()
        if declared:
            response.content_length = HUGE
        await response.prepare(request)
        chunk = self.files["/cat.png"] + bytes(1024 * 1024)
        try:
            for _ in range(HUGE // len(chunk) + 1):
                await response.write(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the client stopped reading, as it should
        return response


@asynccontextmanager
async def media_server(folder: Path) -> AsyncIterator[MediaServer]:
    """A ``MediaServer`` on a free loopback port for the block's duration."""
    server = MediaServer(folder)
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()
