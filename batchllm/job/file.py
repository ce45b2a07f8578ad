"""Reading a job file: TOML in, checked section by section, a ``JobSpec`` out.

Owns the job format's sections and keys, their types and allowed values, resolving paths
relative to the job file, and the errors that name the file, section and key (with a
did-you-mean for a misspelt one). It does not open the input or talk to providers; those checks
happen where the input and providers live, still before any request is sent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlparse

import orjson

from batchllm.errors import SchemaProblem
from batchllm.job import checks
from batchllm.job.spec import (
    BACKENDS,
    ENDPOINT_CONCURRENCY,
    INPUT_FORMATS,
    SERVICE_TIERS,
    TIER_PROVIDERS,
    BatchSpec,
    EndpointSpec,
    InputSpec,
    JobSpec,
    LimitsSpec,
    ModelSpec,
    OutputSpec,
    PlanSpec,
    PricingSpec,
    PromptSpec,
    RetrySpec,
    RunSpec,
    SimulateSpec,
)
from batchllm.job.toml import TableReader, read_toml
from batchllm.plan.clock import deadline_problem
from batchllm.providers import registry
from batchllm.scale.objects import is_uri, work_dir_for
from batchllm.validate import OutputSchema


def read_job(path: Path) -> JobSpec:
    """Read and check the job file at ``path``."""
    return _Reader(path, read_toml(path)).job()


_INPUT_KEYS = ("path", "format", "id_column", "columns", "encoding", "delimiter")
_MEDIA_KEYS = ("images", "documents", "resize_images", "image_detail", "fetch_urls")
_SECTIONS = (
    "job", "input", "prompt", "model", "output", "limits", "retry", "pricing", "simulate", "batch",
    "run", "plan",
)  # fmt: skip


class _Reader(TableReader):
    """Walks the parsed TOML once, section by section, checking each key as it is taken."""

    def job(self) -> JobSpec:
        self.check_keys("", self.raw, _SECTIONS)
        name = self.job_name()
        model = self.model()
        return JobSpec(
            name=name,
            path=self.path,
            input=self.input(),
            prompt=self.prompt(),
            model=model,
            output=self.output(name),
            limits=self.limits(),
            retry=self.retry(),
            pricing=self.pricing(),
            simulate=self.simulate(model.provider),
            batch=self.batch(),
            run=self.run(),
            plan=self.plan(),
        )

    def plan(self) -> PlanSpec:
        table = self.section("plan")
        self.check_keys("plan", table, ("deadline", "cheapest", "safety", "reserve_s", "soft"))
        take = self.take
        safety = take("plan", table, "safety", (int, float), check=checks.between(1, 100))
        reserve = take("plan", table, "reserve_s", (int, float), check=checks.positive)
        return PlanSpec(
            deadline=take("plan", table, "deadline", str, check=deadline_problem),
            cheapest=take("plan", table, "cheapest", bool) is not False,
            safety=float(safety) if safety is not None else _PLAN.safety,
            reserve_s=float(reserve) if reserve is not None else _PLAN.reserve_s,
            soft=take("plan", table, "soft", bool) is True,
        )

    def run(self) -> RunSpec:
        table = self.section("run")
        self.check_keys("run", table, ("backend", "address", "shards", "shard_cpus"))
        backend = self.take("run", table, "backend", str, check=checks.one_of(BACKENDS))
        shards = self.take("run", table, "shards", int, check=checks.between(1, 4096))
        cpus = self.take("run", table, "shard_cpus", (int, float), check=checks.positive)
        return RunSpec(
            backend=backend or _RUN.backend,
            address=self.take("run", table, "address", str),
            shards=shards or _RUN.shards,
            shard_cpus=float(cpus) if cpus is not None else _RUN.shard_cpus,
        )

    def batch(self) -> BatchSpec:
        table = self.section("batch")
        self.check_keys("batch", table, ("poll_s", "max_poll_s", "max_requests"))
        poll = self.take("batch", table, "poll_s", (int, float), check=checks.positive)
        most = self.take("batch", table, "max_poll_s", (int, float), check=checks.positive)
        size = self.take("batch", table, "max_requests", int, check=checks.positive)
        return BatchSpec(
            poll_s=float(poll) if poll is not None else _BATCH.poll_s,
            max_poll_s=float(most) if most is not None else _BATCH.max_poll_s,
            max_requests=size,
        )

    def job_name(self) -> str:
        table = self.section("job", required=True)
        self.check_keys("job", table, ("name", "description"))
        self.take("job", table, "description", str)
        return str(self.take("job", table, "name", str, required=True, check=checks.valid_name))

    def input(self) -> InputSpec:
        table = self.section("input", required=True)
        self.check_keys("input", table, (*_INPUT_KEYS, *_MEDIA_KEYS))
        given = self.take("input", table, "path", str, required=True)
        uri = given if is_uri(given) else None
        path = Path(urlparse(given).path) if uri else _normal(self.base / given)
        fmt = self.take("input", table, "format", str, check=checks.one_of(INPUT_FORMATS))
        columns = self.take("input", table, "columns", list, check=checks.strings) or []
        tsv = ".tsv" in [suffix.lower() for suffix in path.suffixes]
        delimiter = self.take("input", table, "delimiter", str, check=checks.delimiter)
        return InputSpec(
            path=path,
            uri=uri,
            format=fmt or _format_from_suffix(path, self),
            id_column=self.take("input", table, "id_column", str),
            columns=tuple(columns),
            encoding=self.take("input", table, "encoding", str, check=checks.encoding) or "utf-8",
            delimiter=delimiter or ("\t" if tsv else ","),
            images=tuple(self.take("input", table, "images", list, check=checks.strings) or ()),
            documents=tuple(
                self.take("input", table, "documents", list, check=checks.strings) or ()
            ),
            resize_images=bool(self.take("input", table, "resize_images", bool)),
            image_detail=self.take(
                "input", table, "image_detail", str, check=checks.one_of(("low", "high", "auto"))
            ),
            fetch_urls=bool(self.take("input", table, "fetch_urls", bool)),
        )

    def prompt(self) -> PromptSpec:
        table = self.section("prompt", required=True)
        self.check_keys("prompt", table, ("system", "template", "template_file"))
        template = self.take("prompt", table, "template", str)
        template_file = self.take("prompt", table, "template_file", str)
        if (template is None) == (template_file is None):
            raise self.fail("[prompt]", "give exactly one of 'template' or 'template_file'")
        if template_file is not None:
            template = self._read_template(self.base / template_file)
        return PromptSpec(template=template, system=self.take("prompt", table, "system", str))

    def _read_template(self, path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise self.fail("[prompt] template_file", f"cannot read {path}: {exc}") from exc

    def model(self) -> ModelSpec:
        table = self.section("model", required=True)
        self.check_keys("model", table, _MODEL_KEYS)
        provider = self.take(
            "model", table, "provider", str, required=True, check=checks.one_of(registry.names())
        )
        base_url, endpoints = self._endpoints(self.take("model", table, "base_url", (str, list)))
        if registry.provider_entry(provider).needs_base_url and base_url is None:
            raise self.fail("[model]", f"provider '{provider}' needs 'base_url'")
        params = self.take("model", table, "params", dict) or {}
        for key in ("model", "messages", "stream"):
            if key in params:
                raise self.fail("[model.params]", f"'{key}' is set by batchllm, remove it")
        return ModelSpec(
            provider=provider,
            name=self.take("model", table, "name", str, required=True),
            base_url=base_url.rstrip("/") if base_url else None,
            api_key_env=self.take("model", table, "api_key_env", str, check=checks.env_name),
            params=MappingProxyType(params),
            native_schema=self.take("model", table, "native_schema", bool) is not False,
            mode=self._mode(table, provider),
            endpoints=endpoints,
            service_tier=self._service_tier(table, provider),
        )

    def _endpoints(
        self, given: str | list[Any] | None
    ) -> tuple[str | None, tuple[EndpointSpec, ...]]:
        """``base_url``: one URL, or a pool (URLs, or tables of ``url``, ``concurrency`` and
        the server's own ``rpm`` and ``tpm``)."""
        if given is None or isinstance(given, str):
            problem = checks.url(given) if given is not None else None
            if problem:
                raise self.fail("[model] base_url", problem)
            return given, ()
        pool = [self._endpoint(item) for item in given]
        if not pool:
            raise self.fail("[model] base_url", "the list of endpoints is empty")
        return pool[0].url, tuple(pool)

    def _endpoint(self, item: Any) -> EndpointSpec:
        entry = {"url": item} if isinstance(item, str) else item
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise self.fail(
                "[model] base_url", "list items are URLs or {url, concurrency, rpm, tpm}"
            )
        where = "model.base_url"
        self.check_keys(where, entry, ("url", "concurrency", "rpm", "tpm"))
        self.take(where, entry, "url", str, check=checks.url)
        most = self.take(where, entry, "concurrency", int, check=checks.positive)
        return EndpointSpec(
            entry["url"].rstrip("/"),
            most or ENDPOINT_CONCURRENCY,
            rpm=self.take(where, entry, "rpm", int, check=checks.positive),
            tpm=self.take(where, entry, "tpm", int, check=checks.positive),
        )

    def _service_tier(self, table: Mapping[str, Any], provider: str) -> str | None:
        tier = self.take("model", table, "service_tier", str, check=checks.one_of(SERVICE_TIERS))
        if tier is not None and provider not in TIER_PROVIDERS:
            raise self.fail(
                "[model] service_tier",
                f"is OpenAI's ({', '.join(TIER_PROVIDERS)}), not '{provider}'",
            )
        return str(tier) if tier is not None else None

    def _mode(self, table: Mapping[str, Any], provider: str) -> str:
        mode = self.take("model", table, "mode", str, check=checks.one_of(("online", "batch")))
        batch = registry.batch_names()
        if mode == "batch" and provider not in batch:
            raise self.fail(
                "[model] mode", f"batch mode is for {', '.join(batch)}, not '{provider}'"
            )
        return mode or "online"

    def output(self, name: str) -> OutputSpec:
        table = self.section("output")
        self.check_keys(
            "output",
            table,
            ("dir", "work_dir", "schema", "schema_file", "max_repairs", "keep_history"),
        )
        out = self.take("output", table, "dir", str)
        work = self.take("output", table, "work_dir", str)
        uri = out if out and is_uri(out) else None
        if uri:
            out = str(work_dir_for(uri, _normal(self.base / work) if work else None))
        repairs = self.take("output", table, "max_repairs", int, check=checks.between(0, 10))
        history = self.take("output", table, "keep_history", bool)
        return OutputSpec(
            dir=_normal(self.base / out if out else self.base / "runs" / name),
            uri=uri,
            schema=self.checked_schema(table),
            max_repairs=_OUTPUT.max_repairs if repairs is None else repairs,
            keep_history=_OUTPUT.keep_history if history is None else history,
        )

    def schema(self, table: Mapping[str, Any]) -> Mapping[str, Any] | None:
        inline = self.take("output", table, "schema", dict)
        schema_file = self.take("output", table, "schema_file", str)
        if inline is not None and schema_file is not None:
            raise self.fail("[output]", "give 'schema' or 'schema_file', not both")
        if schema_file is None:
            return dict(inline) if inline is not None else None
        path = self.base / schema_file
        try:
            loaded = orjson.loads(path.read_bytes())
        except OSError as exc:
            raise self.fail("[output] schema_file", f"cannot read {path}: {exc.strerror}") from exc
        except orjson.JSONDecodeError as exc:
            raise self.fail("[output] schema_file", f"{path} is not JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise self.fail("[output] schema_file", f"{path} must hold a JSON object")
        return loaded

    def checked_schema(self, table: Mapping[str, Any]) -> Mapping[str, Any] | None:
        schema = self.schema(table)
        if schema is not None:
            try:
                OutputSchema(schema)
            except SchemaProblem as exc:
                raise self.fail("[output] schema", str(exc)) from exc
        return schema

    def limits(self) -> LimitsSpec:
        table = self.section("limits")
        self.check_keys(
            "limits", table, ("rpm", "tpm", "concurrency", "max_failure_rate", "max_cost_usd")
        )
        cap = self.take("limits", table, "max_cost_usd", (int, float), check=checks.positive)
        concurrency = self.take("limits", table, "concurrency", int, check=checks.between(1, 4096))
        rate = self.take("limits", table, "max_failure_rate", (int, float), check=checks.fraction)
        return LimitsSpec(
            rpm=self.take("limits", table, "rpm", int, check=checks.positive),
            tpm=self.take("limits", table, "tpm", int, check=checks.positive),
            concurrency=concurrency or _LIMITS.concurrency,
            max_failure_rate=float(rate) if rate is not None else _LIMITS.max_failure_rate,
            max_cost_usd=float(cap) if cap is not None else None,
        )

    def retry(self) -> RetrySpec:
        table = self.section("retry")
        keys = ("max_attempts", "timeout_s", "resend_stragglers", "max_wait_s")
        self.check_keys("retry", table, keys)
        attempts = self.take("retry", table, "max_attempts", int, check=checks.between(1, 100))
        timeout = self.take("retry", table, "timeout_s", (int, float), check=checks.positive)
        max_wait = self.take("retry", table, "max_wait_s", (int, float), check=checks.positive)
        return RetrySpec(
            max_attempts=attempts or _RETRY.max_attempts,
            timeout_s=float(timeout) if timeout is not None else _RETRY.timeout_s,
            resend_stragglers=self.take("retry", table, "resend_stragglers", bool) is not False,
            max_wait_s=float(max_wait) if max_wait is not None else _RETRY.max_wait_s,
        )

    def pricing(self) -> PricingSpec:
        table = self.section("pricing")
        keys = [k for k in PricingSpec.__dataclass_fields__ if k != "allow_unpriced"]
        self.check_keys("pricing", table, (*keys, "allow_unpriced"))
        values = {
            k: self.take("pricing", table, k, (int, float), check=checks.not_negative) for k in keys
        }
        allow = self.take("pricing", table, "allow_unpriced", bool) is True
        prices: dict[str, Any] = {k: float(v) for k, v in values.items() if v is not None}
        return PricingSpec(**prices, allow_unpriced=allow)

    def simulate(self, provider: str) -> SimulateSpec:
        table = self.section("simulate")
        if table and provider != "simulated":
            raise self.fail("[simulate]", "applies only to provider = 'simulated'")
        keys = SimulateSpec.__dataclass_fields__
        self.check_keys("simulate", table, tuple(keys))
        values: dict[str, Any] = {}
        for key in keys:
            kind: type | tuple[type, ...] = int if key in ("rpm", "tpm", "seed") else (int, float)
            check: Callable[[Any], str | None] | None = (
                checks.fraction if key.endswith("_rate") else checks.not_negative
            )
            if isinstance(keys[key].default, bool):
                kind, check = bool, None
            value = self.take("simulate", table, key, kind, check=check)
            if value is not None:
                values[key] = value
        try:
            return SimulateSpec(**values)
        except ValueError as exc:
            raise self.fail("[simulate]", str(exc)) from exc


_MODEL_KEYS = ("provider", "name", "base_url", "api_key_env", "params", "native_schema", "mode",
               "service_tier")  # fmt: skip
_OUTPUT = OutputSpec(Path())
_BATCH = BatchSpec()
_LIMITS = LimitsSpec()
_RETRY = RetrySpec()
_RUN = RunSpec()
_PLAN = PlanSpec()


def _format_from_suffix(path: Path, reader: _Reader) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    suffix = suffixes[-1].lstrip(".") if suffixes else ""
    fmt = {"csv": "csv", "tsv": "csv", "parquet": "parquet", "pq": "parquet"}.get(suffix)
    fmt = fmt or {"jsonl": "jsonl", "ndjson": "jsonl"}.get(suffix)
    if fmt is None:
        raise reader.fail(
            "[input] path",
            f"cannot tell the format of '{path.name}' from its extension; "
            'use .csv, .parquet or .jsonl, or set format = "csv" | "parquet" | "jsonl"',
        )
    return fmt


def _normal(path: Path) -> Path:
    """``jobs/../runs/x`` as ``runs/x``: shorter in messages, same place."""
    return Path(os.path.normpath(path))
