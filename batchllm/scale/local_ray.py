"""Joining Ray, and starting a lean local Ray when the job names no cluster.

A job with ``[run] backend = "ray"`` and no ``address`` starts a Ray of its own on this machine,
for this run only. ``ray.init`` would start every process a shared cluster needs: the
autoscaler's monitor, the log monitor (it copies workers' output to the driver, which a run asks
not to have), the dashboard's API server, and usage statistics. None of them serves a run, and
each is a Python process that costs CPU to start and to keep. ``start_lean`` starts the head
node without them (the GCS, the raylet, the raylet's two agents and the workers remain), with
metrics collection off, then joins it as ``ray.init`` would; ``ray.shutdown`` stops it as it
would a node ``ray.init`` started. It uses Ray's node API (``ray._private``), as Ray's own
``cluster_utils`` does; if that API is not there, the ordinary ``ray.init`` is used instead.
Joining a running cluster (an ``address``, ``RAY_ADDRESS``, or one ``ray start`` started here,
which ``ray.init()`` would join too) is left as it was. Nothing here runs a job.
"""

from __future__ import annotations

import os
from typing import Any

import ray

#: the Ray settings of a lean local Ray: no metrics are collected or exported
LEAN_CONFIG: dict[str, Any] = {"enable_metrics_collection": False}


def join(address: str | None) -> None:
    """Join the Ray at ``address``, or start a lean local one (``None``); once per process."""
    if ray.is_initialized():
        return
    if address is None and _running() is None:
        start_lean()
    else:  # an address, RAY_ADDRESS or a Ray started by `ray start`: ray.init joins it
        ray.init(address=address, include_dashboard=False, log_to_driver=False)


def _running() -> str | None:
    """The Ray that ``ray.init()`` would join rather than start one: ``RAY_ADDRESS``, or the
    cluster ``ray start`` last started on this machine (None: there is none)."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    if ray_services is None:
        return None
    found: str | None = ray_services.canonicalize_bootstrap_address(None)
    return found


def start_lean() -> None:
    """Start a local Ray without the processes a single run does not use, and join it."""
    # Ray gathers usage statistics at start and sends them; a run of batchllm sends none
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if _LeanNode is None:  # another Ray, without this node API: start it the ordinary way
        ray.init(include_dashboard=False, log_to_driver=False, _system_config=LEAN_CONFIG)
        return
    # RayParams types the log monitor's switch as a string; the node reads it as a truth value
    lean: dict[str, Any] = {"include_log_monitor": False, "_system_config": LEAN_CONFIG}
    params = RayParams(include_dashboard=False, no_monitor=True, **lean)
    node = _LeanNode(params, head=True, shutdown_at_exit=False, spawn_reaper=True)
    try:
        ray.init(address=node.address, log_to_driver=False)
    except BaseException:
        node.kill_all_processes(check_alive=False, allow_graceful=True)
        raise
    # ray.shutdown() (and Ray's own exit hook) stop the node as one that ray.init started
    ray_worker._global_node = node


def _lean_node_class() -> Any:
    """Ray's head node without the dashboard's API server (a run serves no dashboard, jobs
    API or state API; ``ray.init(include_dashboard=False)`` still starts it)."""

    class LeanNode(Node):
        def start_api_server(self, **_: Any) -> None:
            return None

    return LeanNode


try:
    from ray._private import services
    from ray._private import worker as ray_worker
    from ray._private.node import Node
    from ray._private.parameter import RayParams

    ray_services: Any = services
    _LeanNode: Any = _lean_node_class()
except ImportError:  # pragma: no cover - a Ray without this node API
    ray_services = None
    _LeanNode = None


__all__ = ["LEAN_CONFIG", "join", "start_lean"]
