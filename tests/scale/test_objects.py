"""Object storage: input read from and results written to S3 (moto's server on loopback)."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from batchllm.job import load_job
from batchllm.query import query
from batchllm.run.pipeline import run_job
from batchllm.simulate import SimConfig
from conftest import SimThread, job_data, ticket_rows, write_job

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

BUCKET = "jobs"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A moto S3 server on 127.0.0.1 with one bucket; the environment points at it."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield client
    server.stop()


def _put_csv(client: object, key: str, rows: list[dict[str, str]]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    client.put_object(Bucket=BUCKET, Key=key, Body=text.getvalue().encode())  # type: ignore[attr-defined]


def _keys(client: object, prefix: str) -> list[str]:
    found = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)  # type: ignore[attr-defined]
    return sorted(item["Key"] for item in found.get("Contents", []))


def test_run_reads_and_writes_s3_and_query_reads_it(
    tmp_path: Path, sims: SimThread, s3: object
) -> None:
    """Input and output on S3: parts and a commit record land there, query reads them back."""
    sim = sims.start(SimConfig(latency_ms=2, jitter_ms=1))
    _put_csv(s3, "in/tickets.csv", ticket_rows(40))
    data = job_data(sim.url)
    data["input"]["path"] = f"s3://{BUCKET}/in/tickets.csv"
    data["output"] = {"dir": f"s3://{BUCKET}/out/triage", "work_dir": "work"}
    job = load_job(write_job(tmp_path, data))
    assert job.output.uri == f"s3://{BUCKET}/out/triage"

    summary = run_job(job)

    assert (summary.rows, summary.ok) == (40, 40)
    keys = _keys(s3, "out/triage/")
    assert "out/triage/commit.json" in keys
    parts = [k for k in keys if k.startswith("out/triage/results/part-")]
    record = orjson.loads(
        s3.get_object(Bucket=BUCKET, Key="out/triage/commit.json")["Body"].read()  # type: ignore[attr-defined]
    )
    assert sorted(f"out/triage/results/{p}" for p in record["parts"]) == parts
    assert (tmp_path / "work" / "manifest.json").exists()  # the journal and lock stay local
    counts = query(job, "select count(*) n, count(distinct row_key) k from results").to_pylist()
    assert counts == [{"n": 40, "k": 40}]
    assert query(job, "select count(*) n from runs").to_pylist() == [{"n": 1}]


def test_a_new_working_directory_resumes_from_s3(
    tmp_path: Path, sims: SimThread, s3: object
) -> None:
    """A run elsewhere (an empty working directory) sends only the rows S3 does not hold."""
    sim = sims.start(SimConfig(latency_ms=2, jitter_ms=1))
    _put_csv(s3, "in/tickets.csv", ticket_rows(30))
    data = job_data(sim.url)
    data["input"]["path"] = f"s3://{BUCKET}/in/tickets.csv"
    data["output"] = {"dir": f"s3://{BUCKET}/out/again", "work_dir": "first"}
    run_job(load_job(write_job(tmp_path, data)))
    _put_csv(s3, "in/tickets.csv", ticket_rows(35))
    data["output"]["work_dir"] = "second"
    job = load_job(write_job(tmp_path, data))

    summary = run_job(job)

    assert (summary.sent, summary.reused) == (5, 30)
    assert sim.stats()["requests"] == 35
    assert query(job, "select count(*) n from results").to_pylist() == [{"n": 35}]


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_a_sharded_ray_run_reads_and_writes_s3(tmp_path: Path, sims: SimThread, s3: object) -> None:
    """Input and output on S3, two shards on a local Ray the driver starts: every row once,
    query reads the bucket, the run recorded once; run again from an empty working directory,
    every row is reused and nothing is sent."""
    pytest.importorskip("ray")
    sim = sims.start(SimConfig(latency_ms=2, jitter_ms=1))
    _put_csv(s3, "in/tickets.csv", ticket_rows(120))
    data = job_data(sim.url, run={"backend": "ray", "shards": 2, "shard_cpus": 0.5})
    data["input"]["path"] = f"s3://{BUCKET}/in/tickets.csv"
    data["output"] = {"dir": f"s3://{BUCKET}/out/sharded", "work_dir": "work"}
    job = load_job(write_job(tmp_path, data))
    command = [sys.executable, "-m", "batchllm", "-q", "run", str(job.path)]

    first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)

    assert first.returncode == 0, first.stderr
    keys = _keys(s3, "out/sharded/")
    for record in ("commit.json", "shards/000/commit.json", "shards/001/commit.json"):
        assert f"out/sharded/{record}" in keys
    sql = "select count(*) n, count(distinct row_key) k, count(*) filter (status = 'ok') ok"
    assert query(job, f"{sql} from results").to_pylist() == [{"n": 120, "k": 120, "ok": 120}]
    assert query(job, "select status, ok from runs").to_pylist() == [
        {"status": "finished", "ok": 120}
    ]

    shutil.rmtree(tmp_path / "work")  # another machine: nothing but the bucket
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)

    assert again.returncode == 0, again.stderr
    assert sim.stats()["requests"] == 120
    runs = query(job, "select run_number, status, reused, sent from runs order by 1").to_pylist()
    assert runs == [
        {"run_number": 1, "status": "finished", "reused": 0, "sent": 120},
        {"run_number": 2, "status": "finished", "reused": 120, "sent": 0},
    ]
