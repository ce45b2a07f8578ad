"""The input table as a stream of rows.

Owns reading CSV (also gzip-compressed, in any encoding), Parquet and JSON Lines with pyarrow,
batch by batch, so memory does not grow with the input's size; and checking up front that the
file opens, has rows and has the columns the job names. Row keys and duplicate ids are
``batchllm.keys``'s. It knows nothing of prompts or providers.

A problem confined to some rows never stops the input: a CSV line with the wrong number of fields,
or a cell that is not valid text in the file's encoding, comes out as a row with a ``problem``
(it becomes an error row). CSV cells are read as text, exactly as written (``00123`` stays
``00123``); Parquet and JSONL keep their types, nested values as JSON text.
"""

from __future__ import annotations

import hashlib
import io
import re
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from batchllm.errors import InputError
from batchllm.hashset import HashSet64
from batchllm.input_streams import FileSpan, LossyUtf8
from batchllm.job import InputSpec
from batchllm.prefix_parquet import groups_from
from batchllm.scale.objects import input_exists, open_input

BATCH_ROWS = 1024
#: bytes a CSV or JSONL reader takes at a time; a longer row makes the pass read again with
#: blocks 8 times larger, up to _MAX_BLOCK (most inputs never need it, and memory stays low)
_BLOCK = 1 << 19
_MAX_BLOCK = 1 << 30
_PRIMITIVE = (
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_boolean,
)
#: file name endings pyarrow reads decompressed: never read from a byte offset
_COMPRESSED = (".gz", ".bz2", ".zst", ".lz4", ".br", ".snappy")
#: a one-thread reader names the row (within its block), a threaded one does not
_RAGGED = re.compile(r"CSV parse error: (Row #\d+: )?Expected")
_ROW_IN_BLOCK = re.compile(r"\s*in row \d+\s*$")
_READ_ERRORS = (pa.ArrowInvalid, OSError, UnicodeDecodeError, LookupError)


@dataclass(frozen=True, slots=True)
class InputRow:
    """One input row; ``problem`` says why it cannot be used, if it cannot."""

    data: dict[str, Any]
    problem: str | None = None
    key: str | None = None


@dataclass(frozen=True, slots=True)
class RowBatch:
    """A batch of input rows as read (``batch``; None after the last) and the unusable lines
    met before it (``bad``); ``lossy``: read with bytes that are not UTF-8 replaced."""

    batch: pa.RecordBatch | None
    bad: list[InputRow]
    lossy: bool = False


