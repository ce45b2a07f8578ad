"""Provider adapters (one module each), their batch APIs, and the registry that names them.

``batchllm.providers.registry`` is where a provider is looked up. This package imports only the
registry (which imports no adapter until one is used), so reading a job file stays cheap.
"""

from __future__ import annotations

from batchllm.providers.registry import BUILTIN, make_adapter

__all__ = ["DEFAULT_KEY_ENV", "make_adapter"]

#: built-in provider -> the environment variable of its key (read from the registry)
DEFAULT_KEY_ENV: dict[str, str] = {entry.name: entry.key_env for entry in BUILTIN if entry.key_env}
