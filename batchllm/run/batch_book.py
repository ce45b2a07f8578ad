"""The batch book: ``batches/book.json`` and the files of each batch in the run directory.

Owns what batch mode keeps on disk: for each batch (by tag) its requests as the provider takes
them (``{tag}.jsonl``), its rows (``{tag}.rows.jsonl``: custom id, copied columns and the
rendered request, enough to record an outcome without the input), and its entry in the book,
saved atomically after each step. A batch being gathered is a ``Spool``: each request line is
written to its file as it is rendered, so a batch of image rows never holds its base64 in memory;
the files take their final names when the batch is booked as prepared (a ``.part`` file left by a
killed process belongs to no booked batch). Submitting, polling and collecting belong to
``batchllm.run.batch``.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from batchllm.media import ref_from, ref_json
from batchllm.render import Request


@dataclass(slots=True)
class Pending:
    """Requests gathered for the next batch (provider entries), with their rows."""

    entries: list[bytes]
    rows: list[bytes]


class Spool:
    """A batch being gathered: its request lines and row lines appended to ``.part`` files."""

    def __init__(self, folder: Path) -> None:
        self.tag = new_tag()
        self.requests = 0
        #: bytes of the request lines, newlines included
        self.size = 0
        self._paths = (folder / f"{self.tag}.jsonl", folder / f"{self.tag}.rows.jsonl")
        self._entries = _part(self._paths[0]).open("wb")
        self._rows = _part(self._paths[1]).open("wb")

    def add_entry(self, entry: bytes) -> None:
        self._entries.write(entry + b"\n")
        self.requests += 1
        self.size += len(entry) + 1

    def add_row(self, row: bytes) -> None:
        self._rows.write(row + b"\n")

    def seal(self) -> None:
        """The files under their final names: the batch can be booked."""
        self._close()
        for path in self._paths:
            os.replace(_part(path), path)

    def discard(self) -> list[bytes]:
        """Give up the batch: its row lines, and no files left behind."""
        self._close()
        lines = _part(self._paths[1]).read_bytes().splitlines()
        for path in self._paths:
            _part(path).unlink()
        return lines

    def _close(self) -> None:
        self._entries.close()
        self._rows.close()


def new_tag() -> str:
    """A batch's tag: when it was started, and a random suffix."""
    return f"b{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


class Book:
    """``batches/book.json``: every batch of this run directory and how far it got."""

    def __init__(self, run_dir: Path, *, create: bool = True) -> None:
        self.dir = run_dir / "batches"
        if create:
            self.dir.mkdir(exist_ok=True)
        self.path = self.dir / "book.json"
        self.batches: dict[str, dict[str, Any]] = (
            orjson.loads(self.path.read_bytes()) if self.path.exists() else {}
        )

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self.batches, option=orjson.OPT_INDENT_2))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def open_tags(self) -> list[str]:
        return [tag for tag, entry in self.batches.items() if entry["state"] != "done"]

    def in_flight(self) -> dict[tuple[str, str], str]:
        """The rows of batches not done yet, (row key, request key) -> tag: the producer skips
        these rows, and a new row asking one of these requests joins its batch."""
        found: dict[tuple[str, str], str] = {}
        for tag in self.open_tags():
            for line in self.rows(tag):
                row = orjson.loads(line)
                found[(row["request"]["row_key"], row["custom_id"])] = tag
        return found

    def rows(self, tag: str) -> list[bytes]:
        return (self.dir / f"{tag}.rows.jsonl").read_bytes().splitlines()

    def add_row(self, tag: str, row: bytes) -> None:
        """One more row for a batch not collected yet: a row whose request it already holds."""
        with (self.dir / f"{tag}.rows.jsonl").open("ab") as handle:
            handle.write(row + b"\n")

    def entries(self, tag: str) -> list[bytes]:
        return (self.dir / f"{tag}.jsonl").read_bytes().splitlines()

    def batch_ids(self) -> set[str]:
        return {entry["batch_id"] for entry in self.batches.values() if "batch_id" in entry}


def entry_key(line: bytes) -> str:
    """The custom id of a provider entry: ``custom_id`` (OpenAI, Anthropic) or
    ``metadata.key`` (Gemini)."""
    data = orjson.loads(line)
    return str(data["custom_id"] if "custom_id" in data else data["metadata"]["key"])


def request_json(request: Request) -> dict[str, Any]:
    """A rendered request as a row line keeps it (``request_from`` reads it back)."""
    return {
        "row_key": request.row_key, "request_key": request.request_key, "model": request.model,
        "messages": request.messages, "params": dict(request.params),
        "est_input_tokens": request.est_input_tokens, "max_tokens": request.max_tokens,
        "response_schema": request.response_schema, "schema_strict": request.schema_strict,
        "input_hash": request.input_hash, "media": [ref_json(ref) for ref in request.media],
        "service_tier": request.service_tier,
    }  # fmt: skip


def request_from(data: dict[str, Any]) -> Request:
    """The request a row line keeps (``data`` is used up)."""
    messages = tuple((role, text) for role, text in data.pop("messages"))
    media = tuple(ref_from(ref) for ref in data.pop("media", ()))
    return Request(messages=messages, media=media, **data)
