"""The ``nightly`` probes: one night of a job over a large run directory, then many nights.

A run directory of a finished run over all but the last 1 % of a large input (``fabricate_run``,
then ``batchllm run`` over the input as it was that night, which finds every row done and records
the input's prefix as any finished run does; cached next to the input and copied for each
measurement) is run again with ``batchllm run`` over the grown input:
the steps say how long until its first new request and its peak memory (``NIGHT_RUNS`` times,
each over a fresh copy), and ``results`` is queried (``count(*) group by status``, the median of
three). Then ``NIGHTS`` more nights are
fabricated cheaply, each a part of 1 % new rows written and compacted as a run's end would, and
the directory's size is compared with one part holding the same rows. It judges nothing:
``batchllm.bench.goals`` does.
"""

from __future__ import annotations

import mmap
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batchllm.bench.inputs import cached_input, fabricate_run
from batchllm.bench.probes import Step, _Measure, _workspace
from batchllm.bench.process import BenchError, Usage, batchllm_command, run_measured, tail
from batchllm.bench.scenarios import Scenario
from batchllm.compact import GROUP_ROWS, should_compact
from batchllm.index_file import INDEX_FILE, save_done
from batchllm.job import load_job
from batchllm.keys import batch_digests, digest_strings
from batchllm.parts import done_parts, parts_in_order
from batchllm.prefix import VERSION as PREFIX_VERSION
from batchllm.pricing import context_window, resolve_price
from batchllm.query import query
from batchllm.store import SEQ_BITS

#: the share of the input that is new each night
NEW_SHARE = 0.01
#: nights fabricated after the measured one, for the directory's size
NIGHTS = 30
#: times the night is run, each over a fresh copy of the directory (each one judged)
NIGHT_RUNS = 3
STATUS_SQL = "select status, count(*) as n from results group by status"


def run_nightly(scenario: Scenario, n: int, cache: Path) -> list[Step]:
    """The measured night, the ``results`` query, and the size after ``NIGHTS`` nights."""
    path = cached_input(cache, n).resolve()
    pending = max(1, round(n * NEW_SHARE))
    with _workspace(scenario) as (work, sim):
        job = scenario.job_file(sim.url, input_path=str(path)).write(work)
        run_dir = load_job(job).output_dir
        cached = cache / f"nightly-run-{n}-{pending}-{_hash_version()}-prefix{PREFIX_VERSION}"
        if not (cached / "manifest.json").exists():
            before = _input_before(path, n - pending)
            scenario.job_file(sim.url, input_path=str(before)).write(work)
            _make_cached_run(job, cached, run_dir)
            scenario.job_file(sim.url, input_path=str(path)).write(work)
        _index_cached_run(cached)
        measure = _Measure(scenario, sim, job, n)
        runs = []
        for number in range(1, NIGHT_RUNS + 1):
            _copy_cached_run(cached, run_dir)
            _price_run(job)
            name = f"night {number} of {NIGHT_RUNS} ({n - pending:,} of {n:,} done)"
            runs.append(measure.run(name, pending))
        night = runs[-1]
        status = _query_step(night, "count(*) by status, 2 parts", job)
        nights, compaction = _fabricate_nights(run_dir, NIGHTS, pending)
        after = _query_step(night, f"count(*) by status, after {NIGHTS} nights", job)
        size = replace(after, step=f"run dir size after {NIGHTS} nights", value=nights)
        longest = replace(
            night, step=f"longest compaction (and index) of {NIGHTS} nights", to_do=0, requests=0,
            ok=None, wall_s=compaction.wall_s, cpu_s=compaction.cpu_s,
            peak_mb=compaction.peak_rss_mb, start_s=None,
        )  # fmt: skip
    return [*runs, status, after, size, longest]


def _make_cached_run(job: Path, cached: Path, run_dir: Path) -> None:
    """The fabricated run directory, made once into ``cached`` (it renders every row), with the
    night before's run over the input as it was then (``job``'s input now)."""
    made = fabricate_run(job, 0)
    ran = subprocess.run(
        batchllm_command("run", str(job)), capture_output=True, text=True, check=False
    )
    if ran.returncode != 0:
        raise BenchError(f"the night before exited {ran.returncode}: {ran.stderr[-400:]}")
    if cached.exists():
        shutil.rmtree(cached)
    shutil.copytree(run_dir, cached)
    print(f"  fabricated {made:,} done rows (and the night before) into {cached}", flush=True)


def _index_cached_run(cached: Path) -> None:
    """The done index file a finished run leaves, as the night before's end would have written
    it with this code: written into a cached directory made before runs left one, or left by
    an earlier format of it (``save_done`` leaves a file that matches the parts as it is)."""
    before = _stamp(cached / INDEX_FILE)
    fingerprint = orjson.loads((cached / "manifest.json").read_bytes()).get("fingerprint")
    save_done(cached, *done_parts(cached, fingerprint))
    if _stamp(cached / INDEX_FILE) != before:
        print(f"  wrote the done index file of {cached}", flush=True)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _price_run(job: Path) -> None:
    """The prices a night before leaves in its run directory (``prices.json``), written into a
    copy of a cached directory made before runs kept them; here, so the night does not
    import genai-prices to find them."""
    spec = load_job(job)
    resolve_price(spec)
    context_window(spec)


