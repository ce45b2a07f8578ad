"""The processes a benchmark runs, measured from outside: the simulated provider and a client.

Owns starting ``batchllm simulate`` on a free loopback port and stopping it, running a client
command to the end with a deadline, and what each process cost: wall clock, and CPU time and peak
memory from ``os.wait4``; also the CPU the rest of the machine used meanwhile. It knows nothing of
scenarios or of what the processes do.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: a client still running after this long is killed and the scenario counts as crashed
DEADLINE_S = 900.0
_START_S = 30.0
_STOP_S = 15.0
_URL = re.compile(r"http://\S+/v1")


class BenchError(Exception):
    """A scenario could not be measured (a process failed to start, crashed or timed out)."""


@dataclass(frozen=True, slots=True)
class Usage:
    """A finished process seen from outside; ``started_at`` (epoch seconds) is just before fork."""

    started_at: float
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    exit_code: int


class Simulator:
    """A ``batchllm simulate`` process; ``cpu_s`` and ``exit_code`` are known once it stopped."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log
        self.url = ""
        self.cpu_s = 0.0
        self.exit_code: int | None = None

    def stats(self) -> dict[str, int]:
        root = self.url.removesuffix("/v1")
        with urllib.request.urlopen(f"{root}/_sim/stats", timeout=10) as reply:
            found: dict[str, int] = json.load(reply)
        return found

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGTERM)
        status, usage = _reap(self.process, _STOP_S)
        self.cpu_s = usage.ru_utime + usage.ru_stime
        self.exit_code = os.waitstatus_to_exitcode(status)

    def check_stopped(self) -> None:
        """Raise if the simulator did not end cleanly (after ``stop``)."""
        if self.exit_code not in (0, -signal.SIGTERM):
            raise BenchError(f"simulator exited {self.exit_code}: {tail(self.log)}")


@contextlib.contextmanager
def simulator(flags: Sequence[str], log: Path) -> Iterator[Simulator]:
    """Start the simulated provider with ``flags`` on a free loopback port; stop it after."""
    argv = [sys.executable, "-m", "batchllm", "simulate", "--port", "0", *flags]
    with log.open("wb") as err:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
    sim = Simulator(process, log)
    try:
        sim.url = _listening_url(process, log)
        yield sim
    finally:
        sim.stop()


def _listening_url(process: subprocess.Popen[bytes], log: Path) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(_START_S)
    line = process.stdout.readline().decode() if ready else ""
    match = _URL.search(line)
    if match is None:
        raise BenchError(f"simulator did not start: {line.strip()!r} {tail(log)}")
    return match.group(0)


