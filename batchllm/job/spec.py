"""The job as batchllm holds it: frozen specs, checked and with every default filled in.

Owns the spec values (``JobSpec`` and its sections), their defaults and the job's fingerprint.
Reading and checking a job file is ``batchllm.job.file``'s; these values are what it returns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

INPUT_FORMATS = ("csv", "parquet", "jsonl")


@dataclass(frozen=True, slots=True)
class InputSpec:
    path: Path
    format: str
    id_column: str | None = None
    columns: tuple[str, ...] = ()
    #: the text encoding of a CSV file (JSON Lines is always UTF-8)
    encoding: str = "utf-8"
    #: the field separator of a CSV file ("," by default, a tab for .tsv files)
    delimiter: str = ","
    #: columns holding an image / a PDF (a path, an http(s) URL or bytes), sent after the text
    images: tuple[str, ...] = ()
    documents: tuple[str, ...] = ()
    #: an object-storage URI (``s3://...``) read in place of ``path`` (then only a name)
    uri: str | None = None
    #: downscale an image over the provider's limits instead of failing its row
    resize_images: bool = False
    #: OpenAI's image ``detail`` for every image that does not give its own
    image_detail: str | None = None
    #: fetch http(s) media URLs and send their bytes, even where the provider takes URLs
    fetch_urls: bool = False


@dataclass(frozen=True, slots=True)
class PromptSpec:
    template: str
    system: str | None = None


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """One server of an endpoint pool (``base_url`` given as a list), with its own limits."""

    url: str
    concurrency: int = 32
    #: this server's own requests and tokens per minute (``None``: only the run's limits)
    rpm: int | None = None
    tpm: int | None = None


ENDPOINT_CONCURRENCY = 32
#: OpenAI's service tiers a job may ask for, and the providers that take them
SERVICE_TIERS = ("flex", "auto", "default", "priority")
TIER_PROVIDERS = ("openai", "openai-responses", "simulated")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    provider: str
    name: str
    base_url: str | None = None
    api_key_env: str | None = None
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    native_schema: bool = True
    #: "online" (requests one by one, under the rate limits) or "batch" (the provider's batch API)
    mode: str = "online"
    #: a pool of servers when ``base_url`` is a list (``base_url`` is then the first)
    endpoints: tuple[EndpointSpec, ...] = ()
    #: OpenAI's ``service_tier`` ("flex", "auto", "default", "priority"); not part of a
    #: request's key: the same model answers at every tier
    service_tier: str | None = None

    @property
    def max_tokens(self) -> int | None:
        value = self.params.get("max_completion_tokens", self.params.get("max_tokens"))
        return value if isinstance(value, int) else None


@dataclass(frozen=True, slots=True)
class OutputSpec:
    dir: Path
    #: an object-storage URI the results go to; ``dir`` is then the local working directory
    uri: str | None = None
    schema: Mapping[str, Any] | None = None
    max_repairs: int = 1
    #: keep outcomes superseded by later outcomes of the same row (``all_results``) when parts
    #: are compacted; without it only each row's latest outcome is kept
    keep_history: bool = True


@dataclass(frozen=True, slots=True)
class LimitsSpec:
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int = 32
    max_failure_rate: float = 0.0
    max_cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class RetrySpec:
    max_attempts: int = 6
    timeout_s: float = 60.0
    #: at the end of a run, give up and resend requests far slower than the rest (stragglers)
    resend_stragglers: bool = True
    #: the longest single wait a provider's Retry-After can impose
    max_wait_s: float = 600.0


@dataclass(frozen=True, slots=True)
class BatchSpec:
    """How batch mode submits and polls."""

    poll_s: float = 30.0
    max_poll_s: float = 300.0
    max_requests: int | None = None


@dataclass(frozen=True, slots=True)
class PlanSpec:
    """A deadline and how to keep it (``[plan]``); without a deadline nothing is planned."""

    #: "HH:MM" (the next such time) or an ISO date and time
    deadline: str | None = None
    #: the cheapest tiers that keep the deadline (batch first); false: online only
    cheapest: bool = True
    #: the online time every row needs is multiplied by this for the switch point
    safety: float = 1.5
    #: seconds kept for cancelling a batch and collecting what it finished
    reserve_s: float = 60.0
    #: run even when the plan says the deadline (or the budget) cannot be kept
    soft: bool = False


BACKENDS = ("local", "ray")


@dataclass(frozen=True, slots=True)
class RunSpec:
    """Where a run's requests go out from: this process (``local``) or shards on Ray."""

    backend: str = "local"
    #: the Ray cluster to join ("auto", "ray://host:10001"); None starts a local Ray
    address: str | None = None
    shards: int = 4
    #: CPUs Ray reserves for each shard's task
    shard_cpus: float = 1.0


@dataclass(frozen=True, slots=True)
class PricingSpec:
    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    cached_input_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None
    #: run even when no price is known (cost then reads 0)
    allow_unpriced: bool = False


