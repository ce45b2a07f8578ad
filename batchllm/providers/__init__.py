"""Provider adapters by name. Adding a provider is one module and one line here."""

from __future__ import annotations

from collections.abc import Callable

from batchllm.providers.base import Adapter
from batchllm.providers.openai import OpenAIChat

AdapterFactory = Callable[[str | None, str | None], Adapter]

#: provider name -> factory(base_url, api_key)
REGISTRY: dict[str, AdapterFactory] = {
    "openai": OpenAIChat,
    "openai-compatible": OpenAIChat,
    "simulated": OpenAIChat,
}

#: the environment variable that holds the key when the job file names none
DEFAULT_KEY_ENV: dict[str, str] = {"openai": "OPENAI_API_KEY"}


def make_adapter(provider: str, base_url: str | None, api_key: str | None) -> Adapter:
    return REGISTRY[provider](base_url, api_key)