# Peak memory comes from the client's own wait4, taken by a small launcher, not by the harness:
# Linux carries a process's RSS high-water mark across fork and exec, so a child of the harness
# would report at least the harness's own RSS (hundreds of MB once it has built a large run
# directory or loaded DuckDB). The launcher is Python without site-packages (~10 MB), so the
# client it forks starts its high-water mark from there. It also times the client from just
# before the fork, and reports on a file: the client's stdout and stderr go to the log.
#
# With "--tree" (a client that starts processes of its own, such as a local Ray) the CPU is that
# of every process in the client's tree, each counted once from /proc: wait4's figures would
# miss some, because a parent that ignores SIGCHLD (Ray's raylet does, for its workers) has its
# children reaped by the kernel and their CPU counted nowhere. The launcher becomes the subreaper
# of the tree, reads each descendant's own utime + stime every POLL_S while it runs and the final
# figure of each process it reaps (from its zombie, before reaping it), keeps polling until the
# tree has ended (at most TREE_S after the client), and reports the sum. A process that lived
# less than POLL_S, or the CPU a kernel-reaped process used in its last POLL_S, is missed; the
# polling itself is the launcher's, not counted. Peak RSS is then that of the largest process
# the launcher or a process it waited for reaped.
_LAUNCHER = """
import glob, json, os, resource, sys, time
tree = sys.argv[1] == "--tree"
report, argv = sys.argv[1 + tree], sys.argv[2 + tree:]
TICK = os.sysconf("SC_CLK_TCK")
if tree:
    import ctypes
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
started_at, clock = time.time(), time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
seen = {}
def own_cpu(p):
    try:
        with open(f"/proc/{p}/stat") as f:
            text = f.read()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2:].split()
    return rest[19], (int(rest[11]) + int(rest[12])) / TICK
def children(p):
    found = []
    for path in glob.glob(f"/proc/{p}/task/*/children"):
        try:
            with open(path) as f:
                found += f.read().split()
        except OSError:
            pass
    return [int(c) for c in found]
def sample(p):
    stat = own_cpu(p)
    if stat is not None:
        seen[(p, stat[0])] = max(seen.get((p, stat[0]), 0.0), stat[1])
def sample_tree():
    todo, done = children(os.getpid()), set()
    while todo:
        p = todo.pop()
        if p not in done:
            done.add(p)
            sample(p)
            todo += children(p)
def reap():
    global status, wall_s
    while True:
        info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is None:
            return
        sample(info.si_pid)  # a zombie's stat holds its final times
        _, code, _ = os.wait4(info.si_pid, 0)
        if info.si_pid == pid:
            status, wall_s = code, time.monotonic() - clock
if tree:
    status = wall_s = None
    try:
        while status is None or time.monotonic() - clock < wall_s + TREE_S:
            sample_tree()
            reap()
            time.sleep(POLL_S)
    except ChildProcessError:
        pass
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = sum(seen.values())
else:
    _, status, usage = os.wait4(pid, 0)
    wall_s = time.monotonic() - clock
    cpu_s = usage.ru_utime + usage.ru_stime
found = {
    "started_at": started_at,
    "wall_s": wall_s,
    "cpu_s": cpu_s,
    "peak_rss_mb": usage.ru_maxrss / 1024,
    "exit_code": os.waitstatus_to_exitcode(status),
}
with open(report, "w") as out:
    json.dump(found, out)
""".replace("TREE_S", "30.0").replace("POLL_S", "0.1")


def run_measured(
    argv: list[str], log: Path, deadline_s: float = DEADLINE_S, tree: bool = False
) -> Usage:
    """Run ``argv`` to the end, stdout and stderr into ``log``; killed after ``deadline_s``.
    ``tree``: measure every process the client starts too (``_LAUNCHER``)."""
    report = log.with_suffix(".usage.json")
    tree_flag = ["--tree"] if tree else []
    launcher = [sys.executable, "-S", "-c", _LAUNCHER, *tree_flag, str(report), *argv]
    with log.open("wb") as out:
        # its own process group, so that the deadline kills the launcher and the client both
        process = subprocess.Popen(launcher, stdout=out, stderr=subprocess.STDOUT, process_group=0)
    killer = threading.Timer(deadline_s, os.killpg, (process.pid, signal.SIGKILL))
    killer.start()
    try:
        launcher_exit = process.wait()
    finally:
        killer.cancel()
    try:
        found = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise BenchError(
            f"no report from the launcher (exit {launcher_exit}): {tail(log)}"
        ) from None
    return Usage(**found)


def batchllm_command(*args: str) -> list[str]:
    """The argv of a ``batchllm`` command, quiet, logging JSON (no progress line)."""
    return [sys.executable, "-m", "batchllm", "--log-format", "json", "-q", *args]


def _reap(process: subprocess.Popen[bytes], deadline_s: float) -> tuple[int, Any]:
    """Wait for ``process`` and return its wait status and resource usage (kill at deadline)."""
    # os.kill, not Popen.kill: Popen would reap the process itself and wait4 would lose it.
    killer = threading.Timer(deadline_s, os.kill, (process.pid, signal.SIGKILL))
    killer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        killer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    return status, usage


def tail(log: Path, lines: int = 5) -> str:
    """The last lines of a log, on one line, for an error message."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])


def machine_cpu_s() -> float:
    """CPU seconds every process on this machine has used since boot (Linux; else 0)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            ticks = [int(field) for field in stat.readline().split()[1:8]]
    except (OSError, ValueError):
        return 0.0
    # user nice system idle iowait irq softirq: all but idle and iowait is work
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """This process's CPU time (the harness itself: generating input, querying results)."""
    return time.process_time()
