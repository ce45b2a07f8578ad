"""Object-storage paths: which job-file paths are URIs, where their local work happens, and how a
missing or unreadable object is reported."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs
import pytest

from batchllm.errors import InputError
from batchllm.scale.objects import input_exists, is_uri, open_input, read_commit, work_dir_for


@pytest.mark.parametrize(
    ("text", "uri"),
    [
        ("s3://bucket/key.csv", True),
        ("gs://bucket/run", True),
        ("abfs://container/x", True),
        ("file:///data/x.csv", False),
        ("/data/x.csv", False),
        ("data/x.csv", False),
        ("C:/data/x.csv", False),
        ("runs[1]/x", False),
    ],
)
def test_only_object_storage_uris_are_uris(text: str, uri: bool) -> None:
    """Schemes of object stores are URIs; local paths (and file://, and a drive letter) are not."""
    assert is_uri(text) is uri


def test_the_work_dir_is_the_one_given_or_one_per_output_uri() -> None:
    """A given work_dir is used; otherwise one under the temp dir, the same for the same URI and
    another for another URI (two jobs never share a journal)."""
    given = Path("/var/tmp/triage")
    assert work_dir_for("s3://b/run", given) == given
    first = work_dir_for("s3://b/run", None)
    assert first == work_dir_for("s3://b/run", None)
    assert first != work_dir_for("s3://b/other", None)
    assert first.parent.name == "batchllm-work"


def test_a_local_file_uri_reads_like_any_object(tmp_path: Path) -> None:
    """Through pyarrow.fs, a file:// URI is opened as a stream: exists, and its bytes read."""
    path = tmp_path / "in.csv"
    path.write_text("id,text\n1,a\n")
    uri = path.as_uri()
    assert input_exists(uri) is True
    with open_input(uri) as stream:
        assert stream.read() == b"id,text\n1,a\n"
    assert input_exists((tmp_path / "absent.csv").as_uri()) is False


def test_an_object_that_cannot_be_opened_is_an_input_error(tmp_path: Path) -> None:
    """Opening a missing object is one line naming the URI (exit 2), not a traceback."""
    uri = (tmp_path / "absent.csv").as_uri()
    with pytest.raises(InputError, match="cannot read input"):
        open_input(uri)


def test_a_place_without_a_commit_record_has_nothing_committed(tmp_path: Path) -> None:
    """No commit.json: readers see no parts there (a run not yet committed is invisible); a
    record that is not an object counts as none."""
    local = pafs.LocalFileSystem()
    assert read_commit(local, str(tmp_path)) is None
    (tmp_path / "commit.json").write_text('{"parts": ["part-1.parquet"]}')
    assert read_commit(local, str(tmp_path)) == {"parts": ["part-1.parquet"]}
    (tmp_path / "commit.json").write_text("[1, 2]")
    assert read_commit(local, str(tmp_path)) is None
