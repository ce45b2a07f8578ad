"""Measuring a client's process tree (the Ray backend's): every process's CPU counted once."""

from __future__ import annotations

import sys
from pathlib import Path

from batchllm.bench.process import run_measured

#: a parent that ignores SIGCHLD (as Ray's raylet does), so the kernel reaps its child, which
#: burns half a CPU-second; the parent itself does next to nothing
_CLIENT = """
import os, signal, time
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    while time.process_time() < 0.5:
        pass
    os._exit(0)
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    time.sleep(0.02)
"""


def test_tree_counts_children_the_kernel_reaped(tmp_path: Path) -> None:
    """A child reaped by the kernel (its parent ignores SIGCHLD) still counts in the tree's CPU."""
    usage = run_measured([sys.executable, "-S", "-c", _CLIENT], tmp_path / "client.log", tree=True)
    assert usage.exit_code == 0
    assert usage.cpu_s >= 0.4


def test_a_single_process_is_measured_by_wait4(tmp_path: Path) -> None:
    """Without the tree, the client's own CPU (and its waited children's) is what counts."""
    burn = "import time\nwhile time.process_time() < 0.3:\n    pass\n"
    usage = run_measured([sys.executable, "-S", "-c", burn], tmp_path / "client.log")
    assert usage.exit_code == 0
    assert usage.cpu_s >= 0.3
