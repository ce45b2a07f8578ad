"""Rows with images and documents end to end: every wire format's parts, against the simulated
provider over loopback, online and batch; error rows for media that cannot be sent; re-runs."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import batchllm
from batchllm.providers import DEFAULT_KEY_ENV, make_adapter
from batchllm.providers.media_parts import image_tokens, style_of
from batchllm.render import Renderer
from batchllm.run.pipeline import arun_job
from batchllm.simulate import SimServer
from conftest import SimThread, job_data, write_csv, write_job
from media_files import image, pdf

KEY = "sim-media-key-000001"
TEMPLATE = "Tag this photo with one of: red, green, blue.\n{{ image(photo) }}"
#: provider -> (its base URL on the simulator, a model genai-prices knows for it)
PROVIDERS = {
    "openai-compatible": (lambda sim: sim.url, "gpt-4o-mini"),
    "openai-responses": (lambda sim: sim.url, "gpt-4o-mini"),
    "anthropic": (lambda sim: sim.root, "claude-haiku-4-5"),
    "gemini": (lambda sim: f"{sim.root}/v1beta", "gemini-2.5-flash"),
    "azure-openai": (lambda sim: f"{sim.root}/openai/deployments/tags", "gpt-4o-mini"),
}


def _photos(tmp_path: Path, count: int = 6) -> list[dict[str, str]]:
    colours = ("red", "green", "blue")
    rows = []
    for i in range(count):
        name = f"p{i}.{'png' if i % 2 else 'jpg'}"
        image(tmp_path / name, (40 + i, 30), colours[i % 3])
        rows.append({"id": f"P{i}", "photo": name})
    return rows


def _job(
    tmp_path: Path,
    sim: SimServer,
    monkeypatch: pytest.MonkeyPatch,
    provider: str = "openai-compatible",
    rows: list[dict[str, Any]] | None = None,
    **sections: dict[str, Any],
) -> batchllm.JobSpec:
    key_env = DEFAULT_KEY_ENV.get(provider, "MEDIA_TEST_KEY")
    monkeypatch.setenv(key_env, KEY)
    base_url, model = PROVIDERS[provider]
    write_csv(tmp_path / "input.csv", rows or _photos(tmp_path))
    model_section = {"provider": provider, "name": model, "base_url": base_url(sim)}
    model_section["api_key_env"] = key_env
    data = job_data(
        None,
        prompt={"template": TEMPLATE} | sections.pop("prompt", {}),
        model=model_section | sections.pop("model", {}),
        **sections,
    )
    return batchllm.load_job(write_job(tmp_path, data))


def _server(sims: SimThread, **config: Any) -> SimServer:
    from batchllm.simulate import SimConfig

    return sims.start(SimConfig(**{"latency_ms": 1, "jitter_ms": 0, "api_key": KEY, **config}))


def _results(job: batchllm.JobSpec) -> list[dict[str, Any]]:
    return batchllm.query(job, "select * from results order by row_key").to_pylist()


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_each_format_carries_images_to_the_simulator(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """Every wire format's image parts are accepted, answered and charged by the image rule."""
    sim = _server(sims)
    job = _job(tmp_path, sim, monkeypatch, provider)
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (6, 0)
    rows = _results(job)
    assert all(r["output"] for r in rows)
    assert sim.stats()["prompt_tokens"] == sum(r["input_tokens"] for r in rows)
    style = style_of(provider)
    for i, row in enumerate(rows):  # the text's tokens and the image's by the format's rule
        assert row["input_tokens"] > 10 + image_tokens(style, 40 + i, 30, None)


def _golden_request(tmp_path: Path, provider: str) -> tuple[dict[str, Any], str, str]:
    photo = image(tmp_path / "a.png", (20, 10))
    doc = pdf(tmp_path / "d.pdf", pages=2)
    write_csv(tmp_path / "input.csv", [{"id": "1", "photo": "a.png", "doc": "d.pdf"}])
    template = 'See {{ image(photo, detail="low") }} and {{ document(doc) }}.'
    model = PROVIDERS[provider][1]
    data = job_data(
        None,
        prompt={"template": template},
        model={"provider": provider, "name": model, "base_url": "http://127.0.0.1:9/x"},
    )
    job = batchllm.load_job(write_job(tmp_path, data))
    request = Renderer(job, ["id", "photo", "doc"]).render("1", {"photo": "a.png", "doc": "d.pdf"})
    body = orjson.loads(make_adapter(provider, job.model.base_url, "k").build(request).body)
    encoded = (base64.b64encode(photo.read_bytes()), base64.b64encode(doc.read_bytes()))
    return body, encoded[0].decode(), encoded[1].decode()


def test_golden_openai_chat_parts(tmp_path: Path) -> None:
    """OpenAI Chat: text, ``image_url`` with a data URL and detail, ``file`` with file_data."""
    body, png, doc = _golden_request(tmp_path, "openai-compatible")
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "See "},
        {
            "type": "image_url",
            "image_url": {"url": f"data:image/png;base64,{png}", "detail": "low"},
        },
        {"type": "text", "text": " and "},
        {
            "type": "file",
            "file": {"filename": "d.pdf", "file_data": f"data:application/pdf;base64,{doc}"},
        },
        {"type": "text", "text": "."},
    ]