class Source:
    """An opened, checked input. ``batches()`` and ``rows()`` may be called more than once, also
    at the same time (a run counts the rows in a thread while it reads them)."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        self.path = spec.path
        if not (input_exists(spec.uri) if spec.uri else self.path.is_file()):
            raise InputError(f"{spec.uri or self.path}: input file not found")
        self.schema = self._read_schema()
        self.columns: list[str] = list(self.schema.names)
        #: a Parquet file's binary columns stay bytes (images, PDFs); CSV cells are text
        self._binary = frozenset(
            f.name for f in self.schema if spec.format == "parquet" and pa.types.is_binary(f.type)
        )
        self._check_columns()
        self._check_not_empty()

    def batches(self, batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """Yield the input in record batches of at most ``batch_rows`` rows (bad lines left out)."""
        return self._read(batch_rows, _Skipped())

    def rows(self, batch_rows: int = BATCH_ROWS) -> Iterator[list[InputRow]]:
        """Yield the input as lists of rows, the unusable ones carrying their problem."""
        for rows in self.row_batches(batch_rows):
            yield rows.bad + self.to_rows(rows)

    def row_batches(
        self, batch_rows: int = BATCH_ROWS, span: tuple[int, int] | None = None
    ) -> Iterator[RowBatch]:
        """Yield the input as Arrow batches, each with the unusable lines read before it; rows
        become dicts only when asked (``to_rows``), so rows found done cost no Python object.
        ``span``: read only the file's bytes from ``start`` to ``end``, ``start`` at the first
        byte of a row (a plain CSV or JSON Lines file), or of a row group (a Parquet file, read
        to its end): ``spans``."""
        skipped = _Skipped()
        for batch in self._read(batch_rows, skipped, span):
            yield RowBatch(batch, _bad_rows(skipped.drain()), skipped.lossy)
        tail = _bad_rows(skipped.drain())
        if tail:
            yield RowBatch(None, tail, skipped.lossy)

    def to_rows(self, rows: RowBatch, indices: Any = None) -> list[InputRow]:
        """The batch's rows at ``indices`` (all when None) as ``InputRow``s."""
        if rows.batch is None:
            return []
        batch = rows.batch if indices is None else rows.batch.take(pa.array(indices, pa.int64()))
        return [self._row(data, rows.lossy) for data in batch.to_pylist()]

    def count_rows(self) -> int:
        """Count the rows by streaming through the file (Parquet reads its footer only)."""
        if self.spec.format == "parquet":
            return int(pq.ParquetFile(self._parquet()).metadata.num_rows)
        skipped = _Skipped()
        counted = int(sum(batch.num_rows for batch in self._read(1 << 16, skipped)))
        return counted + len(skipped.drain())

    def copy_type(self, column: str) -> pa.DataType:
        """The Arrow type a copied input column gets in the results (text unless primitive)."""
        kind = self.schema.field(column).type
        if self.spec.format == "csv":
            return pa.string()
        return kind if any(test(kind) for test in _PRIMITIVE) else pa.string()

    @property
    def spans(self) -> bool:
        """Whether the input can be read from a byte offset on (``row_batches``' ``span``): a
        local, uncompressed CSV file in UTF-8, JSON Lines or Parquet file."""
        utf8 = self.spec.encoding.lower().replace("_", "-") in ("utf-8", "utf8")
        return (
            self.spec.uri is None
            and (self.spec.format != "csv" or utf8)
            and self.path.suffix.lower() not in _COMPRESSED
        )

    def _read(
        self, batch_rows: int, skipped: _Skipped, span: tuple[int, int] | None = None
    ) -> Generator[pa.RecordBatch]:
        """One pass over the input. A row longer than the read block stops the reader; the pass
        then starts again with larger blocks and skips the rows it has already given."""
        _quiet_unreadable_lines()
        if span is not None and span[0] >= span[1]:
            return
        given = 0
        block = _BLOCK
        while True:
            try:
                reader = self._open(block, skipped, span)
                for batch in _rebatch(_skip_rows(reader, given), batch_rows):
                    given += batch.num_rows
                    yield batch
                return
            except _READ_ERRORS as exc:
                if _unreadable_ragged_line(exc) and not skipped.lossy:
                    skipped.lossy = True  # read again; that line becomes an error row
                    continue
                failed = f"cannot parse {self.spec.format} input after its first {given:,} rows"
                block = self._larger_block(block, exc, failed)

    def _larger_block(self, block: int, exc: BaseException, failed: str) -> int:
        """The block to read again with after ``exc``: larger, when a row was longer than the
        block; otherwise the read has failed for good (``InputError``, saying ``failed``)."""
        if _straddles(exc) and block < _MAX_BLOCK:
            return block * 8
        # pyarrow numbers rows within its block, which says nothing about where in the file
        reason = _ROW_IN_BLOCK.sub("", str(exc))
        raise InputError(f"{self.path}: {failed}: {reason}") from None

    def _row(self, data: dict[str, Any], lossy: bool = False) -> InputRow:
        """``lossy``: the file was read with bytes that are not UTF-8 replaced by U+FFFD (a
        ragged line held some), so a cell with U+FFFD is taken as one that held such bytes."""
        problem = None
        for name, value in data.items():
            if isinstance(value, bytes) and name not in self._binary:
                try:
                    data[name] = value.decode("utf-8")
                except UnicodeDecodeError as exc:
                    data[name] = value.decode("utf-8", errors="replace")
                    problem = problem or (
                        f"column '{name}' is not valid UTF-8 (byte 0x{value[exc.start]:02x} at "
                        f"{exc.start}); if the file is in another encoding, set [input] encoding"
                    )
                if lossy and "\ufffd" in data[name]:
                    problem = problem or (
                        f"column '{name}' is not valid UTF-8; if the file is in another "
                        "encoding, set [input] encoding"
                    )
            elif isinstance(value, dict | list):
                data[name] = orjson.dumps(value, default=str).decode()
        return InputRow(data, problem)

    def _read_schema(self) -> pa.Schema:
        if self.spec.format == "parquet":
            try:
                return pq.ParquetFile(self._parquet()).schema_arrow
            except _READ_ERRORS as exc:
                raise InputError(f"{self.path}: cannot read as parquet: {exc}") from None
        _quiet_unreadable_lines()
        block = _BLOCK
        skipped = _Skipped()
        while True:
            try:
                reader = self._open_stream(block, skipped)
                schema: pa.Schema = reader.schema
                reader.close()
                return schema
            except _READ_ERRORS as exc:
                if _unreadable_ragged_line(exc) and not skipped.lossy:
                    skipped.lossy = True
                    continue
                block = self._larger_block(block, exc, f"cannot read as {self.spec.format}")

    def _check_columns(self) -> None:
        wanted = [self.spec.id_column] if self.spec.id_column else []
        for column in [*wanted, *self.spec.columns]:
            if column not in self.columns:
                raise InputError(
                    f"{self.path}: column '{column}' named in [input] is not in the input "
                    f"(columns: {', '.join(self.columns)})"
                )

    def _check_not_empty(self) -> None:
        if self.spec.format == "parquet":
            empty = pq.ParquetFile(self._parquet()).metadata.num_rows == 0
        else:
            batches = self._read(1, _Skipped())
            empty = next(batches, None) is None
            batches.close()  # its reader's buffers go now, not when collected
            pa.default_memory_pool().release_unused()
        if empty:
            raise InputError(f"{self.path}: the input has no rows")

    def _open(
        self, block: int, skipped: _Skipped, span: tuple[int, int] | None
    ) -> Iterator[pa.RecordBatch]:
        if self.spec.format == "parquet":
            parquet = pq.ParquetFile(self._parquet())
            groups = None if span is None else groups_from(parquet.metadata, span[0])
            return iter(parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=groups))
        return iter(self._open_stream(block, skipped, typed=True, span=span))

    def _parquet(self) -> Any:
        """The Parquet input: its path, or a file opened on object storage."""
        return open_input(self.spec.uri, random_access=True) if self.spec.uri else self.path

    def _open_stream(
        self,
        block: int,
        skipped: _Skipped,
        *,
        typed: bool = False,
        span: tuple[int, int] | None = None,
    ) -> Any:
        if span is not None:
            stream: Any = io.BufferedReader(FileSpan(self.path, *span), buffer_size=1 << 16)
        elif self.spec.uri:
            stream = open_input(self.spec.uri)
        else:
            stream = pa.input_stream(str(self.path), compression="detect")
        if skipped.lossy:
            stream = io.BufferedReader(LossyUtf8(stream), buffer_size=1 << 16)
        middle = span is not None and span[0] > 0  # no header line: the columns are known
        if self.spec.format == "jsonl":
            return pa_json.open_json(
                stream,
                read_options=pa_json.ReadOptions(block_size=block, use_threads=False),
                parse_options=pa_json.ParseOptions(explicit_schema=self.schema if middle else None),
            )
        # Cells are read as bytes and decoded per row, so one bad cell fails one row, not the file.
        utf8 = self.spec.encoding.lower().replace("_", "-") in ("utf-8", "utf8")
        cell = pa.binary() if utf8 else pa.string()
        convert = pa_csv.ConvertOptions(
            column_types=dict.fromkeys(self.columns, cell) if typed else None,
            strings_can_be_null=False,
        )
        return pa_csv.open_csv(
            stream,
            # one thread: measured faster here than Arrow's pool, and its pages stay few
            read_options=pa_csv.ReadOptions(
                block_size=block,
                use_threads=False,
                encoding=self.spec.encoding,
                column_names=self.columns if middle else None,
            ),
            parse_options=pa_csv.ParseOptions(
                delimiter=self.spec.delimiter,
                newlines_in_values=True,
                invalid_row_handler=skipped.skip,
            ),
            convert_options=convert,
        )


