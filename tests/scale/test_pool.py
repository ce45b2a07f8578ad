"""The endpoint pool: one run's requests spread over several simulated servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchllm.errors import JobFileError
from batchllm.job import JobSpec, load_job
from batchllm.query import query
from batchllm.run.pipeline import run_job
from batchllm.simulate import SimConfig
from conftest import SimThread, job_data, ticket_rows, write_csv, write_job


def test_pool_spreads_requests_and_survives_a_dead_endpoint(
    tmp_path: Path, sims: SimThread
) -> None:
    """Three endpoints, one closed mid-run: every row once, each live endpoint used."""
    servers = [sims.start(SimConfig(latency_ms=20, jitter_ms=5)) for _ in range(3)]
    write_csv(tmp_path / "input.csv", ticket_rows(300))
    data = job_data(None, limits={"concurrency": 12}, retry={"max_attempts": 6, "timeout_s": 5})
    path = write_job(tmp_path, data)
    pool = ", ".join(f'{{ url = "{s.url}", concurrency = 4 }}' for s in servers)
    text = path.read_text().replace('base_url = "http://127.0.0.1:9/v1"', f"base_url = [{pool}]")
    path.write_text(text)
    job = load_job(path)
    assert len(job.model.endpoints) == 3

    sims.loop.call_soon_threadsafe(
        lambda: sims.loop.call_later(0.3, lambda: sims.loop.create_task(servers[1].close()))
    )
    summary = run_job(job)
    assert (summary.rows, summary.ok) == (300, 300)
    counts = query(job, "select count(*) n, count(distinct row_key) k from results").to_pylist()
    assert counts == [{"n": 300, "k": 300}]
    answered = [s.stats()["ok"] for s in servers]
    assert all(n > 0 for n in answered) and sum(answered) >= 300


def test_requests_waiting_for_a_slot_are_served_in_turn(tmp_path: Path, sims: SimThread) -> None:
    """More workers than the pool's slots: no request waits out the run and is sent twice."""
    servers = [sims.start(SimConfig(latency_ms=20, jitter_ms=2)) for _ in range(2)]
    write_csv(tmp_path / "input.csv", ticket_rows(400))
    path = write_job(tmp_path, job_data(None, limits={"concurrency": 12}))
    pool = ", ".join(f'{{ url = "{s.url}", concurrency = 2 }}' for s in servers)
    text = path.read_text().replace('base_url = "http://127.0.0.1:9/v1"', f"base_url = [{pool}]")
    path.write_text(text)

    summary = run_job(load_job(path))

    assert (summary.rows, summary.ok) == (400, 400)
    assert sum(s.stats()["requests"] for s in servers) == 400
    assert sum(s.stats()["duplicates"] for s in servers) == 0


def _pool_job(tmp_path: Path, endpoints: str, rows: int, concurrency: int) -> JobSpec:
    write_csv(tmp_path / "input.csv", ticket_rows(rows))
    data = job_data(None, limits={"concurrency": concurrency}, retry={"timeout_s": 5})
    path = write_job(tmp_path, data)
    text = path.read_text().replace(
        'base_url = "http://127.0.0.1:9/v1"', f"base_url = [{endpoints}]"
    )
    path.write_text(text)
    return load_job(path)


def test_each_endpoint_gets_work_in_proportion_to_its_slots(
    tmp_path: Path, sims: SimThread
) -> None:
    """Two equal servers, one given 1 slot and one 3: the second answers about three times as
    many requests (least outstanding, within each endpoint's concurrency)."""
    small, large = (sims.start(SimConfig(latency_ms=20, jitter_ms=0)) for _ in range(2))
    pool = f'{{ url = "{small.url}", concurrency = 1 }}, {{ url = "{large.url}", concurrency = 3 }}'
    job = _pool_job(tmp_path, pool, rows=200, concurrency=8)
    summary = run_job(job)
    assert summary.ok == 200
    few, many = small.stats()["ok"], large.stats()["ok"]
    assert few + many == 200
    assert 2.0 <= many / few <= 4.5


def test_plain_urls_in_a_list_share_the_run_s_concurrency(tmp_path: Path, sims: SimThread) -> None:
    """base_url as a list of plain URLs: both servers are used and every row is answered once."""
    servers = [sims.start(SimConfig(latency_ms=5, jitter_ms=0)) for _ in range(2)]
    pool = ", ".join(f'"{s.url}"' for s in servers)
    job = _pool_job(tmp_path, pool, rows=100, concurrency=4)
    summary = run_job(job)
    assert summary.ok == 100
    answered = [s.stats()["ok"] for s in servers]
    assert sum(answered) == 100 and min(answered) >= 20


def test_an_endpoint_with_its_own_limits_is_held_to_them(tmp_path: Path, sims: SimThread) -> None:
    """One endpoint capped at its own RPM, one at its own TPM (each server enforcing the same),
    one free: the capped ones see no 429 and the free one takes the rest."""
    by_rpm = sims.start(SimConfig(latency_ms=10, jitter_ms=0, rpm=120))
    by_tpm = sims.start(SimConfig(latency_ms=10, jitter_ms=0, tpm=6_000))
    free = sims.start(SimConfig(latency_ms=10, jitter_ms=0))
    pool = (
        f'{{ url = "{by_rpm.url}", concurrency = 4, rpm = 120 }}, '
        f'{{ url = "{by_tpm.url}", concurrency = 4, tpm = 6000 }}, '
        f'{{ url = "{free.url}", concurrency = 4 }}'
    )
    job = _pool_job(tmp_path, pool, rows=400, concurrency=12)
    assert [e.rpm for e in job.model.endpoints] == [120, None, None]

    summary = run_job(job)

    assert summary.ok == 400
    stats = [s.stats() for s in (by_rpm, by_tpm, free)]
    assert [s["rate_limited"] for s in stats] == [0, 0, 0]
    assert sum(s["ok"] for s in stats) == 400
    assert all(s["ok"] > 0 for s in stats)
    # the run's limiter did not take an endpoint's own limits for the run's
    assert stats[2]["ok"] > 2 * (stats[0]["ok"] + stats[1]["ok"])


def test_pool_entries_are_checked(tmp_path: Path) -> None:
    """An endpoint's rpm, tpm and keys are checked like any other key, in one line."""
    write_csv(tmp_path / "input.csv", ticket_rows(1))
    path = write_job(tmp_path, job_data(None))
    for entry, message in (
        ('{ url = "http://a:1/v1", rpm = 0 }', "rpm: must be greater than 0"),
        ('{ url = "http://a:1/v1", tpm = "many" }', "tpm"),
        ('{ url = "http://a:1/v1", rps = 5 }', "unknown key 'rps' (did you mean 'rpm'?)"),
        ("{ concurrency = 3 }", "list items are URLs or {url, concurrency, rpm, tpm}"),
    ):
        text = path.read_text().replace(
            'base_url = "http://127.0.0.1:9/v1"', f"base_url = [{entry}]"
        )
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(JobFileError) as caught:
            load_job(bad)
        assert message in str(caught.value) and "\n" not in str(caught.value)
