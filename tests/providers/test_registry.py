"""The provider registry: every entry complete, and providers plugged in through entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import genai_prices.data
import pytest

from batchllm.errors import RETRY_STATUSES, JobFileError, ServerError, error_for_status
from batchllm.job import load_job
from batchllm.providers import registry
from batchllm.providers.registry import entries, provider_entry, resolve
from batchllm.render import Request
from batchllm.simulate import SimServer
from conftest import job_data, ticket_rows, write_csv, write_job

NAMES = [entry.name for entry in entries()]
PRICE_IDS = {provider.id for provider in genai_prices.data.providers}
URL = "http://127.0.0.1:9/openai/deployments/d"
ACME = """
from batchllm.providers.registry import ProviderEntry

ENTRY = ProviderEntry(
    "acme", "batchllm.providers.openai:OpenAIChat", key_env="ACME_API_KEY", needs_base_url=True
)
"""


def _request() -> Request:
    return Request("row", "request", "m", (("user", "hello"),), {}, 2, 16)


@pytest.mark.parametrize("name", NAMES)
def test_every_entry_is_complete(name: str) -> None:
    """Each entry's references resolve, its adapter builds a request, its facts are usable."""
    entry = provider_entry(name)
    adapter = entry.make_adapter(URL, "key-0001")
    assert adapter.build(_request()).method == "POST"
    assert entry.price_id is None or entry.price_id in PRICE_IDS
    assert entry.key_env is not None or not entry.takes_key or entry.needs_base_url
    if entry.batch_api is not None:
        assert entry.make_batch_api(URL, "key-0001").get("b1").method == "GET"
    if entry.opener is not None:
        assert callable(resolve(entry.opener))


def test_names_are_unique_and_include_the_simulated_provider() -> None:
    """No two entries share a name; the simulated provider comes from its entry point."""
    assert len(NAMES) == len(set(NAMES))
    assert "simulated" not in {entry.name for entry in registry.BUILTIN}
    assert provider_entry("simulated").takes_key is False
    assert set(registry.batch_names()) == {"openai", "anthropic", "gemini", "simulated"}


def test_an_unknown_provider_is_a_key_error_naming_the_known_ones() -> None:
    """Looking up a name no entry has fails with the list of known names."""
    with pytest.raises(KeyError, match="known: openai"):
        provider_entry("acme")
    with pytest.raises(ValueError, match="no batch mode for provider 'azure-openai'"):
        provider_entry("azure-openai").make_batch_api(None, None)


def test_job_files_accept_exactly_the_registered_providers(tmp_path: Path) -> None:
    """[model] provider is checked against the registry, base URL needs included."""
    for name in NAMES:
        url = URL if provider_entry(name).needs_base_url else None
        path = write_job(tmp_path, job_data(None, model={"provider": name, "base_url": url}))
        assert load_job(path).model.provider == name
    path = write_job(tmp_path, job_data(None, model={"provider": "azure-openai", "base_url": None}))
    with pytest.raises(JobFileError, match="provider 'azure-openai' needs 'base_url'"):
        load_job(path)


def test_one_table_reads_the_common_statuses() -> None:
    """error_for_status: 401/403 fatal, 429 and the retry statuses retried, others fail the row."""
    assert error_for_status(401, "x").fatal and error_for_status(403, "x").fatal
    assert error_for_status(429, "x", retry_after_s=2.0).retry_after_s == 2.0
    for status in RETRY_STATUSES - {429}:
        assert isinstance(error_for_status(status, "x"), ServerError)
    assert error_for_status(599, "x").retryable
    assert not error_for_status(422, "x").retryable


def test_the_simulated_provider_uses_the_jobs_base_url_when_given(
    tmp_path: Path, sim: SimServer
) -> None:
    """provider = "simulated" with a base_url sends to that server instead of starting one."""
    write_csv(tmp_path / "input.csv", ticket_rows(5))
    data = job_data(sim.url, model={"provider": "simulated"})
    done = subprocess.run(
        [sys.executable, "-m", "batchllm", "-q", "run", str(write_job(tmp_path, data))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert sim.stats()["requests"] == 5


def _plugin(directory: Path) -> Path:
    """A distribution on disk whose entry point adds the provider "acme"."""
    directory.mkdir(exist_ok=True)
    (directory / "acme_provider.py").write_text(ACME, encoding="utf-8")
    info = directory / "acme_provider-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-provider\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[batchllm.providers]\nacme = acme_provider:ENTRY\n")
    return directory


def test_a_provider_added_through_an_entry_point_runs_a_job(tmp_path: Path, sim: SimServer) -> None:
    """An outside distribution's entry point adds a provider: the job file takes its name, its
    key variable is read, and its adapter sends every row."""
    plugins = _plugin(tmp_path / "plugins")
    write_csv(tmp_path / "input.csv", ticket_rows(4))
    data = job_data(sim.url, model={"provider": "acme"})
    env = {**os.environ, "PYTHONPATH": str(plugins), "ACME_API_KEY": "acme-key-0001"}
    command = [sys.executable, "-m", "batchllm", "-q", "run", str(write_job(tmp_path, data))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert "4 ok" in done.stdout
    del env["ACME_API_KEY"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "ACME_API_KEY" in done.stderr


def test_an_entry_point_that_is_not_a_provider_entry_is_refused(tmp_path: Path) -> None:
    """An entry point naming something else than a ProviderEntry fails loudly, by name."""
    plugins = _plugin(tmp_path)
    (plugins / "acme_provider.py").write_text("ENTRY = 'not an entry'\n", encoding="utf-8")
    code = "from batchllm.providers.registry import names; names()"
    env = {**os.environ, "PYTHONPATH": str(plugins)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode != 0
    assert "acme_provider:ENTRY is not a batchllm ProviderEntry" in done.stderr
