"""The input table as a stream of record batches, and each row's stable key.

Owns reading CSV (also gzip-compressed), Parquet and JSON Lines with pyarrow, batch by batch,
so memory does not grow with the input's size; checking up front that the file opens and has the
columns the job names; and deriving row keys. It knows nothing of prompts or providers.

CSV cells are read as text, exactly as written (``00123`` stays ``00123``); Parquet and JSONL keep
their own types.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from batchllm.errors import InputError
from batchllm.job import InputSpec

BATCH_ROWS = 1024
_CSV_BLOCK = 1 << 20
_PRIMITIVE = (
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_boolean,
)


class Source:
    """An opened, checked input. ``batches()`` may be called more than once."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        self.path = spec.path
        if not self.path.is_file():
            raise InputError(f"{self.path}: input file not found")
        self.schema = self._read_schema()
        self.columns: list[str] = list(self.schema.names)
        self._check_columns()

    def batches(self, batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """Yield the input in record batches of at most ``batch_rows`` rows."""
        try:
            yield from self._rebatch(self._open(), batch_rows)
        except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{self.path}: cannot parse {self.spec.format} input: {exc}") from None

    def count_rows(self) -> int:
        """Count the rows by streaming through the file (Parquet reads its footer only)."""
        if self.spec.format == "parquet":
            return int(pq.ParquetFile(self.path).metadata.num_rows)
        return sum(batch.num_rows for batch in self.batches(batch_rows=1 << 16))

    def copy_type(self, column: str) -> pa.DataType:
        """The Arrow type a copied input column gets in the results (text unless primitive)."""
        kind = self.schema.field(column).type
        return kind if any(test(kind) for test in _PRIMITIVE) else pa.string()

    def _read_schema(self) -> pa.Schema:
        try:
            if self.spec.format == "parquet":
                return pq.ParquetFile(self.path).schema_arrow
            reader = self._open_stream()
            schema = reader.schema
            reader.close()
        except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{self.path}: cannot read as {self.spec.format}: {exc}") from None
        return schema

    def _check_columns(self) -> None:
        wanted = [self.spec.id_column] if self.spec.id_column else []
        for column in [*wanted, *self.spec.columns]:
            if column not in self.columns:
                raise InputError(
                    f"{self.path}: column '{column}' named in [input] is not in the input "
                    f"(columns: {', '.join(self.columns)})"
                )

    def _open(self) -> Iterator[pa.RecordBatch]:
        if self.spec.format == "parquet":
            batches: Iterator[pa.RecordBatch] = pq.ParquetFile(self.path).iter_batches(
                batch_size=BATCH_ROWS
            )
            return batches
        return iter(self._open_stream(text_columns=self.spec.format == "csv"))

    def _open_stream(self, *, text_columns: bool = False) -> Any:
        stream = pa.input_stream(str(self.path), compression="detect")
        if self.spec.format == "jsonl":
            return pa_json.open_json(
                stream, read_options=pa_json.ReadOptions(block_size=_CSV_BLOCK)
            )
        convert = pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in self.columns} if text_columns else None,
            strings_can_be_null=False,
        )
        return pa_csv.open_csv(
            stream,
            read_options=pa_csv.ReadOptions(block_size=_CSV_BLOCK),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=convert,
        )

    @staticmethod
    def _rebatch(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for start in range(0, batch.num_rows, size):
                yield batch.slice(start, size)


def row_key(row: dict[str, Any], id_column: str | None) -> str:
    """The row's identity across runs: its id, or a hash of its whole content.

    Without an id column, rows with identical content share one key (and one result).
    """
    if id_column is not None:
        value = row.get(id_column)
        if value is not None and value != "":
            return str(value)
    content = orjson.dumps(row, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return "h:" + hashlib.blake2b(content, digest_size=12).hexdigest()
