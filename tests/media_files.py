"""Small real media files for tests: images drawn by Pillow (PNG, JPEG, GIF, WebP), PDFs by hand."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw


def image(path: Path, size: tuple[int, int] = (64, 48), colour: str = "red", fmt: str = "") -> Path:
    """An image of ``size`` with a shape and a word on it, saved in ``fmt`` (else by suffix)."""
    picture = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(picture)
    draw.ellipse((2, 2, size[0] - 3, size[1] - 3), fill=colour)
    draw.text((4, 4), colour, fill="black")
    picture.save(path, fmt or None)
    return path


def noisy_jpeg(path: Path, size: tuple[int, int]) -> Path:
    """A JPEG of random pixels: large in bytes for its size."""
    import os

    picture = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    picture.save(path, "JPEG", quality=95)
    return path


def pdf(path: Path, pages: int = 1) -> Path:
    """A valid PDF of ``pages`` blank pages, with its cross-reference table."""
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
    ]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"] * pages
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    start = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{start}\n%%EOF\n".encode()
    )
    path.write_bytes(bytes(out))
    return path
