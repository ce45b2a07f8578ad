"""SQL over a run directory with DuckDB.

Views: ``results`` (the current answer for every row: the latest outcome per ``row_key``),
over the run directory's parts and, for a sharded run, its shards' (``shards/NNN/``);
``all_results`` (every outcome ever written, for history), and ``runs`` (one row per run from the
manifest). Read-only unless asked: only SELECT (and EXPLAIN) statements run, so a query cannot
write files (``COPY ... TO``, ``EXPORT``) or attach databases; ``allow_writes`` lets every statement
run (exports). The connection is in memory: the run directory itself is never opened for writing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from batchllm.compact import compacted
from batchllm.errors import UserError

if TYPE_CHECKING:
    import duckdb
from batchllm.job import JobSpec, load_job
from batchllm.parts import check_parts, stores
from batchllm.run.record import RunRecord
from batchllm.scale import objects


def run_dir_of(target: str | Path | JobSpec) -> Path:
    """The run directory named by a job file, a ``JobSpec`` or the directory itself."""
    if isinstance(target, JobSpec):
        return target.output_dir
    path = Path(target)
    if path.is_dir():
        return path
    if path.suffix == ".toml" or path.is_file():
        return load_job(path).output_dir
    raise UserError(f"{path}: neither a job file nor a run directory")


def connect(target: str | Path | JobSpec) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the run directory's views."""
    import duckdb  # loaded only when a query is asked for: a run does not need it

    uri = output_uri(target)
    if uri is not None:
        return objects.connect(uri, _runs_of)
    run_dir = run_dir_of(target)
    places = [d for d in stores(run_dir) if any((d / "results").glob("part-*.parquet"))]
    if not places:
        raise UserError(f"{run_dir}: no results yet (run the job first)")
    for place in places:
        check_parts(place)
    con = duckdb.connect(":memory:")
    # a sharded run's rows are disjoint between shards: their parts read as one directory's
    parts = sorted(part for place in places for part in (place / "results").glob("part-*.parquet"))
    con.execute(f"create view all_results as select * from {_read(parts)}")
    columns = {row[0] for row in con.execute("describe all_results").fetchall()}
    # ``seq`` cannot go backwards; directories written before it existed fall back to time
    latest = "seq desc nulls last, finished_at desc" if "seq" in columns else "finished_at desc"
    current = [part for part in parts if part.name.endswith("-current.parquet")]
    recent = [part for part in parts if not compacted(part)]
    newest = (
        f"select * from {_read(recent)} "
        f"qualify row_number() over (partition by row_key order by {latest}) = 1"
    )
    if not current:
        con.execute(f"create view results as {newest}")
    elif not recent:
        con.execute(f"create view results as select * from {_read(current)}")
    else:  # the compacted part holds one outcome a row: only rows written since are looked at
        con.execute(
            f"create view results as select * from {_read(current)} "
            f"where row_key not in (select row_key from {_read(recent)}) "
            f"union all by name {newest}"
        )
    con.register("runs", _runs_table(run_dir))
    return con


def _read(parts: list[Path]) -> str:
    """``read_parquet`` of these files (their names taken literally, not as patterns)."""
    names = ", ".join(f"'{_sql_string(_glob_literal(str(part)))}'" for part in parts)
    return f"read_parquet([{names}], union_by_name=true)"


def _glob_literal(path: str) -> str:
    """``path`` with DuckDB's glob characters bracketed, so a directory named ``runs[1]`` is
    itself and not a pattern."""
    return re.sub(r"([\[\]*?{}])", r"[\1]", path)


def _sql_string(text: str) -> str:
    return text.replace("'", "''")


#: the statements a read-only query may hold
_READING = frozenset({"SELECT", "EXPLAIN"})


def query(target: str | Path | JobSpec, sql: str, *, allow_writes: bool = False) -> pa.Table:
    """Run ``sql`` over the run directory and return the result as an Arrow table;
    ``allow_writes``: let statements other than SELECT run (``COPY ... TO`` for exports)."""
    import duckdb

    con = connect(target)
    try:
        if not allow_writes:
            _check_reading(con, sql)
        relation = con.sql(sql)
        if relation is None:
            return pa.table({})
        return relation.to_arrow_table()
    except duckdb.Error as exc:
        raise UserError(f"query failed: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


def _check_reading(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    for statement in con.extract_statements(sql):
        kind = statement.type.name
        if kind not in _READING:
            raise UserError(
                f"query is read-only: a {kind} statement is not run; to write files "
                "(COPY ... TO), pass --allow-writes"
            )


def format_table(table: pa.Table, fmt: str) -> str:
    """Render a query result as ``table`` (aligned text), ``csv`` or ``json``."""
    rows = table.to_pylist()
    if fmt == "json":
        return orjson.dumps(rows, default=str, option=orjson.OPT_INDENT_2).decode()
    if fmt == "csv":
        return _csv(table)
    return _text_table(table.column_names, rows)


def _runs_table(run_dir: Path) -> pa.Table:
    runs: list[dict[str, Any]] = []
    for place in stores(run_dir):
        if runs:  # the directory's own runs (a sharded run's driver's) are the runs
            break
        manifest_path = place / "manifest.json"
        if manifest_path.exists():
            runs += orjson.loads(manifest_path.read_bytes()).get("runs", [])
    return _runs_of(runs)


def output_uri(target: str | Path | JobSpec) -> str | None:
    """The object-storage URI a target names (itself, or its job's output), or None."""
    if isinstance(target, str) and objects.is_uri(target):
        return target
    if isinstance(target, JobSpec):
        return target.output.uri
    path = Path(target)
    if path.suffix == ".toml" and path.is_file():
        return load_job(path).output.uri
    return None


def _runs_of(runs: list[dict[str, Any]]) -> pa.Table:
    schema = RunRecord.arrow_schema()
    return pa.table(
        {
            field.name: pa.array([run.get(field.name) for run in runs], field.type)
            for field in schema
        }
    )


def _csv(table: pa.Table) -> str:
    import io

    import pyarrow.csv as pa_csv

    sink = io.BytesIO()
    pa_csv.write_csv(table, sink)
    return sink.getvalue().decode().rstrip("\n")


def _text_table(names: list[str], rows: list[dict[str, Any]], width: int = 60) -> str:
    cells = [[_cell(row[name], width) for name in names] for row in rows]
    widths = [max([len(name), *(len(r[i]) for r in cells)]) for i, name in enumerate(names)]
    line = "  ".join(name.ljust(w) for name, w in zip(names, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    footer = f"({len(rows)} row{'s' if len(rows) != 1 else ''})"
    return "\n".join([line.rstrip(), rule, *(b.rstrip() for b in body), footer])


def _cell(value: Any, width: int) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        text = f"{value:.6g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.3e}"
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
