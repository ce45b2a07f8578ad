"""The one place outcomes are built: replies and errors into result rows, priced and typed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest

import batchllm
from batchllm.outcome import (
    COLUMNS,
    FAILED,
    INVALID,
    OK,
    RECENT_REQUESTS,
    Outcomes,
    RecentRequests,
    results_schema,
    row_failure,
    shared_outcome,
    total_usage,
)
from batchllm.pricing import Price
from batchllm.providers.base import Completion, Usage
from batchllm.render import Renderer, Request
from batchllm.validate import OutputSchema
from conftest import job_data, write_csv, write_job

#: $1 per million input tokens, $2 per million output tokens, cached input at $0.5
PRICE = Price(1.0, 2.0, 0.5, 1.25, "test prices")
SCHEMA = OutputSchema(
    {
        "type": "object",
        "properties": {"label": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["label", "n"],
        "additionalProperties": False,
    }
)


@pytest.fixture
def request_(tmp_path: Path) -> Request:
    """The request of one rendered row (row key T1, input hash abc123)."""
    row = {"id": "T1", "text": "hello"}
    write_csv(tmp_path / "input.csv", [row])
    job = batchllm.load_job(write_job(tmp_path, job_data("http://127.0.0.1:1/v1")))
    return Renderer(job, list(row)).render("T1", row, "abc123")


def _reply(text: str, tokens_in: int, tokens_out: int, cached: int = 0) -> Completion:
    usage = Usage(input_tokens=tokens_in, output_tokens=tokens_out, cached_tokens=cached)
    return Completion(text, "stop", usage, "model-x", "req-1")


def test_an_answered_row_is_ok_with_its_usage_and_cost(request_) -> None:
    """One reply: ok, its text, tokens and cost, the provider's model and request id."""
    outcome = Outcomes("run-1", PRICE).answered(
        request_, {"id": "T1"}, [_reply("bug", 1000, 500, cached=400)], None, attempts=1,
        latency_ms=12.3456,
    )  # fmt: skip
    assert (outcome.status, outcome.output, outcome.attempts, outcome.repairs) == (OK, "bug", 1, 0)
    assert (outcome.input_tokens, outcome.output_tokens, outcome.cached_tokens) == (1000, 500, 400)
    assert outcome.cost_usd == pytest.approx((600 * 1.0 + 400 * 0.5 + 500 * 2.0) / 1e6)
    assert (outcome.model, outcome.provider_request_id, outcome.latency_ms) == (
        "model-x", "req-1", 12.346,
    )  # fmt: skip
    assert outcome.input_hash == "abc123" and outcome.copied == {"id": "T1"}


def test_repairs_add_their_usage_and_their_cost_is_shown_apart(request_) -> None:
    """An invalid first reply and its repair: both replies' tokens and cost on the row, the
    repair's cost also in repair_cost_usd, the last reply's typed fields."""
    builder = Outcomes("run-1", PRICE, SCHEMA)
    first, fixed = _reply("not json", 100, 10), _reply('{"label": "bug", "n": 2}', 150, 20)
    outcome = builder.answered(request_, {}, [first, fixed], builder.check(fixed), attempts=2)
    assert (outcome.status, outcome.repairs, outcome.attempts) == (OK, 1, 2)
    assert (outcome.input_tokens, outcome.output_tokens) == (250, 30)
    assert outcome.cost_usd == pytest.approx((250 * 1.0 + 30 * 2.0) / 1e6)
    assert outcome.repair_cost_usd == pytest.approx((150 * 1.0 + 20 * 2.0) / 1e6)
    assert outcome.fields == {"label": "bug", "n": 2}


def test_a_reply_still_invalid_is_an_invalid_row_with_null_fields(request_) -> None:
    """The last reply fails the schema: invalid, the reason in error, fields null."""
    builder = Outcomes("run-1", PRICE, SCHEMA)
    reply = _reply('{"label": "bug"}', 100, 10)
    outcome = builder.answered(request_, {}, [reply], builder.check(reply), attempts=1)
    assert (outcome.status, outcome.error_type) == (INVALID, "invalid_output")
    assert outcome.error is not None and '"n" is a required property' in outcome.error
    assert outcome.fields == {"label": None, "n": None}


def test_a_reply_cut_at_max_tokens_is_invalid_as_truncated(request_) -> None:
    """A reply cut off at max_tokens that is not whole JSON: invalid with error type truncated."""
    builder = Outcomes("run-1", PRICE, SCHEMA)
    cut = Completion('{"label": "b', "length", Usage(100, 40), "m", None)
    outcome = builder.answered(request_, {}, [cut], builder.check(cut), attempts=1)
    assert (outcome.status, outcome.error_type) == (INVALID, "truncated")


