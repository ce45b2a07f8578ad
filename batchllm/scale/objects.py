"""Object storage: input and output at ``s3://``, ``gs://`` or any URI ``pyarrow.fs`` opens.

An input URI is read through a ``pyarrow.fs`` stream (CSV and JSON Lines, decompressed by their
suffix) or a random-access file (Parquet). An output URI is written from a local working
directory (``[output] work_dir``, or one under the system temp directory named after the URI)
that holds the journal, the lock and the parts as a local run does. ``Publisher`` uploads each
part when it is cut (part names are unique and never reused) and then writes the directory's
commit record, ``commit.json``: the parts that make it up now, and the manifest. An object write
is atomic, so a reader that goes by the commit record sees whole parts only; parts a merge or
compaction replaced are deleted after the record stops naming them. A working directory that
is missing (another machine, a cleaned temp dir) is filled from the commit record first, so a
run resumes from what object storage holds. A sharded run keeps one record per shard
(``shards/NNN/commit.json``). ``connect`` gives ``query`` the same views over object storage,
reading the committed parts as a pyarrow dataset registered in DuckDB.

Credentials come from the usual environment (``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``);
``AWS_ENDPOINT_URL`` points S3 at another server (MinIO, a test's moto). It does not decide
when parts are cut (``store``) nor what the views mean (``query``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import orjson
import pyarrow as pa
import pyarrow.fs as pafs

from batchllm.errors import InputError, StorageError, UserError

if TYPE_CHECKING:
    import duckdb

    from batchllm.job import JobSpec

COMMIT = "commit.json"
MANIFEST = "manifest.json"


def is_uri(text: str) -> bool:
    """Whether a job file's path is an object-storage URI (``file://`` and plain paths are not)."""
    scheme = urlparse(text).scheme
    return len(scheme) > 1 and scheme != "file" and "://" in text


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The file system and the path within it of ``uri``."""
    parsed = urlparse(uri)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    try:
        if parsed.scheme == "s3" and endpoint:
            where = urlparse(endpoint)
            fs = pafs.S3FileSystem(
                endpoint_override=where.netloc or where.path,
                scheme=where.scheme or "https",
                region=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION"),
            )
            return fs, f"{parsed.netloc}{parsed.path}".rstrip("/")
        fs, path = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowException, ValueError) as exc:
        raise UserError(f"{uri}: cannot open: {exc}") from None
    return fs, path.rstrip("/")


def work_dir_for(uri: str, work_dir: Path | None) -> Path:
    """The local working directory of an output URI."""
    if work_dir is not None:
        return work_dir
    digest = hashlib.blake2b(uri.encode(), digest_size=8).hexdigest()
    return Path(tempfile.gettempdir()) / "batchllm-work" / digest


# --- input -----------------------------------------------------------------------------------


def input_exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    try:
        return bool(fs.get_file_info(path).type == pafs.FileType.File)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{uri}: cannot read input: {exc}") from None


def open_input(uri: str, *, random_access: bool = False) -> Any:
    """A stream of the input at ``uri`` (decompressed by suffix), or a file for Parquet."""
    fs, path = filesystem(uri)
    try:
        return fs.open_input_file(path) if random_access else fs.open_input_stream(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{uri}: cannot read input: {exc}") from None


# --- output ----------------------------------------------------------------------------------


def publisher(job: JobSpec) -> Publisher | None:
    """The job's publisher, its working directory filled from object storage; None for a
    local output directory."""
    if job.output.uri is None:
        return None
    found = Publisher(job.output.uri, job.output_dir)
    found.prepare()
    return found


class Publisher:
    """Uploads one local run directory's parts and commit record to its URI."""

    def __init__(self, uri: str, local: Path) -> None:
        self.uri = uri.rstrip("/")
        self.local = local
        self.fs, self.root = filesystem(self.uri)
        self._uploaded: set[str] = set()
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """Fill a working directory that lacks the committed parts (resume elsewhere)."""
        record = read_commit(self.fs, self.root)
        if record is None:
            return
        results = self.local / "results"
        results.mkdir(parents=True, exist_ok=True)
        for name in record["parts"]:
            self._uploaded.add(name)
            target = results / name
            if not target.exists():
                self._download(f"{self.root}/results/{name}", target)
        manifest = self.local / MANIFEST
        if not manifest.exists() and record.get("manifest"):
            manifest.write_bytes(orjson.dumps(record["manifest"]))

    def __call__(self) -> None:
        """Upload the parts not yet uploaded, then the commit record naming the parts now."""
        with self._lock:
            try:
                self._publish()
            except (OSError, pa.ArrowException) as exc:
                raise StorageError(
                    f"{self.uri}: cannot upload results: {exc}; the working directory "
                    f"{self.local} keeps them: run the same command again to upload"
                ) from None

    def _publish(self) -> None:
        parts = sorted(p.name for p in (self.local / "results").glob("part-*.parquet"))
        for name in parts:
            if name not in self._uploaded:
                pafs.copy_files(
                    str(self.local / "results" / name),
                    f"{self.root}/results/{name}",
                    source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=self.fs,
                )
                self._uploaded.add(name)
        manifest_path = self.local / MANIFEST
        manifest = orjson.loads(manifest_path.read_bytes()) if manifest_path.exists() else None
        body = orjson.dumps({"format": 1, "parts": parts, "manifest": manifest})
        with self.fs.open_output_stream(f"{self.root}/{COMMIT}") as out:
            out.write(body)
        for gone in self._uploaded - set(parts):  # merged or compacted away
            self.fs.delete_file(f"{self.root}/results/{gone}")
            self._uploaded.discard(gone)

    def _download(self, source: str, target: Path) -> None:
        temp = target.with_suffix(".download")
        pafs.copy_files(
            source,
            str(temp),
            source_filesystem=self.fs,
            destination_filesystem=pafs.LocalFileSystem(),
        )
        temp.replace(target)


