"""Every provider batchllm can talk to: one ``ProviderEntry`` each, looked up by name.

An entry holds all the facts about a provider that live outside its adapter: its adapter, the
environment variable of its key, its id in the price table, whether it needs a base URL, its
batch API and how a run opens it. Built-in providers are listed here; others come from the
``batchllm.providers`` entry point group (each entry point names a ``ProviderEntry``), the seam
an outside adapter uses and the simulated provider, which is not part of the product, uses too.

Factories are "module:attribute" references, imported on first use, so reading a job file does
not import every adapter. This module does not send anything and knows no wire format.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from batchllm.job import JobSpec
    from batchllm.providers.base import Adapter
    from batchllm.providers.batches import BatchApi

ENTRY_POINT_GROUP = "batchllm.providers"

AdapterFactory = Callable[[str | None, str | None], "Adapter"]
BatchApiFactory = Callable[[str | None, str | None], "BatchApi"]
Opener = Callable[["JobSpec"], AbstractAsyncContextManager[str | None]]


@dataclass(frozen=True, slots=True)
class ProviderEntry:
    """One provider. References are "module:attribute"; factories take (base_url, api_key).

    ``opener`` names a function ``job -> async context manager`` that yields the base URL to
    use for the run (the simulated provider's starts a server in-process when the job gives
    none); a provider without one is used at the job's ``base_url``. A provider with an opener
    and no ``base_url`` lives only inside a run, so it has no batches to ask about outside one.
    """

    name: str
    #: the adapter factory: ``(base_url, api_key) -> Adapter``
    adapter: str
    #: the environment variable holding the key when the job file names none
    key_env: str | None = None
    #: False: the provider never takes a key, whatever the job file says
    takes_key: bool = True
    #: genai-prices' provider id; None: the model is found by its name alone
    price_id: str | None = None
    needs_base_url: bool = False
    #: the batch API factory ``(base_url, api_key) -> BatchApi``; None: online mode only
    batch_api: str | None = None
    opener: str | None = None

    def make_adapter(self, base_url: str | None, api_key: str | None) -> Adapter:
        """This provider's adapter for ``base_url`` (None: its default) and ``api_key``."""
        factory = cast("AdapterFactory", resolve(self.adapter))
        return factory(base_url, api_key)

    def make_batch_api(self, base_url: str | None, api_key: str | None) -> BatchApi:
        """This provider's batch API; ``ValueError`` when it has none."""
        if self.batch_api is None:
            raise ValueError(f"no batch mode for provider '{self.name}'")
        factory = cast("BatchApiFactory", resolve(self.batch_api))
        return factory(base_url, api_key)

    def lives_in_run(self, base_url: str | None) -> bool:
        """Whether the provider exists only inside a run (started by its opener)."""
        return self.opener is not None and base_url is None


BUILTIN = (
    ProviderEntry(
        "openai",
        "batchllm.providers.openai:OpenAIChat",
        key_env="OPENAI_API_KEY",
        price_id="openai",
        batch_api="batchllm.providers.batches:openai_batches",
    ),
    ProviderEntry(
        "openai-responses",
        "batchllm.providers.openai_responses:OpenAIResponses",
        key_env="OPENAI_API_KEY",
        price_id="openai",
    ),
    ProviderEntry("openai-compatible", "batchllm.providers.openai:OpenAIChat", needs_base_url=True),
    ProviderEntry(
        "azure-openai",
        "batchllm.providers.azure:AzureOpenAI",
        key_env="AZURE_OPENAI_API_KEY",
        price_id="azure",
        needs_base_url=True,
    ),
    ProviderEntry(
        "anthropic",
        "batchllm.providers.anthropic:AnthropicMessages",
        key_env="ANTHROPIC_API_KEY",
        price_id="anthropic",
        batch_api="batchllm.providers.batches:anthropic_batches",
    ),
    ProviderEntry(
        "gemini",
        "batchllm.providers.gemini:Gemini",
        key_env="GEMINI_API_KEY",
        price_id="google",
        batch_api="batchllm.providers.batches_gemini:gemini_batches",
    ),
)


def entries() -> tuple[ProviderEntry, ...]:
    """Every provider: the built-in ones, then those from entry points by name."""
    return (*BUILTIN, *_plugins())


def names() -> tuple[str, ...]:
    return tuple(entry.name for entry in entries())


def batch_names() -> tuple[str, ...]:
    """The providers with a batch mode."""
    return tuple(entry.name for entry in entries() if entry.batch_api is not None)


def find(name: str) -> ProviderEntry | None:
    return next((entry for entry in entries() if entry.name == name), None)


def provider_entry(name: str) -> ProviderEntry:
    """The entry of a provider; ``KeyError`` for a name no entry has (job files are checked)."""
    entry = find(name)
    if entry is None:
        raise KeyError(f"no provider named '{name}'; known: {', '.join(names())}")
    return entry


def make_adapter(provider: str, base_url: str | None, api_key: str | None) -> Adapter:
    """The adapter of the provider named ``provider`` (see ``ProviderEntry.make_adapter``)."""
    return provider_entry(provider).make_adapter(base_url, api_key)


def batch_api(provider: str, base_url: str | None, api_key: str | None) -> BatchApi:
    """The batch API of a provider; ``ValueError`` for a provider without batch mode."""
    return provider_entry(provider).make_batch_api(base_url, api_key)


@contextlib.asynccontextmanager
async def open_provider(job: JobSpec) -> AsyncIterator[str | None]:
    """Open the job's provider for a run and yield its base URL (None: the adapter's default);
    for most providers that is the job's ``base_url``, untouched."""
    entry = provider_entry(job.model.provider)
    if entry.opener is None:
        yield job.model.base_url
        return
    opener = cast("Opener", resolve(entry.opener))
    async with opener(job) as base_url:
        yield base_url


def resolve(reference: str) -> Any:
    """The object a "module:attribute" reference names, importing its module."""
    module, _, attribute = reference.partition(":")
    found: Any = importlib.import_module(module)
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


@functools.cache
def _plugins() -> tuple[ProviderEntry, ...]:
    taken = {entry.name: "batchllm" for entry in BUILTIN}
    found: list[ProviderEntry] = []
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if taken.get(point.name) == point.value:
            continue  # the same distribution seen twice on the path (a stale build)
        entry = point.load()
        if not isinstance(entry, ProviderEntry):
            raise TypeError(f"entry point {point.value} is not a batchllm ProviderEntry")
        if entry.name in taken:
            raise ValueError(f"entry point {point.value} redefines provider '{entry.name}'")
        taken[entry.name] = point.value
        found.append(entry)
    return tuple(sorted(found, key=lambda entry: entry.name))
