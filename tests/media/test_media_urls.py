"""Media URLs: passed on where the format takes them, else fetched when the row is sent, from a
loopback server (images, PDFs, 404, oversize, wrong type, slow, redirects), online and batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from media_server import HUGE, MediaServer, media_server
from test_media_run import KEY, PROVIDERS, _job, _results, _server

import batchllm
from batchllm.errors import RowError
from batchllm.media_fetch import fetch_media
from batchllm.providers import DEFAULT_KEY_ENV
from batchllm.providers.media_parts import ANTHROPIC, CHAT, GEMINI, RESPONSES, image_tokens
from batchllm.render import Renderer
from batchllm.run.pipeline import arun_job
from batchllm.simulate import SimServer
from conftest import SimThread, job_data, write_csv, write_job


def _rows(urls: dict[str, str]) -> list[dict[str, str]]:
    return [{"id": key, "photo": url} for key, url in urls.items()]


async def test_gemini_fetches_plain_urls_and_sends_their_bytes(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gemini takes no plain http(s) URL: images and PDFs are fetched and sent inline, typed by
    their bytes (the server says application/octet-stream) and charged by their real size."""
    sim = _server(sims)
    async with media_server(tmp_path) as media:
        rows = [{"id": "G1", "photo": media("/cat.png"), "doc": media("/doc.pdf")}]
        template = "Tag {{ image(photo) }} and sum up {{ document(doc) }}"
        job = _job(tmp_path, sim, monkeypatch, "gemini", rows, prompt={"template": template})
        summary = await arun_job(job)
        assert (summary.ok, summary.failed) == (1, 0)
        assert media.hits["/cat.png"] == media.hits["/doc.pdf"] == 1
    tokens = _results(job)[0]["input_tokens"]
    known = image_tokens(GEMINI, 40, 30, None) + 2 * 258  # 258 an image this small, 258 a page
    assert known < tokens < known + 40  # the text's few tokens besides


