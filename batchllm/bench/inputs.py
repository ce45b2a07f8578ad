"""What the benchmarks give batchllm to work on: input rows and files, job files, a run directory.

Owns the deterministic input (customer-message-like text, seed 7), the large inputs the memory
scenario streams (generated once into a cache directory and reused), the job file each scenario
runs, and a run directory fabricated as an interrupted run would have left it, computed with
batchllm's own keys and hashes so that a resumed run recognises every row. It starts no process
and judges nothing.
"""

from __future__ import annotations

import csv
import json
import os
import random
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from batchllm.compact import GROUP_ROWS
from batchllm.job import load_job
from batchllm.keys import batch_digests, digest_strings, row_key
from batchllm.outcome import OK, Outcome, results_schema
from batchllm.render import Renderer, Request
from batchllm.simulate.content import count_tokens
from batchllm.source import Source
from batchllm.store import SEQ_BITS, SEQ_FIELD

SEED = 7
MODEL = "gpt-4o-mini"
SYSTEM = "You answer customer messages for an online shop, briefly and politely."
TEMPLATE = "Customer message {{ id }}:\n\n{{ text }}"
#: the template of ``overhead-images``: the same text, and the row's photo after it
IMAGE_TEMPLATE = TEMPLATE + "\n{{ image(photo) }}"
#: distinct image files ``overhead-images`` rows point at, in turn
IMAGE_POOL = 10_000
#: the reply schema of ``overhead-schema``: an enum label, a number 0..1 and a boolean
REPLY_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["billing", "delivery", "product", "account", "other"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "needs_human": {"type": "boolean"},
    },
    "required": ["label", "confidence", "needs_human"],
    "additionalProperties": False,
}
#: the run a fabricated run directory holds; its outcomes finished at this time
OLD_RUN_ID = "20260101T000000.000000Z"
_OLD_RUN_AT = datetime(2026, 1, 1, tzinfo=UTC)

# --- rows --------------------------------------------------------------------------------------

_VOCABULARY = (
    "order delivery parcel refund invoice account password payment card shipping address "
    "return exchange size colour item box courier tracking number week yesterday today "
    "morning evening store app website email message support team help please thanks "
    "hello again still never always arrived missing broken damaged wrong late early charged "
    "twice discount code coupon subscription cancel renew price total receipt warranty "
    "battery screen cable charger jacket shoes kitchen lamp chair table gift birthday "
    "friend family neighbour phone call waited hours days checked tried logged changed "
    "updated sent received opened said told asked wanted ordered paid expected the a my "
    "your our this that it is was were and but so because when after before if with "
    "without from to for on in at of not very really quite just also I we you"
)
_WORDS = _VOCABULARY.split()
# Words the plain vocabulary lacks: accents, other scripts, emoji (multi-byte UTF-8 in the CSV).
_FOREIGN = (
    "café Zoë naïve Größe Straße Müller São señora København Ωmega 東京 ありがとう 🙂 📦 €".split()
)
_FIRST_NAMES = (
    "Anna Zoë José Søren Mei Yuki Olga Aarav Chloé Łukasz Fatima Liam Noah Emma Kenji".split()
)
_SURNAMES = (
    "Müller García Kowalski Nguyen Smith Patel 田中 Ødegård O'Brien Dubois Rossi Kim".split()
)
_CHANNELS = ("email", "chat", "phone", "app", "web form")


def make_rows(n: int, seed: int = SEED) -> list[tuple[str, str]]:
    """``n`` (id, text) rows: customer-message-like text, lengths from one line to a page."""
    rng = random.Random(seed)
    return [(f"m{i:06d}", _text(rng)) for i in range(n)]


def _text(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(_sentence_count(rng)))


def _sentence_count(rng: random.Random) -> int:
    """One to 40 sentences, most messages a few (lognormal, median 3)."""
    return min(40, max(1, round(rng.lognormvariate(1.1, 0.8))))


def _sentence(rng: random.Random) -> str:
    words = rng.choices(_WORDS, k=rng.randint(4, 18))
    if rng.random() < 0.2:
        words.insert(rng.randrange(len(words)), f"#{rng.randint(1000, 99999)}")
    if rng.random() < 0.3:
        words[rng.randrange(len(words) - 1)] += ","
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice(".?!.")


