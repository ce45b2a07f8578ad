"""Media on their own: types from content, dimensions from headers, PDF pages, token rules,
the size-and-mtime cache, and what media add to a rendered request."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

import batchllm
from batchllm.errors import RowError
from batchllm.media import FactCache, dimensions, load, pdf_pages, reference, sniff
from batchllm.providers.media_parts import (
    ANTHROPIC,
    CHAT,
    GEMINI,
    RESPONSES,
    admit,
    document_tokens,
    image_tokens,
    marker,
    segments,
)
from batchllm.render import Renderer
from conftest import job_data, write_csv, write_job
from media_files import image, pdf


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_type_and_size_come_from_the_content(tmp_path: Path, fmt: str) -> None:
    """Each image type is known by its first bytes and its size read from its header."""
    path = image(tmp_path / "picture.bin", (123, 45), fmt=fmt)
    head = path.read_bytes()
    assert sniff(head) == f"image/{fmt.lower()}"
    assert dimensions(head, sniff(head)) == (123, 45)


def test_a_pdf_is_known_and_its_pages_counted(tmp_path: Path) -> None:
    """A PDF is recognised by content and its page tree's count read."""
    data = pdf(tmp_path / "doc.pdf", pages=3).read_bytes()
    assert sniff(data) == "application/pdf"
    assert pdf_pages(data) == 3


@pytest.mark.parametrize(
    ("style", "size", "detail", "tokens"),
    [
        (CHAT, (1024, 1024), "high", 765),  # OpenAI's worked example: 4 tiles
        (CHAT, (2048, 4096), None, 1105),  # fit 2048, shortest side 768: 6 tiles
        (RESPONSES, (4000, 3000), "low", 85),
        (ANTHROPIC, (200, 200), None, 54),  # Anthropic's table: w × h / 750
        (ANTHROPIC, (1000, 1000), None, 1334),
        (ANTHROPIC, (4000, 4000), None, 1600),  # long edge fitted to 1568, capped
        (GEMINI, (384, 300), None, 258),
        (GEMINI, (1000, 1000), None, 1032),  # 2 × 2 tiles of 768
    ],
)
def test_image_tokens_follow_each_published_rule(
    style: str, size: tuple[int, int], detail: str | None, tokens: int
) -> None:
    """Image token estimates match each provider's published rule on known sizes."""
    assert image_tokens(style, *size, detail) == tokens


def test_an_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    """Size and mtime unchanged: the cached hash is used; a new mtime reads the file again."""
    path = image(tmp_path / "a.png", colour="red")
    stamp = path.stat().st_mtime_ns
    cache = FactCache(tmp_path / "facts.sqlite")
    first = reference(str(path), "image", tmp_path, cache)
    same_size = bytearray(path.read_bytes())
    same_size[-20] ^= 0xFF  # different content, same length
    path.write_bytes(bytes(same_size))
    os.utime(path, ns=(stamp, stamp))
    cache.close()
    again = FactCache(tmp_path / "facts.sqlite")
    assert reference(str(path), "image", tmp_path, again).identity == first.identity
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    assert reference(str(path), "image", tmp_path, again).identity != first.identity


def test_markers_split_text_and_parts() -> None:
    """The text around a marker stays in order with the medium between."""
    pieces = list(segments(f"look {marker(0)} then", ("IMG",)))  # type: ignore[arg-type]  # any stand-in
    assert pieces == ["look ", "IMG", " then"]


def test_over_limit_images_fail_or_shrink(tmp_path: Path) -> None:
    """An image over a side limit is a row error, or a resized reference when allowed."""
    ref = reference(
        str(image(tmp_path / "wide.png", (8001, 8))), "image", tmp_path, FactCache(None)
    )
    with pytest.raises(RowError, match="8001×8 px, over Anthropic's 8000 px"):
        admit(ANTHROPIC, [ref], resize=False)
    (shrunk,) = admit(ANTHROPIC, [ref], resize=True)
    assert shrunk.resize == (8000, 8) and shrunk.key != ref.key
    sent, media_type = load(shrunk)
    assert dimensions(sent, media_type) == (8000, 8)
    assert admit(CHAT, [ref], resize=False) == (ref,)


def _renderer(tmp_path: Path, template: str, provider: str = "openai-compatible") -> Renderer:
    write_csv(tmp_path / "input.csv", [{"id": "1", "photo": "a.png"}])
    data = job_data(None, prompt={"template": template}, model={"provider": provider})
    job = batchllm.load_job(write_job(tmp_path, data))
    return Renderer(job, ["id", "photo", "blob"])


def test_the_request_key_follows_the_image_content(tmp_path: Path) -> None:
    """A changed image gives a new request key; an unchanged one the same key."""
    path = image(tmp_path / "a.png", colour="red")
    renderer = _renderer(tmp_path, "Tag: {{ image(photo) }}")
    first = renderer.render("1", {"id": "1", "photo": "a.png"})
    assert renderer.render("1", {"id": "1", "photo": "a.png"}).request_key == first.request_key
    image(path, colour="blue")
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    assert renderer.render("1", {"id": "1", "photo": "a.png"}).request_key != first.request_key


def test_image_tokens_are_in_the_estimate(tmp_path: Path) -> None:
    """A request's token estimate adds its image's tokens by the provider's rule."""
    image(tmp_path / "a.png", (1000, 1000))
    with_image = _renderer(tmp_path, "Tag: {{ image(photo) }}", "anthropic")
    text_only = _renderer(tmp_path, "Tag: {{ photo }}", "anthropic")
    row = {"id": "1", "photo": "a.png"}
    extra = (
        with_image.render("1", row).est_input_tokens - text_only.render("1", row).est_input_tokens
    )
    assert extra == pytest.approx(1334, abs=5)


def test_a_kept_request_keeps_its_media(tmp_path: Path) -> None:
    """A request written to a batch's rows file reads back with its media, bytes included."""
    from batchllm.run.batch_book import request_from, request_json

    image(tmp_path / "a.png")
    renderer = _renderer(tmp_path, "{{ image(photo) }} {{ image(blob) }}")
    blob = image(tmp_path / "b.png", colour="blue").read_bytes()
    request = renderer.render("1", {"id": "1", "photo": "a.png", "blob": blob})
    kept = orjson.loads(orjson.dumps(request_json(request)))
    assert request_from(kept) == request


def test_pdf_pages_are_estimated_by_the_cited_figures() -> None:
    """A PDF page: Anthropic 2,250 (mid 1,500-3,000), Gemini 258, OpenAI 1,000 (text + page)."""
    assert document_tokens(ANTHROPIC, 2) == 4500
    assert document_tokens(GEMINI, 3) == 3 * 258
    assert document_tokens(CHAT, 1) == document_tokens(RESPONSES, 1) == 1000
    assert document_tokens(GEMINI, None) == 258  # pages unknown: one
