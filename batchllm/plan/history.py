"""How long this job's batches took: ``batches/history.json`` in the run directory.

Owns the record of each collected batch (provider, requests, seconds from submitting to its end,
how it ended) and the typical time a new batch is taken to need; the book of open batches is
``batchllm.run.batch_book``'s.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

import orjson

#: batches within this factor of a new batch's size count as its size
SIZE_FACTOR = 4.0


class History:
    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "batches" / "history.json"
        self.entries: list[dict[str, Any]] = (
            orjson.loads(self.path.read_bytes()) if self.path.exists() else []
        )

    def add(self, provider: str, requests: int, seconds: float, status: str) -> None:
        """One collected batch; a cancelled one is kept as a lower bound of its time."""
        entry = {"provider": provider, "requests": requests, "status": status}
        self.entries.append(entry | {"seconds": round(seconds, 3)})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self.entries, option=orjson.OPT_INDENT_2))
        os.replace(tmp, self.path)

    def typical_s(self, provider: str, requests: int) -> float | None:
        """The median time of this provider's batches of about this size (of any size when
        none is close), or None when none has returned yet."""
        mine = [e for e in self.entries if e["provider"] == provider]
        close = [e for e in mine if _close(e["requests"], requests)]
        chosen = close or mine
        return statistics.median(e["seconds"] for e in chosen) if chosen else None


def _close(a: int, b: int) -> bool:
    return max(a, b) <= SIZE_FACTOR * max(min(a, b), 1)