def test_golden_openai_responses_parts(tmp_path: Path) -> None:
    """OpenAI Responses: ``input_text``, ``input_image`` (a string URL), ``input_file``."""
    body, png, doc = _golden_request(tmp_path, "openai-responses")
    assert body["input"][0]["content"] == [
        {"type": "input_text", "text": "See "},
        {"type": "input_image", "image_url": f"data:image/png;base64,{png}", "detail": "low"},
        {"type": "input_text", "text": " and "},
        {
            "type": "input_file",
            "filename": "d.pdf",
            "file_data": f"data:application/pdf;base64,{doc}",
        },
        {"type": "input_text", "text": "."},
    ]


def test_golden_anthropic_blocks(tmp_path: Path) -> None:
    """Anthropic: ``text``, ``image`` and ``document`` blocks with base64 sources."""
    body, png, doc = _golden_request(tmp_path, "anthropic")
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "See "},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "text", "text": " and "},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": doc},
        },
        {"type": "text", "text": "."},
    ]


def test_golden_gemini_parts(tmp_path: Path) -> None:
    """Gemini: ``text`` and ``inline_data`` parts with their mime types."""
    body, png, doc = _golden_request(tmp_path, "gemini")
    assert body["contents"][0]["parts"] == [
        {"text": "See "},
        {"inline_data": {"mime_type": "image/png", "data": png}},
        {"text": " and "},
        {"inline_data": {"mime_type": "application/pdf", "data": doc}},
        {"text": "."},
    ]


URL = "https://media.example/cat.png"
#: Gemini takes only Cloud Storage and Files API URIs in ``file_data``
GS = "gs://media-bucket/cat.png"
URL_PARTS = {
    "openai-compatible": ("messages", {"type": "image_url", "image_url": {"url": URL}}),
    "openai-responses": ("input", {"type": "input_image", "image_url": URL, "detail": "auto"}),
    "anthropic": ("messages", {"type": "image", "source": {"type": "url", "url": URL}}),
    "gemini": ("contents", {"file_data": {"mime_type": "image/png", "file_uri": GS}}),
}


@pytest.mark.parametrize("provider", sorted(URL_PARTS))
def test_golden_url_parts(tmp_path: Path, provider: str) -> None:
    """A URL the format takes is sent as its URL part, not fetched."""
    url = GS if provider == "gemini" else URL
    write_csv(tmp_path / "input.csv", [{"id": "1", "photo": url}])
    model = PROVIDERS[provider][1]
    data = job_data(
        None,
        prompt={"template": "{{ image(photo) }}"},
        model={"provider": provider, "name": model, "base_url": "http://127.0.0.1:9/x"},
    )
    job = batchllm.load_job(write_job(tmp_path, data))
    request = Renderer(job, ["id", "photo"]).render("1", {"photo": url})
    body = orjson.loads(make_adapter(provider, job.model.base_url, "k").build(request).body)
    key, part = URL_PARTS[provider]
    turn = body[key][0]
    assert turn.get("content", turn.get("parts")) == [part]


