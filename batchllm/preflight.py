"""Checks that cost nothing: everything a run verifies before its first request.

``run`` calls them one by one and stops at the first problem; ``validate_job`` (``batchllm
validate``) calls them all and reports every problem at once. None of them sends a request;
``probe`` (``batchllm validate --probe``) is the one check that does: one request, one row, a
small reply, its outcome shown and never stored.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import orjson

from batchllm.errors import (
    FatalProviderError,
    InputError,
    MissingKeyError,
    RunDirError,
    UserError,
)
from batchllm.job import JobSpec, load_job
from batchllm.log import add_secret
from batchllm.outcome import COLUMN_NAMES
from batchllm.providers.registry import provider_entry

if TYPE_CHECKING:
    from batchllm.outcome import Outcome
    from batchllm.render import Request


def api_key(job: JobSpec) -> str | None:
    """The key from the environment variable the job names (or the provider's usual one)."""
    model = job.model
    provider = provider_entry(model.provider)
    if not provider.takes_key:
        return None
    env = model.api_key_env or provider.key_env
    if env is None:
        return None
    key = os.environ.get(env)
    if not key:
        if model.api_key_env is None and model.base_url is not None and model.provider == "openai":
            return None  # a local OpenAI-compatible server often needs no key
        raise MissingKeyError(f"{job.path}: [model] the API key variable {env} is not set")
    add_secret(key)  # whatever logs it by mistake prints *** instead
    return key


def check_budget(job: JobSpec, override: float | None = None) -> float | None:
    """The run's cost cap; a cap needs ``max_tokens`` to bound a reply's cost."""
    cap = override if override is not None else job.limits.max_cost_usd
    if cap is not None and job.model.mode == "batch":
        raise UserError(
            f"{job.path}: batch mode takes no cost cap (a batch is paid when it ends); "
            'run batchllm estimate first, or use mode = "online"'
        )
    if cap is not None and job.model.max_tokens is None:
        raise UserError(
            f"{job.path}: a cost cap needs [model.params] max_tokens, the most a reply can cost"
        )
    return cap


def check_copies(job: JobSpec) -> list[str]:
    """The input columns to copy into the results, none named like a results column."""
    for column in job.input.columns:
        if column in COLUMN_NAMES:
            raise InputError(
                f"{job.path}: [input] columns: '{column}' is also a results column; leave it out"
            )
    return list(job.input.columns)


def check_fields(job: JobSpec, names: list[str]) -> None:
    """Typed output columns must not collide with results or copied columns."""
    for name in names:
        if name in COLUMN_NAMES or name in job.input.columns:
            raise InputError(
                f"{job.path}: [output] schema: property '{name}' clashes with a results column "
                "of the same name; rename it"
            )


def check_run_dir(job: JobSpec) -> None:
    """The run directory can be created, belongs to this job, and no run holds it."""
    path = job.output_dir
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{path}: cannot use as run directory: {existing} is not a writable folder")
    manifest = path / "manifest.json"
    if manifest.exists():
        owner = orjson.loads(manifest.read_bytes()).get("job")
        if owner != job.name:
            raise UserError(
                f"{path}: this run directory holds results of job '{owner}', not '{job.name}'"
            )
    _check_not_locked(path / ".lock")


def _check_not_locked(lock: Path) -> None:
    if not lock.exists():
        return
    with open(lock, "rb+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().decode(errors="replace").strip() or "?"
            raise RunDirError(
                f"{lock.parent}: another batchllm run (pid {holder}) is using this run directory"
            ) from None
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def validate_job(path: str | Path) -> tuple[JobSpec | None, list[str]]:
    """Every problem a run of this job would meet before its first request, all at once."""
    try:
        job = load_job(path)
    except UserError as exc:
        return None, [str(exc)]
    from batchllm.pricing import resolve_price
    from batchllm.render import Renderer
    from batchllm.source import Source
    from batchllm.validate import OutputSchema

    problems: list[str] = []
    source = _attempt(problems, Source, job.input)
    if source is not None:
        schema = OutputSchema(job.output.schema) if job.output.schema else None
        _attempt(problems, Renderer, job, source.columns, schema)
        if schema is not None:
            _attempt(problems, check_fields, job, [name for name, _ in schema.columns()])
    for check in (check_copies, resolve_price, check_budget, api_key, check_run_dir):
        _attempt(problems, check, job)
    return job, problems


def _attempt(problems: list[str], check: Callable[..., Any], *args: Any) -> Any:
    try:
        return check(*args)
    except UserError as exc:
        problems.append(str(exc))
        return None


#: the most a probe's reply may be, in tokens (it only shows that the provider answers)
PROBE_MAX_TOKENS = 16


async def probe(job: JobSpec) -> str:
    """Send one real request (the input's first usable row, a small ``max_tokens``, one
    attempt) and say what came back; a refusal (unknown model, wrong URL) or any failure is a
    ``FatalProviderError`` naming the URL and the server's message."""
    from batchllm.budget import LocalBudget
    from batchllm.dispatch import Dispatcher
    from batchllm.outcome import FAILED
    from batchllm.pricing import resolve_price
    from batchllm.run.assemble import connect
    from batchllm.run.context import Seams
    from batchllm.validate import OutputSchema

    small = _probe_job(job)
    schema = OutputSchema(small.output.schema) if small.output.schema else None
    request = _first_request(small, schema)
    price = resolve_price(small)
    async with connect(
        small, run_id="probe", api_key=api_key(small), price=price,
        budget=LocalBudget(None, price), sink=_Discard(), schema=schema, seams=Seams(),
    ) as context:  # fmt: skip
        outcome = await Dispatcher(context).process(request, {})
        where = str(getattr(context.adapter, "url", context.base_url) or job.model.provider)
    if outcome.status == FAILED:
        raise FatalProviderError(
            f"probe: {where} answered {outcome.error}; check base_url (does it end in /v1?) "
            "and the model name"
        )
    return f"probe ok: {where} answered ({outcome.output_tokens} tokens, {outcome.status})"


def _probe_job(job: JobSpec) -> JobSpec:
    """The job with one attempt per request and a small reply cap (where the job sets one)."""
    params = dict(job.model.params)
    for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        if isinstance(params.get(name), int):
            params[name] = min(params[name], PROBE_MAX_TOKENS)
    model = dataclasses.replace(job.model, params=MappingProxyType(params))
    retry = dataclasses.replace(job.retry, max_attempts=1, resend_stragglers=False)
    return dataclasses.replace(job, model=model, retry=retry)


def _first_request(job: JobSpec, schema: Any) -> Request:
    """The request of the input's first row that can be read and rendered."""
    from batchllm.errors import RowError
    from batchllm.keys import row_key
    from batchllm.render import Renderer, input_hash
    from batchllm.source import Source

    source = Source(job.input)
    renderer = Renderer(job, source.columns, schema)
    problem = "the input has no usable row"
    for rows in source.rows():
        for row in rows:
            if row.problem is not None:
                problem = row.problem
                continue
            try:
                key = row.key or row_key(row.data, job.input.id_column)
                return renderer.render(key, row.data, input_hash(row.data))
            except RowError as exc:
                problem = str(exc)
    raise InputError(f"{job.input.path}: nothing to probe with: {problem}")


class _Discard:
    """A sink for a probe: its outcome is shown, never stored."""

    def begin_run(self, run_id: str, entry: dict[str, Any], fingerprint: str) -> None:
        return None

    def write(self, outcome: Outcome) -> None:
        return None

    async def finish_run(self, entry: dict[str, Any]) -> None:
        return None
