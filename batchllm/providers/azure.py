"""Azure OpenAI Chat Completions on a deployment (providers.md §11, Azure row).

``base_url`` is the deployment URL, e.g. ``https://RES.openai.azure.com/openai/deployments/NAME``,
optionally with ``?api-version=...`` (default 2024-10-21). Requests go to
``{deployment}/chat/completions?api-version=...`` with the key in the ``api-key`` header.

Everything else is OpenAI Chat, inherited from ``OpenAIChat``: the body (``model`` stays in it;
Azure serves the deployment whatever it says), ``[model.params]`` as they are, the reply (a
``content_filter`` finish reason passes through), usage, and the error mapping, which already
takes ``code`` as a string status with no ``type`` (a 400 with code content_filter fails the
row). One addition: Azure's 429 says when to retry in words ("Please retry after 37 seconds")
when the ``retry-after`` headers are missing. Azure sends only the ``x-ratelimit-remaining-*``
headers; the limits themselves are then left to the job file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from batchllm.errors import ProviderError, RateLimited
from batchllm.providers.openai import OpenAIChat
from batchllm.providers.wire import wait_or_none

DEFAULT_API_VERSION = "2024-10-21"
_RETRY_AFTER = re.compile(r"retry after (\d+(?:\.\d+)?) seconds?", re.IGNORECASE)


class AzureOpenAI(OpenAIChat):
    """Adapter for Azure OpenAI: OpenAI Chat on a deployment URL, with the ``api-key`` header."""

    name = "azure-openai"

    def __init__(self, base_url: str | None, api_key: str | None) -> None:
        if not base_url:
            raise ValueError("azure-openai needs base_url: the deployment URL")
        super().__init__(base_url, api_key)
        self.url = completions_url(base_url)
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["api-key"] = api_key
        self.headers = headers

    def _error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        error = super()._error(status, headers, body)
        if not isinstance(error, RateLimited) or error.retry_after_s is not None:
            return error
        said = _RETRY_AFTER.search(str(error))
        wait = wait_or_none(float(said.group(1))) if said else None
        return RateLimited(str(error), status=status, retry_after_s=wait)


def completions_url(deployment_url: str) -> str:
    """``{deployment}/chat/completions?api-version=...``, keeping any other query parameters."""
    parts = urlsplit(deployment_url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("api-version", DEFAULT_API_VERSION)
    path = parts.path.rstrip("/").removesuffix("/chat/completions") + "/chat/completions"
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), ""))