class _Skipped:
    """The CSV lines one pass skipped for a wrong number of fields, each kept once even when
    the pass starts again (a later block may have been parsed before a read failed). A line
    is remembered by its hash only: 16 bytes at most, however long and many the lines.
    ``lossy``: the pass reads the file with bytes that are not UTF-8 replaced, because pyarrow
    cannot hand such a skipped line to the handler."""

    __slots__ = ("_lines", "_seen", "lossy")

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._seen = HashSet64()
        self.lossy = False

    def skip(self, row: Any) -> str:
        text = str(row.text)
        if self._seen.add(hash(text)):
            self._lines.append(text)
        return "skip"

    def drain(self) -> list[str]:
        lines, self._lines = self._lines, []
        return lines


def _bad_rows(lines: list[str]) -> list[InputRow]:
    return [
        InputRow(
            {},
            f"CSV line has the wrong number of fields for the header: {text[:200]!r}",
            key="line:" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest(),
        )
        for text in lines
    ]


def _quiet_unreadable_lines() -> None:
    """Wrap the unraisable-exception hook (once, whoever set it) so that it drops the
    UnicodeDecodeError pyarrow meets before it can call ``_Skipped.skip``: that read is done
    again, lossy, and the line becomes an error row; everything else is passed on."""
    hook = sys.unraisablehook
    if getattr(hook, "_batchllm_quiet", False):
        return

    def report(unraisable: Any) -> None:
        handler = getattr(unraisable.object, "__self__", None)
        if isinstance(handler, _Skipped) and isinstance(unraisable.exc_value, UnicodeDecodeError):
            return
        hook(unraisable)

    report._batchllm_quiet = True  # type: ignore[attr-defined]  # a marker on the function
    sys.unraisablehook = report


def _unreadable_ragged_line(exc: BaseException) -> bool:
    """Whether pyarrow failed to hand a ragged CSV line to the handler (it decodes the line
    first, and a line that is not UTF-8 fails there): it then reports the wrong field count."""
    return isinstance(exc, pa.ArrowInvalid) and _RAGGED.match(str(exc)) is not None


def _straddles(exc: BaseException) -> bool:
    """Whether the reader failed on a row longer than its block."""
    return isinstance(exc, pa.ArrowInvalid) and "straddl" in str(exc)


def _skip_rows(batches: Iterator[pa.RecordBatch], count: int) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        if count >= batch.num_rows:
            count -= batch.num_rows
            continue
        yield batch.slice(count) if count else batch
        count = 0


def _rebatch(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for start in range(0, batch.num_rows, size):
            yield batch.slice(start, size)
