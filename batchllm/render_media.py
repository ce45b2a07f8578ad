"""The media of a row as its prompt is rendered: ``image()`` and ``document()`` in templates.

Owns the template functions (``{{ image(photo_path) }}``, ``{{ image(url, detail="low") }}``,
``{{ document(pdf_path) }}``), which record a ``MediaRef`` and print a marker where the part sits,
the ``[input] images`` / ``documents`` columns (placed after the user text), and what a row's media
add to its request: the limits checked, the token estimate, the request key's part. Reading files
is ``batchllm.media``; part shapes, limits and token rules are ``batchllm.providers.media_parts``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from batchllm.errors import RowError
from batchllm.job.spec import JobSpec
from batchllm.media import DOCUMENT, IMAGE, FactCache, MediaRef, reference
from batchllm.providers import media_parts

#: the names templates call; they are not columns
FUNCTIONS = frozenset({IMAGE, DOCUMENT})
_DETAILS = frozenset({"low", "high", "auto"})
FACTS_FILE = "media-facts.sqlite"


class MediaCollector:
    """The media one job's rows refer to, gathered row by row while their prompts render."""

    def __init__(self, job: JobSpec) -> None:
        self.style = media_parts.style_of(job.model.provider)
        self.resize = job.input.resize_images
        self.fetch_urls = job.input.fetch_urls
        self.detail = job.input.image_detail
        self._base = job.input.path.parent
        self._columns = tuple((IMAGE, c) for c in job.input.images) + tuple(
            (DOCUMENT, c) for c in job.input.documents
        )
        self.cache = FactCache(job.output.dir / FACTS_FILE)
        self._row: list[MediaRef] = []

    @property
    def used(self) -> bool:
        """Whether the job names media columns in ``[input]`` (templates are seen per row)."""
        return bool(self._columns)

    def functions(self) -> dict[str, Callable[..., str]]:
        """The template globals."""
        return {IMAGE: self.image, DOCUMENT: self.document}

    def start(self) -> None:
        self._row = []

    def image(self, value: Any, detail: str | None = None) -> str:
        """Place an image (a path, an http(s) URL or bytes) here in the prompt."""
        if detail is not None and detail not in _DETAILS:
            raise RowError(f"image detail {detail!r}: expected one of low, high, auto")
        return self._add(reference(value, IMAGE, self._base, self.cache, detail or self.detail))

    def document(self, value: Any) -> str:
        """Place a document (a PDF, by path, http(s) URL or bytes) here in the prompt."""
        return self._add(reference(value, DOCUMENT, self._base, self.cache))

    def _add(self, ref: MediaRef) -> str:
        self._row.append(ref)
        return media_parts.marker(len(self._row) - 1)

    def columns(self, row: Mapping[str, Any]) -> str:
        """Markers for the ``[input]`` media columns of ``row``, to follow the user text."""
        placed = []
        for kind, column in self._columns:
            if column not in row:
                raise RowError(f"the {kind} column '{column}' is not in this row")
            if kind == IMAGE:
                placed.append(self.image(row[column]))
            else:
                placed.append(self.document(row[column]))
        return "".join(placed)

    def finish(self) -> tuple[tuple[MediaRef, ...], int]:
        """The row's media as they will be sent, and their estimated input tokens."""
        if not self._row:
            return (), 0
        sent = media_parts.admit(self.style, self._row, self.resize, self.fetch_urls)
        return sent, media_parts.media_tokens(self.style, sent)

    def close(self) -> None:
        self.cache.close()
