"""Structured output: schema sent, replies validated, repaired or quarantined, typed columns."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

import batchllm
from batchllm.cli import main
from batchllm.errors import SchemaProblem
from batchllm.providers.openai import OpenAIChat
from batchllm.render import Request
from batchllm.run.pipeline import arun_job
from batchllm.simulate import SimConfig, SimServer
from batchllm.validate import OutputSchema
from conftest import job_data, ticket_rows, write_csv, write_job

SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["bug", "billing", "other"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "count": {"type": "integer"},
        "urgent": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "note": {"type": "string"},
    },
    "required": ["label", "confidence", "count", "urgent", "tags"],
    "additionalProperties": False,
}


def _job(tmp_path: Path, url: str, rows: int = 30, **sections: dict) -> batchllm.JobSpec:
    write_csv(tmp_path / "input.csv", ticket_rows(rows))
    (tmp_path / "reply.schema.json").write_text(json.dumps(SCHEMA))
    output = {"schema_file": "reply.schema.json", **sections.pop("output", {})}
    return batchllm.load_job(write_job(tmp_path, job_data(url, output=output, **sections)))


async def test_schema_properties_become_typed_columns(tmp_path: Path, sim: SimServer) -> None:
    """Each top-level property is a column of its type, queryable without JSON functions."""
    job = _job(tmp_path, sim.url, model={"params": {"max_tokens": 300}})
    summary = await arun_job(job)
    assert summary.ok == 30
    types = batchllm.query(
        job,
        "select typeof(label) as label, typeof(confidence) as confidence, typeof(count) as n, "
        "typeof(urgent) as urgent, typeof(tags) as tags from results limit 1",
    ).to_pylist()[0]
    assert types == {
        "label": "VARCHAR",
        "confidence": "DOUBLE",
        "n": "BIGINT",
        "urgent": "BOOLEAN",
        "tags": "VARCHAR",
    }
    grouped = batchllm.query(job, "select label, avg(confidence) as c from results group by 1")
    assert set(grouped.column("label").to_pylist()) <= {"bug", "billing", "other"}
    rows = batchllm.query(job, "select output, label, tags from results").to_pylist()
    for row in rows:
        assert json.loads(row["output"])["label"] == row["label"]
        assert isinstance(json.loads(row["tags"]), list)


async def test_every_broken_reply_ends_repaired_or_quarantined(tmp_path: Path, sims) -> None:
    """Every reply broken, no re-asks: fences and prose are fixed free, the rest quarantined."""
    server = sims.start(SimConfig(latency_ms=1, jitter_ms=0, malformed_rate=1.0))
    job = _job(tmp_path, server.url, rows=60, output={"max_repairs": 0})
    summary = await arun_job(job)
    assert summary.ok + summary.invalid == 60 and summary.failed == 0
    assert summary.ok > 0 and summary.invalid > 0
    rows = batchllm.query(
        job, "select status, error_type, error, repairs, label from results"
    ).to_pylist()
    assert all(r["repairs"] == 0 for r in rows)
    for row in rows:
        if row["status"] == "ok":
            assert row["label"] in {"bug", "billing", "other"}
        else:
            assert row["label"] is None
            assert row["error_type"] in {"invalid_output", "truncated"}
    reasons = {r["error"] for r in rows if r["status"] == "invalid"}
    assert any(reason.startswith("$.label:") and "is not one of" in reason for reason in reasons)
    assert any("is a required property" in reason for reason in reasons)
    assert "the reply was cut off at max_tokens" in reasons


async def test_reasking_fixes_replies_and_every_reply_is_paid_for(tmp_path: Path, sims) -> None:
    """A re-ask sends the conversation plus the error; its usage and cost are added to the row."""
    server = sims.start(SimConfig(latency_ms=1, jitter_ms=0, malformed_rate=0.5, seed=3))
    job = _job(tmp_path, server.url, rows=60, output={"max_repairs": 2})
    summary = await arun_job(job)
    rows = batchllm.query(
        job, "select status, repairs, attempts, input_tokens, cost_usd from results"
    ).to_pylist()
    repaired = [r for r in rows if r["repairs"] > 0]
    plain = [r for r in rows if r["repairs"] == 0]
    assert repaired and plain
    assert all(r["attempts"] == r["repairs"] + 1 for r in repaired)
    assert min(r["input_tokens"] for r in repaired) > max(r["input_tokens"] for r in plain)
    assert server.stats()["requests"] == 60 + sum(r["repairs"] for r in rows)
    spent = server.stats()["prompt_tokens"] * 0.15 + server.stats()["completion_tokens"] * 0.6
    assert summary.cost_usd == pytest.approx(spent / 1e6)
    assert all(r["status"] == "ok" for r in rows if r["repairs"] < 2)


async def test_a_reply_cut_off_by_max_tokens_is_reported_as_truncated(tmp_path: Path, sim) -> None:
    """finish_reason length with broken JSON says 'truncated', not a parse error."""
    job = _job(
        tmp_path, sim.url, rows=5, model={"params": {"max_tokens": 4}}, output={"max_repairs": 0}
    )
    summary = await arun_job(job)
    assert summary.invalid == 5
    rows = batchllm.query(job, "select distinct error_type, error, finish_reason from results")
    assert rows.to_pylist() == [
        {
            "error_type": "truncated",
            "error": "the reply was cut off at max_tokens",
            "finish_reason": "length",
        }
    ]


async def test_a_server_without_native_schemas_gets_the_schema_in_the_prompt(
    tmp_path: Path, sims
) -> None:
    """native_schema = false puts the schema in the prompt; sent natively, the job is refused."""
    server = sims.start(SimConfig(latency_ms=1, jitter_ms=0, native_schema=False))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    refused = await arun_job(_job(tmp_path / "a", server.url, rows=5))
    assert refused.failed == 5
    prompted = await arun_job(
        _job(tmp_path / "b", server.url, rows=5, model={"native_schema": False})
    )
    assert prompted.ok == 5


def test_fences_and_prose_are_stripped_before_validating() -> None:
    """The free repair tier: code fences and chatter around the JSON are removed."""
    schema = OutputSchema(SCHEMA)
    body = '{"label": "bug", "confidence": 0.5, "count": 2, "urgent": false, "tags": []}'
    assert schema.check(body, "stop").repaired is False
    for text in (f"```json\n{body}\n```", f"Sure! Here it is:\n{body}\nHope that helps."):
        checked = schema.check(text, "stop")
        assert checked.value is not None and checked.value["label"] == "bug" and checked.repaired
    wrong = body.replace('"bug"', '"urgent"')
    checked = schema.check(wrong, "stop")
    assert checked.value is None and checked.error is not None
    assert checked.error.startswith('$.label: "urgent" is not one of')


def test_a_reply_that_is_not_json_says_why() -> None:
    """A number too large for a double is reported as such, not as "not a JSON object"."""
    schema = OutputSchema(SCHEMA)
    huge = schema.check('{"label": "bug", "confidence": 1E99999}', "stop")
    assert huge.value is None and huge.error is not None
    assert huge.error.startswith("the reply is not valid JSON: number is infinity")
    fenced = schema.check('```json\n{"label": "bug", "count": 1e400}\n```', "stop")
    assert fenced.error is not None and "infinity" in fenced.error
    assert schema.check('["bug"]', "stop").error == "the reply is not a JSON object"
    assert schema.check("I cannot help with that.", "stop").error == (
        "the reply is not a JSON object"
    )


def test_strict_mode_is_used_only_when_the_schema_allows_it() -> None:
    """OpenAI strict mode needs every property required and objects closed."""
    assert OutputSchema(SCHEMA).strict is False
    closed = {**SCHEMA, "required": list(SCHEMA["properties"])}
    assert OutputSchema(closed).strict is True
    request = Request("r", "k", "m", (("user", "u"),), {}, 1, None, closed, True)
    body = orjson.loads(OpenAIChat(None, None).build(request).body)
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    assert body["response_format"]["json_schema"]["schema"] == closed


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ('{"type": "objec"}', "not a valid JSON Schema"),
        ('{"type": "string"}', 'the top level must be {"type": "object"'),
        ("{not json", "is not JSON"),
        ("[1, 2]", "must hold a JSON object"),
    ],
)
def test_a_broken_schema_is_a_job_error_before_any_request(
    tmp_path: Path, sim: SimServer, schema: str, message: str
) -> None:
    """An invalid schema file stops the job with exit 2 and one line, sending nothing."""
    write_csv(tmp_path / "input.csv", ticket_rows(3))
    (tmp_path / "bad.schema.json").write_text(schema)
    job = write_job(tmp_path, job_data(sim.url, output={"schema_file": "bad.schema.json"}))
    result = CliRunner().invoke(main, ["run", str(job)])
    assert result.exit_code == 2
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert sim.stats()["requests"] == 0


def test_schema_problems_are_raised_for_non_object_schemas() -> None:
    """A schema whose top level is not an object cannot give columns."""
    with pytest.raises(SchemaProblem):
        OutputSchema({"type": "array"})


def test_the_extraction_example_has_the_promised_shape() -> None:
    """The example schema has an enum, a bounded number, an optional field and an array."""
    job = batchllm.load_job(Path(__file__).parent.parent / "jobs" / "ticket_extract.toml")
    assert job.output.schema is not None
    props = job.output.schema["properties"]
    assert "enum" in props["category"] and "maximum" in props["urgency"]
    assert "invoice_number" not in job.output.schema["required"]
    assert props["mentions"]["type"] == "array"