@pytest.mark.parametrize("provider", ["openai-compatible", "anthropic", "gemini"])
async def test_documents_reach_the_simulator(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """A PDF per row is sent in the format's document part and charged per page."""
    sim = _server(sims)
    pdf(tmp_path / "d.pdf", pages=2)
    rows = [{"id": "D1", "doc": "d.pdf"}]
    prompt = {"template": "Summarize: {{ document(doc) }}"}
    job = _job(tmp_path, sim, monkeypatch, provider, rows, prompt=prompt)
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (1, 0)
    assert _results(job)[0]["input_tokens"] > 2 * 250


async def test_a_bytes_column_and_input_images(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Parquet binary column named in ``[input] images`` is sent after the text."""
    sim = _server(sims)
    blobs = [image(tmp_path / f"b{i}.png", (30, 30 + i)).read_bytes() for i in range(3)]
    table = pa.table({"id": ["B0", "B1", "B2"], "photo": pa.array(blobs, pa.binary())})
    pq.write_table(table, tmp_path / "input.parquet")
    job = _job(
        tmp_path,
        sim,
        monkeypatch,
        "anthropic",
        input={"path": "input.parquet", "images": ["photo"]},
        prompt={"template": "Tag this photo with one of: red, green, blue."},
    )
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (3, 0)


async def test_a_url_is_passed_on_as_given(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An http(s) URL goes to the provider as a URL part; its identity is the URL itself."""
    sim = _server(sims)
    rows = [{"id": "U1", "photo": "http://127.0.0.1:9/cat.jpg"}]
    job = _job(tmp_path, sim, monkeypatch, "anthropic", rows)
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (1, 0)


async def test_media_that_cannot_be_sent_are_named_error_rows(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing file, a file that is not an image, an oversized image and a long PDF each fail
    their own row with the reason, before anything is sent; the good row runs."""
    sim = _server(sims)
    image(tmp_path / "ok.png")
    (tmp_path / "notes.png").write_text("not an image at all")
    image(tmp_path / "wide.png", (8001, 8))
    pdf(tmp_path / "long.pdf", pages=101)
    rows = [
        {"id": "R1", "photo": "ok.png", "doc": ""},
        {"id": "R2", "photo": "missing.png", "doc": ""},
        {"id": "R3", "photo": "notes.png", "doc": ""},
        {"id": "R4", "photo": "wide.png", "doc": ""},
        {"id": "R5", "photo": "long.pdf", "doc": ""},
    ]
    template = "{% if id == 'R5' %}{{ document(photo) }}{% else %}{{ image(photo) }}{% endif %}"
    job = _job(tmp_path, sim, monkeypatch, "anthropic", rows, prompt={"template": template})
    summary = await arun_job(job)
    assert (summary.ok, summary.failed, summary.sent) == (1, 4, 1)
    errors = {r["row_key"]: r["error"] for r in _results(job) if r["status"] == "failed"}
    assert "missing.png" in errors["R2"] and "No such file" in errors["R2"]
    assert "not a PNG, JPEG, GIF, WebP or PDF" in errors["R3"]
    assert "over Anthropic's 8000 px a side" in errors["R4"]
    assert "101 pages, over Anthropic's 100" in errors["R5"]


async def test_an_oversized_image_is_resized_when_allowed(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``resize_images`` the image over the limit is downscaled and the row succeeds."""
    sim = _server(sims)
    image(tmp_path / "wide.png", (8001, 8))
    rows = [{"id": "W1", "photo": "wide.png"}]
    job = _job(tmp_path, sim, monkeypatch, "anthropic", rows, input={"resize_images": True})
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (1, 0)


async def test_the_simulator_rejects_oversized_media(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Told a size cap, the simulator answers 400 to a larger image; the row fails, not retried."""
    sim = _server(sims, max_media_bytes=100)
    job = _job(tmp_path, sim, monkeypatch, "gemini", _photos(tmp_path, 2))
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (0, 2)
    assert sim.stats()["requests"] == 2
    assert all("exceeds 100 bytes" in r["error"] for r in _results(job))


async def test_a_changed_image_is_sent_again_and_an_unchanged_one_reused(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a re-run only the row whose image changed is sent again."""
    sim = _server(sims)
    job = _job(tmp_path, sim, monkeypatch)
    await arun_job(job)
    before = sim.stats()["requests"]
    changed = tmp_path / "p1.png"
    image(changed, (41, 30), "purple")
    os.utime(changed, ns=(changed.stat().st_mtime_ns + 10**9,) * 2)
    summary = await arun_job(job)
    assert sim.stats()["requests"] - before == 1
    assert (summary.sent, summary.reused) == (1, 5)


@pytest.mark.parametrize(("provider", "path"), [("openai", "/v1"), ("anthropic", "")])
async def test_batch_mode_carries_images(
    tmp_path: Path, sims: SimThread, monkeypatch: pytest.MonkeyPatch, provider: str, path: str
) -> None:
    """The batch APIs carry the same image parts; every row comes back answered."""
    sim = _server(sims, batch_delay_s=0.05)
    monkeypatch.setenv(DEFAULT_KEY_ENV[provider], KEY)
    write_csv(tmp_path / "input.csv", _photos(tmp_path, 4))
    model = "gpt-4o-mini" if provider == "openai" else "claude-haiku-4-5"
    data = job_data(
        None,
        prompt={"template": TEMPLATE},
        model={"provider": provider, "name": model, "base_url": sim.root + path, "mode": "batch"},
        batch={"poll_s": 0.05, "max_poll_s": 0.2},
    )
    job = batchllm.load_job(write_job(tmp_path, data))
    summary = await arun_job(job)
    assert (summary.ok, summary.failed) == (4, 0)
    style = style_of(provider)
    assert all(r["input_tokens"] > image_tokens(style, 40, 30, None) for r in _results(job))


@pytest.mark.parametrize(
    ("path", "part"),
    [
        ("/v1/chat/completions", lambda url: {"type": "image_url", "image_url": {"url": url}}),
        ("/v1/responses", lambda url: {"type": "input_image", "image_url": url, "detail": "auto"}),
    ],
)
async def test_the_simulator_checks_encoding_and_declared_type(
    tmp_path: Path, start: Any, session: Any, path: str, part: Any
) -> None:
    """A JPEG declared as PNG, or base64 that does not decode, is answered 400 with the reason."""
    sim = await start()
    jpeg = base64.b64encode(image(tmp_path / "a.jpg").read_bytes()).decode()
    cases = {
        f"data:image/png;base64,{jpeg}": "specified as image/png but its content is image/jpeg",
        "data:image/png;base64,@@not-base64@@": "Invalid base64 image data",
    }
    for url, reason in cases.items():
        content = [{"type": "text", "text": "Tag it."}, part(url)]
        key = "messages" if "chat" in path else "input"
        body = {"model": "gpt-4o-mini", key: [{"role": "user", "content": content}]}
        async with session.post(sim.root + path, json=body) as reply:
            assert reply.status == 400
            assert reason in (await reply.json())["error"]["message"]
