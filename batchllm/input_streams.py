"""Byte streams the input's reader reads through: a range of a file, and a file made UTF-8.

``FileSpan`` gives the bytes of a file from one offset to another (a grown input read from where
the last read ended, and never past the size it had when the read began); ``LossyUtf8`` gives a
stream with every byte that is not UTF-8 replaced by U+FFFD. Parsing is ``batchllm.source``'s.
"""

from __future__ import annotations

import codecs
import io
from typing import Any


class FileSpan(io.RawIOBase):
    """The bytes of a file from ``start`` to ``end`` (what is appended later is not read)."""

    def __init__(self, path: Any, start: int, end: int) -> None:
        self._file = open(path, "rb")  # noqa: SIM115  # closed with this stream
        self._file.seek(start)
        self._left = end - start

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)[: self._left]
        count = self._file.readinto(view)
        self._left -= count
        return count

    def close(self) -> None:
        self._file.close()
        super().close()


class LossyUtf8(io.RawIOBase):
    """A byte stream with every byte that is not UTF-8 replaced by U+FFFD."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = self._stream.read(1 << 16)
            self._pending = self._decoder.decode(chunk, final=not chunk).encode()
            if not chunk:
                break
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count
