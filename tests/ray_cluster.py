"""A real multi-node Ray cluster on 127.0.0.1 for tests, and a way to kill one actor's process.

``local_cluster()`` starts a head node and ``worker_nodes`` more nodes with
``ray.cluster_utils.Cluster``: real ``gcs_server`` and ``raylet`` processes (one raylet and one
object store per node), not the single-process ``ray.init()`` of unit tests, so work scheduled on
a worker node really runs in another raylet's worker processes. It yields the GCS address
(``127.0.0.1:PORT``) that a separate process passes to ``ray.init(address=...)`` (for us:
``distill generate ... --set executor.address=ADDR``).

Why these settings:

- every port is picked by the OS and every server binds 127.0.0.1 (``node_ip_address``), and the
  nodes live under a temp dir of their own, so two clusters (two test sessions) on one machine do
  not meet;
- ``ray.init(address="127.0.0.1:PORT")`` on Linux rewrites a loopback host to the machine's
  outward IP (``resolve_ip_for_localhost``), where nothing listens. Ray's switch for
  loopback-only clusters (the macOS default) is ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: while the
  cluster runs it is set in ``os.environ`` (so subprocesses such as the ``distill`` CLI inherit
  it) and in this process's already-imported Ray. A process started some other way must have
  ``LOOPBACK_ENV`` in its environment to connect;
- Ray records "the latest cluster" in ``/tmp/ray/ray_current_cluster``, and a bare ``ray.init()``
  anywhere on the machine connects to it. A test cluster must not capture other people's
  ``ray.init()``, nor delete their file at shutdown, so both writes are switched off;
- teardown is bounded and leaves nothing: every process started while the cluster runs carries
  ``MARKER`` in its environment (or, where Ray's setproctitle overwrote that, holds a log file
  open under the cluster's temp dir); after Ray's own shutdown whatever is left is SIGKILLed. A
  watchdog process does the same if the test process dies (SIGKILL included): Ray's kernel
  fate-sharing takes down the gcs and raylets, but not the agents the raylets started.

``kill_actor_process(class_name, address)`` SIGKILLs the worker process of one live actor (found
in the GCS actor table: no dashboard needed), as a crash or the OOM killer would.
"""

from __future__ import annotations

import inspect
import os
import shutil
import signal
import socket
import tempfile
import time
from contextlib import contextmanager
from typing import Any, Iterator


#: what a process connecting to a ``local_cluster`` needs in its environment (inherited from the
#: test process while the cluster runs)
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
#: set to the cluster's temp dir in the environment of every process started while it runs (its
#: nodes, their workers, the subprocesses of the test): how teardown finds them all
MARKER = "DISTILL_TEST_RAY_TMP"


def _belongs(p, tmp: str, marker: str) -> bool:
    """Whether process ``p`` is one of the cluster's: ``marker`` in its environment (the gcs, the
    raylets, every subprocess of the test), or, for the Python processes whose environment Ray's
    setproctitle overwrites (``ray::...`` workers and agents), a file open under the temp dir
    (their logs). The watchdog runs this function's source too, so it imports nothing."""
    try:
        if p.environ().get(marker) == tmp:
            return True
    except Exception:  # noqa: BLE001 - gone, a zombie, another user's
        pass
    try:
        return any(f.path.startswith(tmp + "/") for f in p.open_files())
    except Exception:  # noqa: BLE001
        return False