def test_a_batch_reply_repaired_online_keeps_its_batch_price(request_) -> None:
    """first_cost replaces the first reply's price (a batch reply at half price)."""
    reply = _reply("bug", 1000, 1000)
    outcome = Outcomes("run-1", PRICE).answered(request_, {}, [reply], None, attempts=1,
                                                first_cost=0.0015)  # fmt: skip
    assert outcome.cost_usd == pytest.approx(0.0015)


def test_unusable_replies_that_were_paid_for_count_on_the_row(request_) -> None:
    """A bad reply the provider billed: its tokens and cost are on the row, answered or not."""
    wasted = Usage(input_tokens=100, output_tokens=50)
    answered = Outcomes("run-1", PRICE).answered(
        request_, {}, [_reply("bug", 100, 10)], None, attempts=2, paid=[wasted]
    )
    assert (answered.input_tokens, answered.output_tokens) == (200, 60)
    assert answered.cost_usd == pytest.approx((200 * 1.0 + 60 * 2.0) / 1e6)
    failed = Outcomes("run-1", PRICE).failed(
        request_, {}, "unreadable reply", "bad_reply", 3, paid=[wasted]
    )
    assert (failed.status, failed.error_type, failed.attempts) == (FAILED, "bad_reply", 3)
    assert failed.cost_usd == pytest.approx((100 * 1.0 + 50 * 2.0) / 1e6)


def test_a_failed_row_has_null_fields_and_no_cost(request_) -> None:
    """A request that got no reply: failed, the error, null typed fields, nothing spent."""
    outcome = Outcomes("run-1", PRICE, SCHEMA).failed(request_, {}, "HTTP 400: no", "rejected", 1)
    assert (outcome.status, outcome.error, outcome.cost_usd) == (FAILED, "HTTP 400: no", 0.0)
    assert outcome.fields == {"label": None, "n": None}
    assert outcome.request_key == request_.request_key


def test_a_shared_outcome_is_the_same_answer_at_no_cost(request_) -> None:
    """Another row with an identical request gets the answer, with zero tokens, cost and
    attempts, under its own row key and copied columns."""
    earlier = Outcomes("run-1", PRICE).answered(request_, {"id": "T1"}, [_reply("bug", 10, 5)],
                                                None, attempts=1)  # fmt: skip
    request_two = replace(request_, row_key="T2", input_hash="def456")
    shared = shared_outcome(earlier, request_two, {"id": "T2"})
    assert (shared.row_key, shared.input_hash, shared.copied) == ("T2", "def456", {"id": "T2"})
    assert (shared.output, shared.status, shared.request_key) == ("bug", OK, earlier.request_key)
    assert (shared.cost_usd, shared.attempts, shared.input_tokens, shared.output_tokens) == (
        0.0, 0, 0, 0,
    )  # fmt: skip


def test_a_row_that_was_never_sent_is_a_failure_without_a_request() -> None:
    """An input or render problem: failed, the kind and message, no request key."""
    outcome = row_failure("run-1", "line:abc", {}, "wrong number of fields", "input", "d1")
    assert (outcome.status, outcome.error_type, outcome.request_key) == (FAILED, "input", "")
    assert outcome.input_hash == "d1"


def test_usage_sums_every_count_and_marks_any_estimate() -> None:
    """Summing usage adds each count; one estimated reply makes the sum estimated."""
    total = total_usage([Usage(1, 2, 3, 4, 5), Usage(10, 20, 30, 40, 50, estimated=True)])
    assert total == Usage(11, 22, 33, 44, 55, estimated=True)
    assert total_usage([]) == Usage()


def test_the_results_schema_puts_copied_and_typed_columns_after_the_row_key() -> None:
    """row_key first, then copied input columns, typed fields, then the own columns in order."""
    schema = results_schema([("ticket", pa.string())], [("label", pa.string())])
    names = schema.names
    assert names[:3] == ["row_key", "ticket", "label"]
    assert names[3:] == [name for name, _ in COLUMNS[1:]]


def test_a_row_of_an_outcome_has_every_column(request_) -> None:
    """to_row gives the own columns plus copied and typed ones, ready for the results table."""
    outcome = Outcomes("run-1", PRICE, SCHEMA).failed(request_, {"ticket": "T1"}, "x", "y", 1)
    row = outcome.to_row()
    assert set(row) == {name for name, _ in COLUMNS} | {"ticket", "label", "n"}


def test_recent_requests_keep_the_newest_and_drop_the_oldest() -> None:
    """Past RECENT_REQUESTS entries the oldest goes; put refreshes; drop forgets."""
    recent: RecentRequests[int] = RecentRequests()
    for n in range(RECENT_REQUESTS):
        recent.put(f"k{n}", n)
    recent.put("k0", 0)  # refreshed: now the newest
    recent.put("new", -1)
    assert "k0" in recent and "k1" not in recent and recent.get("new") == -1
    recent.drop("new")
    assert recent.get("new") is None
