"""What a file is, from its bytes: media type, image size, PDF pages (Pillow makes the images)."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from batchllm.media import dimensions, facts_of, pdf_pages, sniff


def _image(fmt: str, size: tuple[int, int], mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (200, 30, 30)).save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "media_type", "mode"),
    [("PNG", "image/png", "RGB"), ("JPEG", "image/jpeg", "RGB"), ("GIF", "image/gif", "P"),
     ("WEBP", "image/webp", "RGB")],
)  # fmt: skip
@pytest.mark.parametrize("size", [(1, 1), (640, 480), (301, 1999)])
def test_each_image_type_and_its_size_come_from_its_header(
    fmt: str, media_type: str, mode: str, size: tuple[int, int]
) -> None:
    """PNG, JPEG, GIF and WebP are told apart by their first bytes, and their width and height
    read from the header, whatever the size."""
    data = _image(fmt, size, mode)
    assert sniff(data[:16]) == media_type
    assert dimensions(data[:4096], media_type) == size


def test_lossless_webp_size_is_read_too() -> None:
    """A lossless WebP (VP8L) header gives its size as a lossy one does."""
    out = io.BytesIO()
    Image.new("RGB", (123, 45)).save(out, "WEBP", lossless=True)
    data = out.getvalue()
    assert data[12:16] == b"VP8L"
    assert dimensions(data, "image/webp") == (123, 45)


@pytest.mark.parametrize(
    "head",
    [b"", b"hello world", b"PK\x03\x04zipfile", b"\x89PNX\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WAVE"],
)
def test_unknown_content_has_no_type(head: bytes) -> None:
    """Text, archives, near-misses of a signature and other RIFF files are no known media."""
    assert sniff(head) is None


def test_a_pdf_is_known_by_its_header_even_after_whitespace() -> None:
    """%PDF- at the start (after stray whitespace) is a PDF."""
    assert sniff(b"%PDF-1.7\n...") == "application/pdf"
    assert sniff(b"\n  %PDF-1.4") == "application/pdf"


def test_a_broken_header_has_no_size() -> None:
    """A truncated header, or a JPEG whose segments do not chain, reads as no size."""
    png = _image("PNG", (10, 10))
    assert dimensions(png[:20], "image/png") is None
    assert dimensions(b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00" * 4, "image/jpeg") is None
    assert dimensions(b"\xff\xd8\x00\x00garbage-garbage", "image/jpeg") is None
    assert dimensions(png, None) is None


def test_pdf_pages_come_from_the_page_tree_or_the_page_objects() -> None:
    """The largest /Count of the page tree's /Pages nodes (the root counts every page; a /Count
    outside a /Pages node is not a page count); without one, the /Page objects counted."""
    tree = (
        b"%PDF-1.4\n1 0 obj << /Type /Pages /Count 3 /Kids [...] >>\n"
        b"2 0 obj << /Type /Pages /Count 12 /Kids [...] >>\n3 0 obj << /Count 99 >>"
    )
    assert pdf_pages(tree) == 12
    loose = b"%PDF-1.4 << /Type /Page >> << /Type /Page >> << /Type /Pages >>"
    assert pdf_pages(loose) == 2


def test_facts_hash_the_content_and_carry_what_was_read() -> None:
    """Facts: a content digest (same bytes, same digest), type, size; pages only for PDFs."""
    png = _image("PNG", (32, 16))
    facts = facts_of(png)
    assert (facts.media_type, facts.width, facts.height, facts.pages) == ("image/png", 32, 16, None)
    assert facts.digest == facts_of(bytes(png)).digest
    assert facts.digest != facts_of(_image("PNG", (32, 17))).digest
    pdf = facts_of(b"%PDF-1.4\n<< /Type /Pages /Count 2 >>")
    assert (pdf.media_type, pdf.pages, pdf.width) == ("application/pdf", 2, None)


def test_a_gif_size_is_little_endian() -> None:
    """GIF widths are stored little-endian (unlike PNG's): 258 wide reads as 258."""
    head = b"GIF89a" + struct.pack("<HH", 258, 3) + b"\x00" * 6
    assert dimensions(head, "image/gif") == (258, 3)
