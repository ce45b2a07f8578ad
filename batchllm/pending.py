"""Outcomes recorded in the journal but not yet in a part, held column-wise until the cut.

The store hands each outcome's row here after its journal line is written. Rows are gathered
``BATCH_ROWS`` at a time and then become one Arrow record batch of the results' schema, so a
part waiting to be cut costs about its Arrow size (~300 bytes an outcome on the nightly bench)
rather than a Python dict an outcome (~2.3 KB). The batches become the part's table without a
copy. Writing parts and journals is ``store``'s; this module writes nothing.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

#: rows gathered as dicts before they become one record batch
BATCH_ROWS = 512


class Pending:
    """A part's rows to be: the last few as dicts, the rest as Arrow record batches."""

    def __init__(self, schema: pa.Schema, batch_rows: int = BATCH_ROWS) -> None:
        self.schema = schema
        self.batch_rows = batch_rows
        self.rows = 0
        self._dicts: list[dict[str, Any]] = []
        self._batches: list[pa.RecordBatch] = []

    def __len__(self) -> int:
        return self.rows

    def add(self, row: dict[str, Any]) -> None:
        self._dicts.append(row)
        self.rows += 1
        if len(self._dicts) >= self.batch_rows:
            self._seal()

    def table(self) -> pa.Table:
        """Every row held, in the order added, as one table (its batches are its chunks)."""
        self._seal()
        return pa.Table.from_batches(self._batches, schema=self.schema)

    def _seal(self) -> None:
        if not self._dicts:
            return
        batch = pa.RecordBatch.from_pylist(self._dicts, schema=self.schema)
        self._dicts = []
        self._batches.append(batch)
