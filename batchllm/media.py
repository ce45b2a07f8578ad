"""Media a row refers to: images and documents, from a path, a URL or the bytes themselves.

Owns ``MediaRef`` (a light reference a ``Request`` carries instead of bytes), reading a reference
when its row is rendered (stat, a content hash, the media type sniffed from magic bytes, image
dimensions from the file's header, a PDF's page count), the size-and-mtime cache that spares
re-reading unchanged files on the next run, and loading the bytes (resized when asked) when the
row is sent. It does not know any provider's part shapes, limits or token rules; those are
``batchllm.providers.media_parts``.

Media types come from content, never from the extension alone: PNG, JPEG, GIF, WebP and PDF are
recognised by their first bytes. A URL's identity is the URL itself: it is passed on as given
where the provider can fetch it, else fetched when its row is sent (``batchllm.media_fetch``), and
its type and size are unknown until then. A ``gs://`` URI is passed on as given (Gemini reads
it); no other object storage is read.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import os
import re
import sqlite3
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batchllm.errors import RowError

IMAGE, DOCUMENT = "image", "document"
_URL_SCHEMES = ("http://", "https://", "gs://")
#: how much of a file its type and dimensions are read from
_HEAD = 64 * 1024
#: the facts cache's page cache, in KiB (SQLite's default is 2,000)
_CACHE_KIB = 256
_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
_PAGE_COUNT = re.compile(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class MediaRef:
    """One image or document of a request, by reference: the bytes are read when it is sent."""

    kind: str
    #: an absolute path, an http(s) URL or a gs:// URI; "" for bytes given in the row
    source: str
    #: what the request key covers: a hash of the content, or the URL as given
    identity: str
    media_type: str | None = None
    size: int | None = None
    width: int | None = None
    height: int | None = None
    pages: int | None = None
    #: OpenAI's image ``detail`` ("low", "high", "auto"), when the template asks for one
    detail: str | None = None
    #: the bytes of a binary column (already held by the row, not copied)
    data: bytes | None = None
    #: (width, height) to downscale to before sending, when the image is over a limit
    resize: tuple[int, int] | None = None
    #: for a URL fetched when its row is sent: the wire format whose limits the bytes must meet
    fetch: str | None = None
    #: whether those bytes may be downscaled to fit them (``[input] resize_images``)
    may_resize: bool = False

    @property
    def is_url(self) -> bool:
        """Whether the source is a URL (http(s) or gs://) rather than a path or bytes."""
        return self.source.startswith(_URL_SCHEMES) and self.data is None

    @property
    def filename(self) -> str:
        """A file name for parts that need one (OpenAI ``file`` parts)."""
        name = os.path.basename(self.source)
        if self.source.startswith(_URL_SCHEMES):
            path = urlsplit(self.source).path
            name = path.rsplit("/", 1)[-1]
        return name or ("document.pdf" if self.kind == DOCUMENT else "image")

    @property
    def key(self) -> str:
        """The reference's part of the request key: its content, detail and any resize."""
        size = f"@{self.resize[0]}x{self.resize[1]}" if self.resize else ""
        return f"{self.kind}:{self.identity}:{self.detail or ''}{size}"

    def resized(self, width: int, height: int) -> MediaRef:
        return replace(self, resize=(width, height), width=width, height=height, size=None)


def ref_json(ref: MediaRef) -> dict[str, object]:
    """A reference as JSON (bytes given in the row as base64), for files that keep requests."""
    found: dict[str, object] = {
        name: getattr(ref, name) for name in MediaRef.__slots__ if name != "data"
    }
    if ref.data is not None:
        found["data"] = base64.b64encode(ref.data).decode("ascii")
    return found


def ref_from(data: dict[str, Any]) -> MediaRef:
    """The reference ``ref_json`` wrote."""
    given = dict(data)
    if given.get("data") is not None:
        given["data"] = base64.b64decode(given["data"])
    if given.get("resize") is not None:
        given["resize"] = tuple(given["resize"])
    return MediaRef(**given)


@dataclass(frozen=True, slots=True)
class Facts:
    """What a file's content says about itself, cached by path, size and mtime."""

    digest: str
    media_type: str | None
    width: int | None
    height: int | None
    pages: int | None


def sniff(head: bytes) -> str | None:
    """The media type of content from its first bytes, or None when not one batchllm knows."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.lstrip()[:5] == b"%PDF-":
        return "application/pdf"
    return None


def dimensions(head: bytes, media_type: str | None) -> tuple[int, int] | None:
    """(width, height) read from an image's header, or None when it cannot be read."""
    try:
        if media_type == "image/png" and len(head) >= 24:
            return struct.unpack(">II", head[16:24])
        if media_type == "image/gif" and len(head) >= 10:
            return struct.unpack("<HH", head[6:10])
        if media_type == "image/webp":
            return _webp_size(head)
        if media_type == "image/jpeg":
            return _jpeg_size(head)
    except struct.error:
        return None
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(head[24:27], "little") + 1
        return w, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 < len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        length = int.from_bytes(head[at + 2 : at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", head[at + 5 : at + 9])
            return w, h
        at += 2 + length
    return None


def pdf_pages(data: bytes) -> int:
    """A PDF's page count: the page tree's ``/Count``, else the page objects counted."""
    counts = [int(n) for n in _PAGE_COUNT.findall(data)]
    return max(counts) if counts else len(_PAGE.findall(data))


def facts_of(data: bytes) -> Facts:
    """Everything ``Facts`` says, from the whole content."""
    media_type = sniff(data[:16])
    size = dimensions(data[:_HEAD], media_type)
    pages = pdf_pages(data) if media_type == "application/pdf" else None
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    width, height = size if size else (None, None)
    return Facts(digest, media_type, width, height, pages)


class FactCache:
    """``Facts`` by (path, size, mtime), on disk, so the next run does not re-read an unchanged
    file; ``None`` as the path keeps it in memory only (for one run, or an estimate)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._db: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            where = ":memory:"
            if self._path is not None:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                where = str(self._path)
            db = sqlite3.connect(where, isolation_level=None, check_same_thread=False)
            db.execute("pragma journal_mode=wal")
            db.execute(f"pragma cache_size = -{_CACHE_KIB}")  # lookups are by key: little to keep
            db.execute(
                "create table if not exists facts (path text primary key, size int, mtime int,"
                " digest text, media_type text, width int, height int, pages int)"
            )
            self._db = db
        return self._db

    def facts(self, path: str) -> tuple[Facts, int]:
        """The file's facts and size, read from the file only when it changed since last time."""
        try:
            stat = os.stat(path)
        except OSError as exc:
            raise RowError(f"media file {path}: {exc.strerror or exc}") from exc
        db = self._open()
        row = db.execute(
            "select digest, media_type, width, height, pages from facts"
            " where path = ? and size = ? and mtime = ?",
            (path, stat.st_size, stat.st_mtime_ns),
        ).fetchone()
        if row is not None:
            return Facts(*row), stat.st_size
        facts = facts_of(read_file(path))
        db.execute(
            "insert or replace into facts values (?, ?, ?, ?, ?, ?, ?, ?)",
            (path, stat.st_size, stat.st_mtime_ns, *_columns(facts)),
        )
        return facts, stat.st_size

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _columns(facts: Facts) -> tuple[object, ...]:
    return (facts.digest, facts.media_type, facts.width, facts.height, facts.pages)


def read_file(path: str) -> bytes:
    """A media file's bytes; a missing or unreadable file is a row error naming it."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise RowError(f"media file {path}: {exc.strerror or exc}") from exc


def reference(
    value: object, kind: str, base: Path, cache: FactCache, detail: str | None = None
) -> MediaRef:
    """The reference a column value makes: bytes, an http(s) URL, or a path (relative to
    ``base``, the input file's folder)."""
    if value is None:
        raise RowError(f"the {kind} column is empty (null) in this row")
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        facts = facts_of(data)
        return _ref(kind, "", facts, len(data), detail, data)
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"the {kind} value {value!r} is not a path, a URL or bytes")
    text = value.strip()
    if text.startswith(_URL_SCHEMES):
        return MediaRef(kind, text, text, detail=detail)
    if "://" in text.split("/", 1)[0] + "/" or text.startswith(("s3:", "gs:", "az:")):
        raise RowError(
            f"the {kind} {text!r}: only local paths, http(s) URLs and gs:// URIs are supported"
        )
    path = os.path.join(os.fspath(base), os.path.expanduser(text))
    if not os.path.isabs(path):  # strings, not Path: Path interns every part of every path
        path = os.path.join(os.getcwd(), path)
    facts, size = cache.facts(path)
    return _ref(kind, path, facts, size, detail, None)


def _ref(
    kind: str, source: str, facts: Facts, size: int, detail: str | None, data: bytes | None
) -> MediaRef:
    where = source or "the bytes in this row"
    if facts.media_type is None:
        raise RowError(f"{where}: not a PNG, JPEG, GIF, WebP or PDF file")
    is_image = facts.media_type.startswith("image/")
    if kind == IMAGE and not is_image:
        raise RowError(f"{where}: an {facts.media_type} file given as an image")
    if kind == DOCUMENT and facts.media_type != "application/pdf":
        raise RowError(f"{where}: an {facts.media_type} file given as a document (PDF)")
    return MediaRef(
        kind, source, facts.digest, facts.media_type, size, facts.width, facts.height,
        facts.pages, detail, data,
    )  # fmt: skip


def fetched(ref: MediaRef, data: bytes) -> MediaRef:
    """A URL's reference once its bytes are in hand: their type, size and dimensions, sent
    inline; its identity stays the URL, as the request key has it."""
    facts = facts_of(data)
    found = _ref(ref.kind, ref.source, facts, len(data), ref.detail, data)
    return replace(found, identity=ref.identity)


def load(ref: MediaRef) -> tuple[bytes, str]:
    """The bytes to send and their media type, read now (and downscaled if the ref says so)."""
    if ref.is_url:
        raise RowError(f"{ref.source}: a URL to fetch before sending, not fetched")
    data = ref.data if ref.data is not None else read_file(ref.source)
    media_type = ref.media_type or "application/octet-stream"
    if ref.resize is not None:
        return downscale(data, ref.resize, media_type)
    return data, media_type


def load_base64(ref: MediaRef) -> tuple[str, str]:
    """``load``, base64-encoded: what inline parts carry."""
    data, media_type = load(ref)
    return base64.b64encode(data).decode("ascii"), media_type


def can_resize() -> bool:
    """Whether Pillow (the ``images`` extra) is installed."""
    return importlib.util.find_spec("PIL") is not None


def downscale(data: bytes, size: tuple[int, int], media_type: str) -> tuple[bytes, str]:
    """The image shrunk to ``size``, re-encoded (PNG stays PNG, anything else JPEG)."""
    from PIL import Image  # the images extra; checked by can_resize before a ref asks for it

    with Image.open(io.BytesIO(data)) as original:
        image = original.resize(size, Image.Resampling.LANCZOS)
        out = io.BytesIO()
        if media_type == "image/png":
            image.save(out, "PNG", optimize=True)
            return out.getvalue(), "image/png"
        image.convert("RGB").save(out, "JPEG", quality=85)
        return out.getvalue(), "image/jpeg"