def varied_rows(n: int, seed: int = SEED) -> Iterator[list[str]]:
    """``n`` rows of a support-ticket table: id, created_at, channel, customer, text.

    The text varies more than ``make_rows``': paragraphs (line breaks inside a CSV cell), quoted
    phrases, accented and non-Latin words and emoji, from one line to a page.
    """
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for i in range(n):
        created = start + timedelta(seconds=i * 31 + rng.randrange(30))
        customer = f"{rng.choice(_FIRST_NAMES)} {rng.choice(_SURNAMES)}"
        yield [f"t{i:07d}", created.isoformat(), rng.choice(_CHANNELS), customer, _varied(rng)]


def _varied(rng: random.Random) -> str:
    sentences = [_sentence(rng) for _ in range(_sentence_count(rng))]
    if rng.random() < 0.25:
        words = sentences[-1].split()
        words.insert(rng.randrange(len(words)), rng.choice(_FOREIGN))
        sentences[-1] = " ".join(words)
    if rng.random() < 0.15:
        sentences.insert(rng.randrange(len(sentences)), f'It said "{_sentence(rng)[:-1]}".')
    separators = ["\n\n" if rng.random() < 0.1 else " " for _ in sentences[1:]]
    return sentences[0] + "".join(sep + s for sep, s in zip(separators, sentences[1:], strict=True))


def user_message(row_id: str, text: str) -> str:
    """The user message TEMPLATE renders for a row (the yardstick client sends the same)."""
    return f"Customer message {row_id}:\n\n{text}"


def messages(row_id: str, text: str) -> list[dict[str, str]]:
    """The chat messages a row becomes."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": user_message(row_id, text)},
    ]


# --- input files -------------------------------------------------------------------------------


def write_input(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows(rows)


def write_image_input(path: Path, rows: list[tuple[str, str]], pool: int = IMAGE_POOL) -> None:
    """``rows`` with a ``photo`` column: paths (relative to ``path``) of small generated PNGs,
    ``pool`` distinct files taken in turn."""
    folder = path.parent / "photos"
    folder.mkdir(exist_ok=True)
    count = min(pool, len(rows))
    for i in range(count):
        (folder / f"p{i:05d}.png").write_bytes(tiny_png(i))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "photo"])
        writer.writerows(
            (rid, text, f"photos/p{i % count:05d}.png") for i, (rid, text) in enumerate(rows)
        )


def tiny_png(n: int, side: int = 48) -> bytes:
    """A ``side`` × ``side`` PNG, a colour band pattern that differs with ``n`` (stdlib only)."""
    rng = random.Random(n)
    colours = [bytes(rng.randrange(256) for _ in range(3)) for _ in range(4)]
    raw = b"".join(b"\0" + colours[(y // 12) % 4] * side for y in range(side))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def cached_input(cache: Path, n: int) -> Path:
    """A CSV of ``varied_rows(n)`` in ``cache``, written on first use (atomically), then reused."""
    # the version goes up whenever varied_rows() changes, so a stale file is not reused
    path = cache / f"tickets-v1-{n}-seed{SEED}.csv"
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "created_at", "channel", "customer", "text"])
        writer.writerows(varied_rows(n))
    os.replace(tmp, path)
    return path


# --- job files ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobFile:
    """The settings a scenario's job file gets; ``input`` is relative to the job file."""

    name: str
    url: str
    input: str = "input.csv"
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int = 64
    max_tokens: int = 100
    timeout_s: float = 30.0
    max_attempts: int = 6
    schema: Mapping[str, Any] | None = None
    images: bool = False
    #: an endpoint pool: (url, concurrency) of each server; ``url`` is then unused
    endpoints: tuple[tuple[str, int], ...] = ()
    #: the ``[run]`` table (backend, shards, shard_cpus), if any
    run: Mapping[str, Any] | None = None

    def write(self, work: Path) -> Path:
        """Write ``work/job.toml``; its output goes to ``work/out``."""
        path = work / "job.toml"
        path.write_text("\n".join(self._lines()) + "\n", encoding="utf-8")
        return path

    def _lines(self) -> list[str]:
        limits = {"rpm": self.rpm, "tpm": self.tpm, "concurrency": self.concurrency}
        output = ['dir = "out"']
        if self.schema is not None:
            output.append(f"schema = {toml_value(self.schema)}")
        return [
            "[job]",
            f"name = {json.dumps(self.name)}",
            "[input]",
            f"path = {json.dumps(self.input)}",
            'id_column = "id"',
            "[prompt]",
            f"system = {json.dumps(SYSTEM)}",
            f"template = {json.dumps(IMAGE_TEMPLATE if self.images else TEMPLATE)}",
            "[model]",
            'provider = "openai-compatible"',
            f"name = {json.dumps(MODEL)}",
            f"base_url = {self._base_url()}",
            "[model.params]",
            "temperature = 0",
            f"max_tokens = {self.max_tokens}",
            "[limits]",
            *(f"{key} = {value}" for key, value in limits.items() if value is not None),
            # Failed rows are a figure to report here, not a reason for a non-zero exit.
            "max_failure_rate = 1.0",
            "[retry]",
            f"timeout_s = {self.timeout_s}",
            f"max_attempts = {self.max_attempts}",
            "[output]",
            *output,
            *self._run_lines(),
        ]

    def _base_url(self) -> str:
        if not self.endpoints:
            return json.dumps(self.url)
        return toml_value([{"url": url, "concurrency": c} for url, c in self.endpoints])

    def _run_lines(self) -> list[str]:
        if self.run is None:
            return []
        return ["[run]", *(f"{key} = {toml_value(value)}" for key, value in self.run.items())]