def read_commit(fs: pafs.FileSystem, root: str) -> dict[str, Any] | None:
    """The commit record under ``root``, or None where nothing was committed."""
    try:
        with fs.open_input_stream(f"{root}/{COMMIT}") as stream:
            record = orjson.loads(stream.read())
    except FileNotFoundError:
        return None
    except OSError as exc:
        if "not exist" in str(exc).lower() or "NoSuchKey" in str(exc):
            return None
        raise
    return record if isinstance(record, dict) else None


# --- query -----------------------------------------------------------------------------------


def committed(uri: str) -> tuple[pafs.FileSystem, list[str], list[dict[str, Any]]]:
    """The committed parts of the run at ``uri`` and of its shards, and its runs (the
    directory's own record; its shards' when it has none)."""
    fs, root = filesystem(uri)
    places = [root]
    shards = fs.get_file_info(pafs.FileSelector(f"{root}/shards", allow_not_found=True))
    places += sorted(info.path for info in shards if info.type == pafs.FileType.Directory)
    parts: list[str] = []
    runs: list[dict[str, Any]] = []
    for place in places:
        record = read_commit(fs, place)
        if record is not None:
            parts += [f"{place}/results/{name}" for name in record["parts"]]
            if not runs:  # the directory's own runs (a sharded run's driver's) are the runs
                runs = (record.get("manifest") or {}).get("runs", [])
    return fs, parts, runs


def connect(uri: str, runs_table: Any) -> duckdb.DuckDBPyConnection:
    """DuckDB views ``all_results``, ``results`` and ``runs`` over the committed parts."""
    import duckdb
    import pyarrow.dataset as ds

    fs, parts, runs = committed(uri)
    if not parts:
        raise UserError(f"{uri}: no results yet (run the job first)")
    con = duckdb.connect(":memory:")
    con.register("all_results", ds.dataset(parts, filesystem=fs, format="parquet"))
    con.execute(
        "create view results as select * from all_results qualify row_number() over "
        "(partition by row_key order by seq desc nulls last, finished_at desc) = 1"
    )
    con.register("runs", runs_table(runs))
    return con
