"""Where a price comes from, how it is recorded, and the small money and key helpers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

import batchllm
from batchllm import log
from batchllm.pricing import context_window, resolve_price
from batchllm.progress import money
from batchllm.providers.base import Usage
from batchllm.providers.http import credentials, scrub
from conftest import job_data, write_job


def _job(tmp_path: Path, model: str, **sections: dict) -> batchllm.JobSpec:
    return batchllm.load_job(write_job(tmp_path, job_data(None, model={"name": model}, **sections)))


def test_the_price_source_names_the_table_version_and_the_model(tmp_path: Path) -> None:
    """A table price records 'genai-prices VERSION: provider/model', with (batch) for batch."""
    job = _job(tmp_path, "gpt-4o-mini")
    online, batch = resolve_price(job), resolve_price(job, batch=True)
    assert online.source.startswith("genai-prices ") and "gpt-4o-mini" in online.source
    assert batch.source == online.source + " (batch)"
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert batch.cost(usage) == pytest.approx(online.cost(usage) / 2)


def test_job_file_prices_alone_name_the_job_file(tmp_path: Path) -> None:
    """Both base prices in [pricing] need no table: the source says so and they are used."""
    pricing = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
    price = resolve_price(_job(tmp_path, "acme-7", pricing=pricing))
    assert price.source == "job file [pricing]"
    assert price.cost(Usage(input_tokens=500_000, output_tokens=250_000)) == pytest.approx(1.0)


def test_a_partial_override_keeps_the_table_for_the_rest(tmp_path: Path) -> None:
    """Overriding only the cached rate keeps the table's other rates; the source names what
    the job file changed."""
    price = resolve_price(_job(tmp_path, "gpt-4o-mini", pricing={"cached_input_per_mtok": 0.0}))
    assert "with [pricing] cached_input_per_mtok" in price.source
    cached = Usage(input_tokens=1_000_000, cached_tokens=1_000_000)
    assert price.cost(cached) == 0.0
    assert price.cost(Usage(input_tokens=1_000_000)) == pytest.approx(0.15)


def test_an_unpriced_model_allowed_costs_nothing_and_says_so(tmp_path: Path) -> None:
    """allow_unpriced: the cost reads 0 and the source says the run was unpriced."""
    price = resolve_price(_job(tmp_path, "acme-7", pricing={"allow_unpriced": True}))
    assert price.cost(Usage(input_tokens=10**6, output_tokens=10**6)) == 0.0
    assert "unpriced" in price.source


def test_the_context_window_comes_from_the_table_when_known(tmp_path: Path) -> None:
    """A known model has a positive context window; an unknown one has none (no check)."""
    window = context_window(_job(tmp_path, "gpt-4o-mini"))
    assert window is not None and window >= 100_000
    assert context_window(_job(tmp_path, "acme-7", pricing={"allow_unpriced": True})) is None


@pytest.mark.parametrize(
    ("usd", "shown"),
    [(0.0, "$0.000000"), (0.000123, "$0.000123"), (0.5, "$0.5000"), (12.3456, "$12.3456"),
     (1234.5, "$1,234.50")],
)  # fmt: skip
def test_money_keeps_enough_digits_to_see_small_sums(usd: float, shown: str) -> None:
    """Fractions of a cent keep six decimals, cents four, hundreds of dollars two."""
    assert money(usd) == shown


@pytest.mark.parametrize(
    ("headers", "secrets"),
    [
        ({"Authorization": "Bearer sk-abc123"}, (b"sk-abc123",)),
        ({"x-api-key": "ant-key-1"}, (b"ant-key-1",)),
        ({"api-key": "azure-key-1", "Content-Type": "application/json"}, (b"azure-key-1",)),
        ({"x-goog-api-key": "goog-key-1"}, (b"goog-key-1",)),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, (b"Basic dXNlcjpwYXNz",)),
        ({"Content-Type": "application/json"}, ()),
        ({"x-api-key": "abc"}, ()),
    ],
)
def test_the_credentials_a_call_carries_are_found_in_its_headers(
    headers: dict[str, str], secrets: tuple[bytes, ...]
) -> None:
    """Each provider's key header is a credential (a bearer token without its scheme); other
    headers and values too short to be keys are not."""
    assert credentials(headers) == secrets


def test_scrub_masks_every_occurrence_and_only_the_secret() -> None:
    """Every copy of a secret is masked; the text around it stays."""
    body = b'{"echo": "sk-abc123", "again": "sk-abc123", "other": "sk-abc12"}'
    assert scrub(body, (b"sk-abc123",)) == b'{"echo": "***", "again": "***", "other": "sk-abc12"}'


@pytest.fixture
def configured_log() -> Iterator[None]:
    """Logging configured as the CLI does it, for one test (it writes to that test's stderr)."""
    yield
    structlog.reset_defaults()


@pytest.mark.usefixtures("configured_log")
def test_log_lines_never_carry_a_registered_secret(capsys: pytest.CaptureFixture[str]) -> None:
    """A secret registered with the log is printed as *** in JSON logs, at every level."""
    log.add_secret("sk-log-secret-42")
    log.configure("json")
    logger = structlog.get_logger("batchllm")
    logger.warning("provider.said", message="bad key sk-log-secret-42 given")
    logger.info("plain", value="nothing to hide")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["message"] == "bad key *** given" and lines[0]["level"] == "warning"
    assert lines[1]["value"] == "nothing to hide"


@pytest.mark.usefixtures("configured_log")
def test_quiet_logging_keeps_warnings_only(capsys: pytest.CaptureFixture[str]) -> None:
    """``-q`` drops info events and keeps warnings."""
    log.configure("json", quiet=True)
    logger = structlog.get_logger("batchllm")
    logger.info("run.start")
    logger.warning("run.stopping")
    events = [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()]
    assert events == ["run.stopping"]
