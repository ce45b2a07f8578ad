"""Generate the sample images and PDFs that ``jobs/image_tags.toml`` and the tests' examples use.

Running ``python sample_data/make_media.py`` (needs Pillow: ``pip install 'batchllm-jobs[images]'``)
writes, next to this script:

* ``media/photos/`` - 240 small "product photos": a shape (circle, square, triangle, star) in a
  colour on a tinted background, with a word rendered on it; half PNG, half JPEG, 64 to 127 px.
* ``media/docs/`` - 4 small PDFs (receipts of one to three pages, text drawn in the page).
* ``photos.csv`` - one row per photo: ``photo_id``, ``photo`` (the path, relative to the CSV),
  ``drawn_shape`` and ``drawn_colour`` (what it shows, to check replies against).
* ``receipts.csv`` - one row per PDF: ``receipt_id``, ``pdf``, ``pages``.

Everything is drawn here from a fixed seed; nothing is taken from a real data set.
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw

OUT_DIR = Path(__file__).resolve().parent
PHOTOS, DOCS = OUT_DIR / "media" / "photos", OUT_DIR / "media" / "docs"
SEED = 20_261_204
COLOURS = {
    "red": (205, 40, 40),
    "green": (40, 160, 70),
    "blue": (40, 80, 200),
    "yellow": (235, 200, 40),
    "purple": (130, 60, 170),
    "orange": (240, 130, 30),
}
SHAPES = ("circle", "square", "triangle", "star")
WORDS = ("SALE", "NEW", "ACME", "50%", "MUG", "LAMP", "SHOE", "BAG", "HAT", "TOY")


def draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    box: tuple[int, int, int, int],
    fill: tuple[int, int, int],
) -> None:
    left, top, right, bottom = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([((left + right) // 2, top), (right, bottom), (left, bottom)], fill=fill)
    else:
        cx, cy, r = (left + right) / 2, (top + bottom) / 2, (right - left) / 2
        points = [
            (cx + (r if i % 2 == 0 else r / 2.5) * math.sin(i * math.pi / 5),
             cy - (r if i % 2 == 0 else r / 2.5) * math.cos(i * math.pi / 5))
            for i in range(10)
        ]  # fmt: skip
        draw.polygon(points, fill=fill)


def make_photo(rng: random.Random, number: int) -> dict[str, str]:
    shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
    size = rng.randrange(64, 128)
    tint = tuple(rng.randrange(220, 256) for _ in range(3))
    picture = Image.new("RGB", (size, size), tint)
    draw = ImageDraw.Draw(picture)
    margin = size // 8
    draw_shape(draw, shape, (margin, margin, size - margin, size - margin), COLOURS[colour])
    draw.text((3, size - 14), rng.choice(WORDS), fill=(20, 20, 20))
    suffix = "png" if number % 2 else "jpg"
    path = PHOTOS / f"photo_{number:03d}.{suffix}"
    picture.save(path, "PNG" if suffix == "png" else "JPEG", quality=85)
    return {
        "photo_id": f"IMG-{number:03d}",
        "photo": str(path.relative_to(OUT_DIR)),
        "drawn_shape": shape,
        "drawn_colour": colour,
    }


def pdf_bytes(pages: list[list[str]]) -> bytes:
    """A valid PDF: one page per list of lines, in Helvetica, with its cross-reference table."""
    count = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, lines in enumerate(pages):
        text = " ".join(f"({line}) Tj 0 -16 Td" for line in lines)
        stream = f"BT /F1 12 Tf 72 720 Td {text} ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {5 + 2 * i} 0 R"
            " /Resources << /Font << /F1 3 0 R >> >> >>".encode()
        )
        objects.append(f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream")
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
    return bytes(out)


def make_receipt(rng: random.Random, number: int) -> dict[str, str]:
    pages = []
    for page in range(1 + number % 3):
        items = [_item_line(rng) for _ in range(6)]
        pages.append([f"ACME Store receipt R-{number:04d}, page {page + 1}", *items])
    path = DOCS / f"receipt_{number:02d}.pdf"
    path.write_bytes(pdf_bytes(pages))
    return {
        "receipt_id": f"R-{number:04d}",
        "pdf": str(path.relative_to(OUT_DIR)),
        "pages": str(len(pages)),
    }


def _item_line(rng: random.Random) -> str:
    cents = f"{rng.randrange(2, 90)}.{rng.randrange(100):02d}"
    return f"{rng.choice(WORDS).title()} x{rng.randrange(1, 5)}  {cents} USD"


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    PHOTOS.mkdir(parents=True, exist_ok=True)
    DOCS.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    write_csv(OUT_DIR / "photos.csv", [make_photo(rng, n) for n in range(1, 241)])
    write_csv(OUT_DIR / "receipts.csv", [make_receipt(rng, n) for n in range(1, 5)])


if __name__ == "__main__":
    main()