# Started before the nodes, in a session of its own (a Ctrl-C to the terminal does not reach it).
# It waits for EOF on stdin: the owner closing the pipe at teardown, or dying. Then it SIGKILLs
# every process of the cluster (Ray's agents outlive a SIGKILLed raylet otherwise), and, if the
# owner died without saying "done", removes the cluster's temp dir.
_WATCHDOG = inspect.getsource(_belongs) + r"""
import os, shutil, sys, time
import psutil
tmp, marker, owner = sys.argv[1], sys.argv[2], int(sys.argv[3])
said = sys.stdin.read()
deadline = time.monotonic() + 15
while True:
    left = []
    for p in psutil.process_iter():
        if p.pid not in (os.getpid(), owner) and _belongs(p, tmp, marker):
            try:
                p.kill()
                left.append(p)
            except psutil.Error:
                pass
    if not left or time.monotonic() > deadline:
        break
    psutil.wait_procs(left, timeout=1)
if "done" not in said:
    shutil.rmtree(tmp, ignore_errors=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_processes(tmp: str | None = None) -> list:
    """The live processes (``psutil.Process``) of the cluster whose temp dir is ``tmp`` (default:
    the innermost ``local_cluster`` of this process), this process excepted: its nodes, their
    workers and agents, and every subprocess started while it ran."""
    import psutil

    tmp = tmp or os.environ[MARKER]
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.status() != psutil.STATUS_ZOMBIE and _belongs(p, tmp, MARKER):
                found.append(p)
        except psutil.Error:  # gone
            pass
    return found


def _sweep(tmp: str, grace: float, spare: int | None = None) -> None:
    """Give the cluster's processes ``grace`` s to exit, then SIGKILL what is left (in rounds: a
    dying raylet may still start a worker)."""
    import psutil

    deadline = time.monotonic() + grace
    while True:
        left = [p for p in cluster_processes(tmp) if p.pid != spare]
        if not left:
            return
        if time.monotonic() > deadline:
            for p in left:
                try:
                    p.kill()
                except psutil.Error:
                    pass
            if time.monotonic() > deadline + 10:
                return
        psutil.wait_procs(left, timeout=0.5)


@contextmanager
def local_cluster(worker_nodes: int = 1, cpus_per_node: int = 2, object_store_mb: int = 128,
                  head_cpus: int | None = None, node_resources: dict[str, float] | None = None,
                  keep_logs: bool = False, teardown_timeout: float = 20.0) -> Iterator[str]:
    """A head node and ``worker_nodes`` worker nodes on 127.0.0.1; yields the GCS address.

    ``head_cpus`` (default ``cpus_per_node``) lets a test keep work off the head: with
    ``head_cpus=0`` every task and actor that needs a CPU runs on a worker node.
    ``node_resources`` are custom resources given to each worker node (not the head), e.g.
    ``{"worker": 1}`` to pin an actor there. While the cluster runs, ``os.environ[MARKER]`` is its
    temp dir (logs under ``session_*/logs``), removed at the end unless ``keep_logs``. Teardown
    ends every process started while the cluster ran, subprocesses of the test still running
    included.
    """
    import subprocess
    import sys

    import ray
    import ray._common.utils
    import ray._private.ray_constants
    import ray._private.utils
    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(prefix="rayc-", dir="/tmp")  # short: unix socket paths are limited to 107 bytes
    common: dict[str, Any] = dict(node_ip_address="127.0.0.1", object_store_memory=object_store_mb << 20,
                                  include_dashboard=False, temp_dir=tmp, dashboard_agent_listen_port=None,
                                  metrics_export_port=None, metrics_agent_port=None)
    head = dict(common, num_cpus=cpus_per_node if head_cpus is None else head_cpus,
                gcs_server_port=_free_port(), dashboard_port=_free_port(), dashboard_host="127.0.0.1")
    env = {"RAY_USAGE_STATS_ENABLED": "0", MARKER: tmp, **LOOPBACK_ENV}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the nodes and every subprocess started meanwhile inherit these
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, tmp, MARKER, str(os.getpid())], text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    no_op = lambda *a, **k: None  # noqa: E731
    patched = [(ray._private.utils, "write_ray_address", no_op),
               (ray._common.utils, "reset_ray_address", no_op),
               (ray._private.ray_constants, "ENABLE_RAY_CLUSTER", False)]  # read at import: set it here too
    saved_attrs = {(mod, name): getattr(mod, name) for mod, name, _ in patched}
    for mod, name, value in patched:
        setattr(mod, name, value)
    cluster = None
    try:  # a node that fails to start leaves processes behind: the sweep below ends them
        cluster = Cluster(initialize_head=True, head_node_args=head)
        for _ in range(worker_nodes):
            cluster.add_node(**common, num_cpus=cpus_per_node, resources=dict(node_resources or {}))
        cluster.wait_for_nodes(timeout=60)
        yield cluster.address
    finally:
        try:
            if ray.is_initialized() and cluster is not None and \
                    ray.get_runtime_context().gcs_address == cluster.address:
                ray.shutdown()  # a driver of this cluster in this process: before the GCS goes away
            if cluster is not None:
                _shutdown_bounded(cluster, teardown_timeout)
            _sweep(tmp, grace=3.0, spare=watchdog.pid)
        finally:
            try:
                watchdog.communicate("done", timeout=20)  # it sweeps once more and exits
            except subprocess.TimeoutExpired:
                watchdog.kill()
                watchdog.wait()
            for (mod, name), value in saved_attrs.items():
                setattr(mod, name, value)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            if not keep_logs:
                shutil.rmtree(tmp, ignore_errors=True)


def _shutdown_bounded(cluster, timeout: float) -> None:
    """``cluster.shutdown()`` (SIGTERM, then SIGKILL, raylets first), in at most ~``timeout`` s:
    a shutdown that hangs is left to its thread, and the sweep that follows SIGKILLs everything."""
    import threading

    t = threading.Thread(target=cluster.shutdown, daemon=True)
    t.start()
    t.join(timeout)


# ---- killing one actor's process ---------------------------------------------------------------

def live_actors(class_name: str, address: str) -> list[dict[str, Any]]:
    """The ALIVE actors of class ``class_name`` on the cluster at ``address``, from the GCS actor
    table (no dashboard, no driver needed), each with ``ActorID``, ``Pid``, ``NumRestarts``,
    ``Address.NodeID``; sorted by ``ActorID``."""
    from ray._private.state import GlobalState
    from ray._raylet import GcsClientOptions

    state = GlobalState()
    state._initialize_global_state(GcsClientOptions.create(address, None, allow_cluster_id_nil=True,
                                                           fetch_cluster_id_if_nil=False))
    try:
        table = state.actor_table(None, actor_state_name="ALIVE")
    finally:
        state.disconnect()
    return sorted((a for a in table.values() if a["Pid"] and (a["ActorClassName"] == class_name or
                   a["ActorClassName"].endswith("." + class_name))),  # a local class: f.<locals>.Name
                  key=lambda a: a["ActorID"])


def _title_matches(pid: int, class_name: str) -> bool:
    """The process's title is Ray's ``ray::<class_name>`` (idle) or ``ray::<class_name>.<method>``
    (busy): a check that ``pid`` is the actor's worker process and not a reused pid."""
    import psutil

    try:
        argv = psutil.Process(pid).cmdline()
    except psutil.Error:
        return False
    title = argv[0].strip() if argv else ""
    return title == f"ray::{class_name}" or title.startswith(f"ray::{class_name}.")


def kill_actor_process(class_name: str, address: str, timeout: float = 60.0, index: int = 0) -> int:
    """SIGKILL the worker process of one live actor of class ``class_name`` (the ``index``-th by
    actor id) on the cluster at ``address``, waiting up to ``timeout`` s for one to be alive;
    returns the pid killed. Ray sees a worker die as it would on a crash or an OOM kill: the
    actor restarts if its ``max_restarts`` allows, and calls in flight are retried if
    ``max_task_retries`` allows."""
    deadline = time.monotonic() + timeout
    while True:
        actors = [a for a in live_actors(class_name, address) if _title_matches(a["Pid"], class_name)]
        if len(actors) > index:
            pid = actors[index]["Pid"]
            os.kill(pid, signal.SIGKILL)
            return pid
        if time.monotonic() > deadline:
            raise TimeoutError(f"no live actor #{index} of class {class_name} on {address} after {timeout} s")
        time.sleep(0.05)