async def test_openai_chat_fetches_pdf_urls(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenAI Chat's ``file`` part takes only bytes: a PDF URL is fetched; an image URL is not."""
    sim = _server(sims)
    async with media_server(tmp_path) as media:
        rows = [{"id": "C1", "photo": media("/cat.png"), "doc": media("/doc.pdf")}]
        template = "{{ image(photo) }} {{ document(doc) }}"
        prompt = {"template": template}
        job = _job(tmp_path, sim, monkeypatch, "openai-compatible", rows, prompt=prompt)
        summary = await arun_job(job)
        assert (summary.ok, summary.failed) == (1, 0)
        assert (media.hits["/doc.pdf"], media.hits["/cat.png"]) == (1, 0)
    assert _results(job)[0]["input_tokens"] > 2 * 1000


@pytest.mark.parametrize("fetch_urls", [False, True])
async def test_fetch_urls_sends_bytes_where_a_url_would_do(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch, fetch_urls: bool
) -> None:
    """Anthropic takes URLs: they are passed on, unless ``[input] fetch_urls`` asks for bytes."""
    sim = _server(sims)
    async with media_server(tmp_path) as media:
        rows = _rows({"A1": media("/cat.png"), "A2": media("/hop.png")})
        job = _job(tmp_path, sim, monkeypatch, "anthropic", rows, input={"fetch_urls": fetch_urls})
        summary = await arun_job(job)
        assert (summary.ok, summary.failed) == (2, 0)
        assert media.hits["/cat.png"] == (2 if fetch_urls else 0)  # /hop.png redirects to it
    tokens = [r["input_tokens"] for r in _results(job)]
    charged = image_tokens(ANTHROPIC, 40, 30, None) if fetch_urls else 1600
    assert all(charged < t < charged + 40 for t in tokens)


async def test_urls_that_cannot_be_fetched_are_error_rows_naming_them(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 404, a page that is not an image, a reply over the request's size (declared or not), a
    server slower than the timeout and a redirect to another host each fail their own row with
    the URL and the reason; a redirect on the same host is followed; the run goes on."""
    sim = _server(sims)
    async with media_server(tmp_path) as media:
        paths = ("/cat.png", "/missing.png", "/page.html", "/huge.png", "/declared.png",
                 "/slow.png", "/hop.png", "/away.png")  # fmt: skip
        rows = _rows({f"R{i}": media(path) for i, path in enumerate(paths)})
        job = _job(tmp_path, sim, monkeypatch, "gemini", rows, retry={"timeout_s": 0.4})
        summary = await arun_job(job)
    assert (summary.ok, summary.failed, sim.stats()["requests"]) == (2, 6, 2)
    errors = {r["row_key"]: (r["error_type"], r["error"]) for r in _results(job) if r["error"]}
    assert {kind for kind, _ in errors.values()} == {"media"}
    reasons = {
        "R1": "HTTP 404 Not Found",
        "R2": "not a PNG, JPEG, GIF, WebP or PDF",
        "R3": f"larger than {20 * 1024 * 1024:,} bytes",
        "R4": f"({HUGE:,} bytes)",
        "R5": "not fetched within 0.4 s",
        "R7": "another host",
    }
    for key, reason in reasons.items():
        assert errors[key][1].startswith(media(paths[int(key[1])])), errors[key]
        assert reason in errors[key][1], errors[key]


async def test_a_fetched_image_over_the_limits_is_refused_or_resized(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fetched image is held to the format's limits like a file: 8001 px wide fails on
    Anthropic, and is downscaled when ``resize_images`` allows."""
    sim = _server(sims)
    async with media_server(tmp_path) as media:
        rows = _rows({"W1": media("/wide.png")})
        job = _job(tmp_path, sim, monkeypatch, "anthropic", rows, input={"fetch_urls": True})
        assert (await arun_job(job)).failed == 1
        assert "over Anthropic's 8000 px a side" in _results(job)[0]["error"]
        (tmp_path / "second").mkdir()
        job = _job(tmp_path / "second", sim, monkeypatch, "anthropic", rows,
                   input={"fetch_urls": True, "resize_images": True})  # fmt: skip
        assert (await arun_job(job)).ok == 1


async def test_batch_mode_fetches_urls_and_fails_the_rows_it_cannot(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch mode fetches a PDF URL for OpenAI's batch file; a 404 is an error row, not a stop."""
    sim = _server(sims, batch_delay_s=0.05)
    monkeypatch.setenv(DEFAULT_KEY_ENV["openai"], KEY)
    async with media_server(tmp_path) as media:
        rows = _rows({"B1": media("/doc.pdf"), "B2": media("/missing.pdf")})
        write_csv(tmp_path / "input.csv", rows)
        data = job_data(
            None,
            prompt={"template": "Sum up {{ document(photo) }}"},
            model={"provider": "openai", "name": "gpt-4o-mini", "base_url": sim.root + "/v1",
                   "mode": "batch"},
            batch={"poll_s": 0.05, "max_poll_s": 0.2},
        )  # fmt: skip
        job = batchllm.load_job(write_job(tmp_path, data))
        summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (1, 1)
    failed = [r for r in _results(job) if r["status"] == "failed"]
    assert failed[0]["row_key"] == "B2" and "HTTP 404" in failed[0]["error"]


async def test_a_fetch_replaces_the_unknown_size_estimate(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Before the fetch an image is reserved at the format's largest charge; after, its own."""
    async with media_server(tmp_path) as media:
        write_csv(tmp_path / "input.csv", _rows({"E1": media("/cat.png")}))
        model = {"provider": "gemini", "name": "gemini-2.5-flash", "base_url": "http://127.0.0.1:9"}
        data = job_data(None, prompt={"template": "{{ image(photo) }}"}, model=model)
        job = batchllm.load_job(write_job(tmp_path, data))
        request = Renderer(job, ["id", "photo"]).render("E1", {"photo": media("/cat.png")})
        sent = await fetch_media(request, session, 5.0)
    unknown, known = image_tokens(GEMINI, None, None, None), image_tokens(GEMINI, 40, 30, None)
    assert request.est_input_tokens - sent.est_input_tokens == unknown - known
    assert sent.request_key == request.request_key  # the URL as given is the identity
    assert sent.media[0].data == media.files["/cat.png"]


def test_unknown_size_images_are_estimated_at_the_formats_largest_charge() -> None:
    """OpenAI 1,445 (85 at low detail), Anthropic 1,600, Gemini 1,032 (1536×1536)."""
    assert image_tokens(CHAT, None, None, None) == image_tokens(RESPONSES, None, 5, "auto") == 1445
    assert image_tokens(CHAT, None, None, "low") == 85
    assert image_tokens(ANTHROPIC, None, None, None) == 1600
    assert image_tokens(GEMINI, None, None, None) == 4 * 258
    assert image_tokens(CHAT, 2048, 768, "high") == 1445  # the largest the tile rule charges


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_gs_uris_are_for_gemini_only(tmp_path: Path, provider: str) -> None:
    """A gs:// URI is passed on to Gemini; any other format's row fails, naming it."""
    uri = "gs://bucket/cat.png"
    write_csv(tmp_path / "input.csv", _rows({"1": uri}))
    model = {
        "provider": provider,
        "name": PROVIDERS[provider][1],
        "base_url": "http://127.0.0.1:9/x",
    }
    data = job_data(None, prompt={"template": "{{ image(photo) }}"}, model=model)
    renderer = Renderer(batchllm.load_job(write_job(tmp_path, data)), ["id", "photo"])
    if provider == "gemini":
        assert renderer.render("1", {"photo": uri}).media[0].source == uri
    else:
        with pytest.raises(RowError, match="only Gemini reads gs:// URIs"):
            renderer.render("1", {"photo": uri})


@pytest.mark.parametrize(
    ("path", "content", "reason"),
    [
        (
            "/v1beta/models/gemini-2.5-flash:generateContent",
            {"contents": [{"role": "user", "parts": [
                {"file_data": {"mime_type": "image/png", "file_uri": "https://x.example/a.png"}}
            ]}]},
            "Unsupported file uri",
        ),
        (
            "/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [
                {"type": "file", "file": {"filename": "a.pdf", "file_data": "https://x.example/a.pdf"}}
            ]}]},
            "expected a base64 data URL",
        ),
    ],
)  # fmt: skip
async def test_the_simulator_refuses_urls_the_format_cannot_take(
    start: Any, session: aiohttp.ClientSession, path: str, content: dict[str, Any], reason: str
) -> None:
    """Gemini ``file_data`` with a plain URL and a Chat ``file`` part with a URL answer 400."""
    sim: SimServer = await start()
    async with session.post(sim.root + path, json=content) as reply:
        assert reply.status == 400
        assert reason in (await reply.json())["error"]["message"]


__all__ = ["MediaServer"]
