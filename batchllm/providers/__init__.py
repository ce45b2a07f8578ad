"""Provider adapters by name. Adding a provider is one module and one line here."""

from __future__ import annotations

from collections.abc import Callable

from batchllm.providers.anthropic import AnthropicMessages
from batchllm.providers.azure import AzureOpenAI
from batchllm.providers.base import Adapter
from batchllm.providers.gemini import Gemini
from batchllm.providers.openai import OpenAIChat
from batchllm.providers.openai_responses import OpenAIResponses

AdapterFactory = Callable[[str | None, str | None], Adapter]

#: provider name -> factory(base_url, api_key)
REGISTRY: dict[str, AdapterFactory] = {
    "openai": OpenAIChat,
    "openai-compatible": OpenAIChat,
    "simulated": OpenAIChat,
    "openai-responses": OpenAIResponses,
    "anthropic": AnthropicMessages,
    "gemini": Gemini,
    "azure-openai": AzureOpenAI,
}

#: the environment variable that holds the key when the job file names none
DEFAULT_KEY_ENV: dict[str, str] = {
    "openai": "OPENAI_API_KEY",
    "openai-responses": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "azure-openai": "AZURE_OPENAI_API_KEY",
}


def make_adapter(provider: str, base_url: str | None, api_key: str | None) -> Adapter:
    return REGISTRY[provider](base_url, api_key)
