"""Where a local Parquet file's row groups lie: the byte ranges ``batchllm.prefix`` records and
hashes one chunk a row group, and the row groups a read from a byte offset starts at.

A row group's bytes run from the first page of its column chunks (the dictionary page when
there is one) to the end of the last; the first row group's range takes in the file's leading
magic bytes too, so the ranges cover the file from byte 0 on. Only the row groups that follow
one another with no gap count (``row_groups``): a gap, or a footer that cannot be read, ends
them, and the rest of the file is read in full. It reads footers only; it hashes and parses
no rows (that is ``batchllm.prefix``'s and ``batchllm.source``'s).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from batchllm.errors import InputError

#: the magic bytes a Parquet file starts with
_HEAD = 4


@dataclass(frozen=True, slots=True)
class RowGroup:
    """Bytes ``start``..``end`` of the file hold the row group's ``rows`` rows."""

    start: int
    end: int
    rows: int


def row_groups(path: Path) -> list[RowGroup]:
    """The file's row groups from the first on while each starts where the one before ends; a
    row group after a gap ends them, and so does the one before it (so every range given ends
    where a row group, or the last row group, ends). Empty when the footer cannot be read."""
    try:
        metadata = pq.ParquetFile(path).metadata
        placed = [_placed(metadata.row_group(at)) for at in range(metadata.num_row_groups)]
    except (pa.ArrowException, OSError, ValueError):
        return []
    groups: list[RowGroup] = []
    for start, end, rows in placed:
        if start != (groups[-1].end if groups else _HEAD):
            return groups[:-1]
        groups.append(RowGroup(0 if not groups else start, end, rows))
    return groups


def file_rows(path: Path) -> int | None:
    """The rows of the whole file, as its footer says (None when it cannot be read)."""
    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (pa.ArrowException, OSError, ValueError):
        return None


def groups_from(metadata: Any, offset: int) -> list[int] | None:
    """The row groups to read from byte ``offset`` on: all (None) from 0, none past the last;
    otherwise those from the one that starts there (``InputError`` when none does: the file
    is not the one its row groups were found in)."""
    if offset == 0:
        return None
    placed = [_placed(metadata.row_group(at)) for at in range(metadata.num_row_groups)]
    if placed and offset == placed[-1][1]:
        return []
    for at, (start, _, _) in enumerate(placed):
        if start == offset:
            return list(range(at, len(placed)))
    raise InputError("the Parquet input changed while it was read; run the job again")


def _placed(group: Any) -> tuple[int, int, int]:
    """(first byte, byte after the last, rows) of a row group's column chunks."""
    starts, ends = [], []
    for at in range(group.num_columns):
        column = group.column(at)
        start = column.dictionary_page_offset if column.has_dictionary_page else None
        start = column.data_page_offset if start is None else start
        starts.append(start)
        ends.append(start + column.total_compressed_size)
    if not starts:
        raise ValueError("a row group without columns")
    return min(starts), max(ends), group.num_rows