def _setting(default: Any, help: str) -> Any:
    """A ``SimulateSpec`` field: its default, and the help of its command-line option."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class SimulateSpec:
    """How the simulated provider behaves: ``[simulate]``, ``batchllm simulate``'s options and
    the simulator's own settings all come from these fields and defaults.

    Rates are fractions of requests. error_rate splits evenly over 500, 502 and 503; error,
    hang and reset rates are exclusive slices of one draw, so their sum is at most 1;
    malformed_rate is a separate draw that applies to JSON (schema or json_object) replies only.
    batch_expire_rate and batch_error_rate are exclusive slices of one draw per batch item.
    """

    latency_ms: float = _setting(50.0, "Mean reply latency in milliseconds.")
    jitter_ms: float = _setting(20.0, "Spread of the latency in milliseconds.")
    rpm: int | None = _setting(None, "Requests per minute to enforce (429 above it).")
    tpm: int | None = _setting(None, "Tokens per minute to enforce.")
    error_rate: float = _setting(0.0, "Share answered 5xx.")
    hang_rate: float = _setting(0.0, "Share never answered.")
    reset_rate: float = _setting(0.0, "Share of dropped connections.")
    malformed_rate: float = _setting(0.0, "Share of broken JSON replies to schema requests.")
    seed: int = _setting(0, "Seed of every random draw (faults, latency, replies).")
    batch_delay_s: float = _setting(
        1.0, "Seconds a batch takes from creation to its end (Batch APIs)."
    )
    batch_delay_spread: float = _setting(
        0.0, "On-time batches take between (1 - spread) x batch_delay_s and batch_delay_s."
    )
    batch_late_rate: float = _setting(0.0, "Share of batches that are late.")
    batch_late_min_s: float = _setting(0.0, "Shortest time of a late batch, in seconds.")
    batch_late_max_s: float = _setting(0.0, "Longest time of a late batch, in seconds.")
    batch_stall_rate: float = _setting(
        0.0, "Share of batches that never finish: every item expires at batch_window_s."
    )
    batch_window_s: float = _setting(86400.0, "Seconds after which a stalled batch expires.")
    batch_expire_rate: float = _setting(0.0, "Share of batch items that expire unanswered.")
    batch_error_rate: float = _setting(0.0, "Share of batch items answered 500.")
    flex_refuse_rate: float = _setting(
        0.0, 'Share of service_tier "flex" requests refused with 429 resource unavailable.'
    )
    flex_latency_ms: float = _setting(
        0.0, 'Extra latency of a service_tier "flex" reply, in milliseconds.'
    )
    refund_unused: bool = _setting(
        True,
        "Give back the unused part of max_tokens when a reply is sent (--no-refund-unused: keep "
        "it until the minute passes, as some providers do).",
    )

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem is not None:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """What makes these settings impossible, or None."""
        rates = (self.error_rate, self.hang_rate, self.reset_rate, self.malformed_rate,
                 self.flex_refuse_rate)  # fmt: skip
        if any(not 0.0 <= r <= 1.0 for r in rates):
            return "fault rates must be between 0 and 1"
        if self.error_rate + self.hang_rate + self.reset_rate > 1.0:
            return "error_rate + hang_rate + reset_rate must not exceed 1"
        if any(limit is not None and limit < 1 for limit in (self.rpm, self.tpm)):
            return "rpm and tpm must be positive or None"
        batch = (self.batch_expire_rate, self.batch_error_rate)
        if any(not 0.0 <= r <= 1.0 for r in batch) or sum(batch) > 1.0:
            return "batch rates must be between 0 and 1, and their sum at most 1"
        if self.batch_delay_s < 0:
            return "batch_delay_s must not be negative"
        if not 0.0 <= self.batch_delay_spread <= 1.0:
            return "batch_delay_spread must be between 0 and 1"
        tails = (self.batch_late_rate, self.batch_stall_rate)
        if any(not 0.0 <= r <= 1.0 for r in tails) or sum(tails) > 1.0:
            return "batch_late_rate + batch_stall_rate must be between 0 and 1"
        if self.batch_late_max_s < self.batch_late_min_s:
            return "batch_late_max_s must not be below batch_late_min_s"
        return None


@dataclass(frozen=True, slots=True)
class JobSpec:
    name: str
    path: Path
    input: InputSpec
    prompt: PromptSpec
    model: ModelSpec
    output: OutputSpec
    limits: LimitsSpec
    retry: RetrySpec
    pricing: PricingSpec
    simulate: SimulateSpec
    batch: BatchSpec = field(default_factory=BatchSpec)
    run: RunSpec = field(default_factory=RunSpec)
    plan: PlanSpec = field(default_factory=PlanSpec)

    @property
    def output_dir(self) -> Path:
        return self.output.dir

    @property
    def fingerprint(self) -> str:
        """Hash of everything that shapes a request: prompt, model, params, schema."""
        payload = {
            "provider": self.model.provider,
            "model": self.model.name,
            "params": dict(self.model.params),
            "system": self.prompt.system,
            "template": self.prompt.template,
            "schema": dict(self.output.schema) if self.output.schema else None,
            "native_schema": self.model.native_schema,
        }
        return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