def toml_value(value: Any) -> str:
    """``value`` as a one-line TOML value: dicts become inline tables (JSON covers the rest)."""
    if isinstance(value, Mapping):
        items = ", ".join(f"{json.dumps(key)} = {toml_value(item)}" for key, item in value.items())
        return "{ " + items + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(value)


# --- a run directory left by an interrupted run ---------------------------------------------


def fabricate_run(job_path: Path, pending: int) -> int:
    """Record every row of the job's input but the last ``pending`` as done by run ``OLD_RUN_ID``.

    Writes what that run would have left: one Parquet part of ok outcomes, keyed exactly as
    ``batchllm run`` keys them (row key, input hash, request key), and a manifest naming the run
    with the job's fingerprint. Returns the number of rows recorded as done.
    """
    job = load_job(job_path)
    source = Source(job.input)
    done = source.count_rows() - pending
    renderer = Renderer(job, source.columns)
    started_us = int(_OLD_RUN_AT.timestamp() * 1e6)
    results = job.output_dir / "results"
    results.mkdir(parents=True, exist_ok=True)
    # in row groups as a compacted part holds them (a long run's parts end up compacted),
    # written as they fill: ten million outcomes as dicts would not fit
    part = results / f"part-{OLD_RUN_ID}-00001.parquet"
    schema = results_schema([], []).append(SEQ_FIELD)
    made = 0
    with pq.ParquetWriter(part, schema, compression="zstd") as writer:
        group: list[dict[str, Any]] = []
        for read in source.row_batches():
            rows = source.to_rows(read)
            digests = digest_strings(batch_digests(read.batch)).to_pylist() if read.batch else []
            for item, digest in zip(rows[: done - made], digests, strict=False):
                key = row_key(item.data, job.input.id_column)
                request = renderer.render(key, item.data, digest)
                # one reply a millisecond, in input order, as a run at 1,000 rows/s would have
                row = _outcome(request, started_us + 1000 * made).to_row()
                row["seq"] = (1 << SEQ_BITS) | made
                group.append(row)
                made += 1
            while len(group) >= GROUP_ROWS:
                writer.write_table(pa.Table.from_pylist(group[:GROUP_ROWS], schema=schema))
                del group[:GROUP_ROWS]
            if made >= done:
                break
        if group:
            writer.write_table(pa.Table.from_pylist(group, schema=schema))
    run = {
        "run_id": OLD_RUN_ID,
        "run_number": 1,
        "fingerprint": job.fingerprint,
        "kind": "run",
        "status": "finished",
    }
    manifest = {"format": 1, "job": job.name, "fingerprint": job.fingerprint, "runs": [run]}
    (job.output_dir / "manifest.json").write_bytes(
        orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
    )
    return made


def _outcome(request: Request, finished_at: int) -> Outcome:
    reply = f"Thank you for message {request.row_key}. We are looking into it and reply today."
    output_tokens = count_tokens(reply)
    return Outcome(
        row_key=request.row_key,
        request_key=request.request_key,
        run_id=OLD_RUN_ID,
        status=OK,
        finished_at=finished_at,
        input_hash=request.input_hash,
        output=reply,
        finish_reason="stop",
        attempts=1,
        input_tokens=request.est_input_tokens,
        output_tokens=output_tokens,
        # gpt-4o-mini's list prices, USD per million tokens: 0.15 in, 0.60 out
        cost_usd=(request.est_input_tokens * 0.15 + output_tokens * 0.60) / 1e6,
        latency_ms=300.0,
        model=MODEL,
    )
