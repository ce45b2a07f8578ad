"""The rules single job-file values follow: each check says what is wrong, or nothing."""

from __future__ import annotations

import math

import pytest

from batchllm.job import checks


@pytest.mark.parametrize(
    ("value", "ok"),
    [("ticket-triage", True), ("v1.2_b", True), ("9lives", True), ("my job", False),
     ("-dash", False), ("", False), ("naïve", False), ("a/b", False)],
)  # fmt: skip
def test_job_names_are_letters_digits_and_a_few_marks(value: str, ok: bool) -> None:
    """A job name starts with a letter or digit and holds only letters, digits, - _ ."""
    assert (checks.valid_name(value) is None) is ok


@pytest.mark.parametrize(("value", "ok"), [("utf-8", True), ("latin-1", True), ("cp1252", True),
                                           ("utf-9", False), ("", False)])  # fmt: skip
def test_encodings_are_the_ones_python_knows(value: str, ok: bool) -> None:
    """A CSV encoding must be one Python can decode with; an unknown one is named."""
    problem = checks.encoding(value)
    assert (problem is None) is ok
    if not ok:
        assert problem == f"unknown encoding '{value}'"


@pytest.mark.parametrize(
    ("value", "ok"),
    [(1.0, True), (0.001, True), (0.0, False), (-1.0, False), (math.inf, False),
     (math.nan, False)],
)  # fmt: skip
def test_positive_numbers_are_finite_and_above_zero(value: float, ok: bool) -> None:
    """timeout_s, max_cost_usd and the like: finite and greater than 0 (inf and nan refused)."""
    assert (checks.positive(value) is None) is ok


@pytest.mark.parametrize(
    ("value", "ok"), [(0.0, True), (5.0, True), (-0.1, False), (math.inf, False), (math.nan, False)]
)
def test_not_negative_numbers_are_finite_and_zero_or_more(value: float, ok: bool) -> None:
    """Rates and delays may be 0 but not negative or infinite."""
    assert (checks.not_negative(value) is None) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [(0.0, True), (1.0, True), (0.25, True), (1.01, False), (-0.01, False), (math.nan, False)],
)
def test_fractions_are_between_zero_and_one(value: float, ok: bool) -> None:
    """A share (max_failure_rate, error rates) lies in [0, 1]; nan is outside it."""
    assert (checks.fraction(value) is None) is ok


@pytest.mark.parametrize(
    ("value", "ok"), [(",", True), (";", True), ("\t", True), ("|", True), (";;", False),
                      ("", False), ('"', False), ("\n", False)],
)  # fmt: skip
def test_a_delimiter_is_one_character_that_is_not_a_quote_or_a_newline(
    value: str, ok: bool
) -> None:
    """One separator character; quotes and line breaks cannot separate fields."""
    assert (checks.delimiter(value) is None) is ok


def test_choices_and_ranges_name_what_is_allowed() -> None:
    """A value outside its choices lists them; a number outside its range names the range."""
    mode = checks.one_of(("online", "batch"))
    assert mode("batch") is None
    assert mode("offline") == "'offline' is not one of online, batch"
    concurrency = checks.between(1, 4096)
    assert concurrency(1) is None and concurrency(4096) is None
    assert concurrency(0) == "must be between 1 and 4096"


@pytest.mark.parametrize(
    ("value", "ok"),
    [("OPENAI_API_KEY", True), ("_X1", True), ("sk-abc123", False), ("1KEY", False),
     ("MY KEY", False)],
)  # fmt: skip
def test_a_key_variable_is_a_name_not_a_key(value: str, ok: bool) -> None:
    """api_key_env names an environment variable; a pasted key is refused as one."""
    assert (checks.env_name(value) is None) is ok


def test_urls_and_column_lists() -> None:
    """base_url is an http(s) URL; columns are a list of names (strings)."""
    assert checks.url("https://api.example.com/v1") is None
    assert checks.url("localhost:8000") == "expected an http(s) URL"
    assert checks.strings(["id", "text"]) is None
    assert checks.strings(["id", 3]) == "expected a list of column names"
