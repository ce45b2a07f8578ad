"""The switch point: when it is due, and rows of a batch moved online whole."""

from __future__ import annotations

from pathlib import Path

import orjson

import batchllm
from batchllm.render import Renderer
from batchllm.run.batch_book import request_json
from batchllm.run.batch_switch import Switch
from conftest import job_data, write_csv, write_job


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_switch_is_due_at_its_moment_and_says_how_long_until_then() -> None:
    """Before the moment: not due, the seconds left; at and after it: due, nothing left."""
    clock = Clock(1000.0)
    switch = Switch(1060.0, clock)
    assert (switch.due(), switch.wait_s()) == (False, 60.0)
    clock.now = 1060.0
    assert (switch.due(), switch.wait_s()) == (True, 0.0)
    clock.now = 2000.0
    assert switch.wait_s() == 0.0


async def test_a_batch_s_rows_move_online_with_their_requests(tmp_path: Path) -> None:
    """Row lines of a batch become online queue items (the same request, its copied columns),
    counted; the end markers follow, one per online worker."""
    rows = [{"id": f"T{i}", "text": f"ticket {i}"} for i in range(3)]
    write_csv(tmp_path / "input.csv", rows)
    job = batchllm.load_job(write_job(tmp_path, job_data("http://127.0.0.1:1/v1")))
    renderer = Renderer(job, ["id", "text"])
    requests = [renderer.render(row["id"], row) for row in rows]
    lines = [
        orjson.dumps({"request": request_json(r), "copied": {"id": r.row_key}}) for r in requests
    ]
    switch = Switch(0.0, Clock(0.0))
    switch.move_lines(lines, "the batch was late")
    switch.end(workers=2)
    moved = [switch.online.get_nowait() for _ in range(5)]
    assert moved[3:] == [None, None]
    assert switch.moved == 3
    for item, request in zip(moved[:3], requests, strict=True):
        assert item is not None
        again, copied = item
        assert (again.row_key, again.request_key, again.messages) == (
            request.row_key, request.request_key, request.messages,
        )  # fmt: skip
        assert copied == {"id": request.row_key}


def test_a_switch_with_nothing_to_move_only_ends_the_online_workers() -> None:
    """A batch that answered every row before the switch: no row moves, each worker ends."""
    switch = Switch(0.0, Clock(0.0))
    switch.move_lines([], "nothing left")
    switch.end(workers=3)
    assert switch.moved == 0
    assert [switch.online.get_nowait() for _ in range(3)] == [None, None, None]
    assert switch.online.empty()