def _copy_cached_run(cached: Path, run_dir: Path) -> None:
    if run_dir.exists():
        shutil.rmtree(run_dir)
    shutil.copytree(cached, run_dir)


def _input_before(path: Path, rows: int) -> Path:
    """The input as it was a night before: its first ``rows`` rows, byte for byte (the row
    after them begins a line with its id, ``cached_input``'s ``t0000000``), cached."""
    before = path.with_name(f"{path.stem}-first{rows}{path.suffix}")
    if before.exists():
        return before
    with path.open("rb") as data, mmap.mmap(data.fileno(), 0, access=mmap.ACCESS_READ) as bytes_:
        at = bytes_.rfind(b"\nt%07d," % rows)
        if at < 0:
            raise BenchError(f"{path}: no row t{rows:07d} to end the night before at")
        tmp = before.with_suffix(".tmp")
        with tmp.open("wb") as out:
            out.write(memoryview(bytes_)[: at + 1])
    tmp.replace(before)
    return before


def _hash_version() -> str:
    """The input hash of a fixed row: a cached run directory made with another is not used."""
    row = pa.record_batch({"id": ["m000001"], "text": ["a row"]})
    return str(digest_strings(batch_digests(row))[0])[:8]


def _query_step(base: Step, name: str, job: Path) -> Step:
    """``STATUS_SQL`` timed in this process: the median of three (``wall_s``)."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        query(job, STATUS_SQL)
        times.append(time.perf_counter() - started)
    return replace(
        base, step=name, to_do=0, requests=0, wall_s=statistics.median(times), start_s=None
    )


def _fabricate_nights(run_dir: Path, nights: int, new_rows: int) -> tuple[float, Usage]:
    """Write ``nights`` runs of ``new_rows`` new ok rows each (copies of the latest night's
    rows under new keys), compacting as a run's end does (each compaction in a measured child
    process); returns the directory's size over that of one part holding its current rows in
    the row groups a compacted part has, and the longest compaction's usage."""
    results = run_dir / "results"
    template = _newest_rows(run_dir, new_rows)
    longest = Usage(started_at=0.0, wall_s=0.0, cpu_s=0.0, peak_rss_mb=0.0, exit_code=0)
    for night in range(1, nights + 1):
        run_id = f"29990101T{night:06d}.000000Z"
        keys = pc.binary_join_element_wise(template["row_key"], pa.scalar(f"-n{night}"), "")
        table = template.set_column(template.schema.get_field_index("row_key"), "row_key", keys)
        table = table.set_column(
            table.schema.get_field_index("run_id"), "run_id", pa.array([run_id] * len(table))
        )
        number = _add_run(run_dir, run_id)
        seqs = pa.array([(number << SEQ_BITS) | i for i in range(len(table))], pa.int64())
        table = table.set_column(table.schema.get_field_index("seq"), "seq", seqs)
        pq.write_table(table, results / f"part-{run_id}-00001.parquet", compression="zstd")
        parts = parts_in_order(run_dir)
        if should_compact(parts):
            usage = _compact_measured(run_dir, run_id)
            longest = max(longest, usage, key=lambda u: u.wall_s)
    size = sum(part.stat().st_size for part in results.iterdir())
    single = results.parent / "single.parquet"
    rows = query(run_dir, "select * from results")
    pq.write_table(rows, single, compression="zstd", row_group_size=GROUP_ROWS)
    ratio = size / single.stat().st_size
    single.unlink()
    return ratio, longest


#: a child process compacting a run directory's parts, then writing its index file, as a run's
#: end does (with the command line's allocator settings): DIR RUN_ID
_COMPACT = """
import sys
from pathlib import Path
import orjson
from batchllm.memory import frugal
frugal()
from batchllm.compact import compact
from batchllm.index_file import save_done
from batchllm.parts import done_parts, parts_in_order
run_dir = Path(sys.argv[1])
compact(run_dir, parts_in_order(run_dir), sys.argv[2], keep_history=True)
fingerprint = orjson.loads((run_dir / "manifest.json").read_bytes()).get("fingerprint")
save_done(run_dir, *done_parts(run_dir, fingerprint))
"""


def _compact_measured(run_dir: Path, run_id: str) -> Usage:
    """Compact ``run_dir`` and index it in a child process; its wall time, CPU and peak
    memory."""
    log = run_dir.parent / "compact.log"
    usage = run_measured([sys.executable, "-c", _COMPACT, str(run_dir), run_id], log)
    if usage.exit_code != 0:
        raise BenchError(f"compaction exited {usage.exit_code}: {tail(log)}")
    return usage


def _newest_rows(run_dir: Path, count: int) -> pa.Table:
    newest = parts_in_order(run_dir)[-1]
    table = pq.read_table(newest)
    return table.slice(0, min(count, len(table)))


def _add_run(run_dir: Path, run_id: str) -> int:
    manifest_path = run_dir / "manifest.json"
    manifest = orjson.loads(manifest_path.read_bytes())
    runs = manifest["runs"]
    number = 1 + max((run.get("run_number", 0) for run in runs), default=0)
    runs.append({**runs[-1], "run_id": run_id, "run_number": number, "status": "finished"})
    manifest_path.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return int(number)
