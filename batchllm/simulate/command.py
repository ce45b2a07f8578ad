"""``batchllm simulate``: the simulated provider as a standalone server, and its options.

Owns the command (found through the ``batchllm.commands`` entry point, so the CLI never imports
the simulator) and the mapping between ``SimConfig`` and command-line options, both ways: the
options are generated from the settings' fields (names, types, defaults, help), and ``flags``
turns settings back into options for a server started as a process (the benchmarks).
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Callable
from dataclasses import Field, fields
from typing import Any

import click

from batchllm.job.spec import SimulateSpec
from batchllm.simulate import serve_forever
from batchllm.simulate.config import SimConfig

#: settings with no option of their own: the key comes from --api-key-env
_NOT_OPTIONS = frozenset({"api_key", "retry_after", "reply_headers"})


def flags(settings: SimulateSpec) -> list[str]:
    """The ``batchllm simulate`` options that set ``settings`` (defaults are left out)."""
    found: list[str] = []
    for setting in _settings(type(settings)):
        value = getattr(settings, setting.name)
        if value == setting.default:
            continue
        name = _option_name(setting)
        if isinstance(value, bool):
            found.append(name if value else f"--no-{name[2:]}")
        else:
            found += [name, str(value)]
    return found


def _settings(kind: type[SimulateSpec]) -> list[Field[Any]]:
    return [setting for setting in fields(kind) if setting.name not in _NOT_OPTIONS]


def _option_name(setting: Field[Any]) -> str:
    return "--" + setting.name.replace("_", "-")


def _option(setting: Field[Any], kind: Any) -> Callable[[Any], Any]:
    """The click option of one setting, from its type, default and help."""
    name, help_text = _option_name(setting), setting.metadata.get("help")
    if kind is bool:
        flag = f"{name}/--no-{name[2:]}"
        return click.option(flag, default=setting.default, show_default=True, help=help_text)
    if isinstance(kind, types.UnionType):  # int | None: no default, unset unless given
        return click.option(name, type=int, help=help_text)
    if setting.name.endswith("_rate"):
        kind = click.FloatRange(0, 1)
    elif kind is float:
        kind = click.FloatRange(min=0)
    return click.option(name, type=kind, default=setting.default, show_default=True, help=help_text)


def _setting_options(command: Callable[..., Any]) -> Callable[..., Any]:
    hints = typing.get_type_hints(SimConfig)
    for setting in reversed(_settings(SimConfig)):
        command = _option(setting, hints[setting.name])(command)
    return command


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--api-key-env", help="Require the key held in this environment variable.")
@_setting_options
def simulate(host: str, port: int, api_key_env: str | None, **settings: Any) -> None:
    """Serve the simulated provider (every wire format batchllm speaks) until interrupted."""
    api_key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not api_key:
        raise click.UsageError(f"the variable {api_key_env} is not set")
    try:
        config = SimConfig(api_key=api_key, **settings)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    serve_forever(config, host, port)
