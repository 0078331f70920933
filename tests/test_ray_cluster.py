"""The test Ray cluster itself (tests/ray_cluster.py): two real nodes on 127.0.0.1 that another
process can join, an actor whose process is SIGKILLed is restarted and its call retried, and
nothing is left running afterwards, even when the test fails or its process is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import require_ray

try:
    from ray_cluster import cluster_processes, kill_actor_process, live_actors, local_cluster
except ImportError:  # tests/ is a package
    from tests.ray_cluster import cluster_processes, kill_actor_process, live_actors, local_cluster

psutil = pytest.importorskip("psutil")
TESTS = Path(__file__).resolve().parent


def running(pids) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.Error:
            pass
    return out


def test_another_process_joins_a_cluster_of_two_nodes(ray_cluster):
    script = textwrap.dedent(f"""
        import json, ray
        ray.init(address={ray_cluster!r}, logging_level="ERROR")
        nodes = [n for n in ray.nodes() if n["Alive"]]
        print(json.dumps([[n["NodeManagerAddress"], n["Resources"].get("CPU"), n["NodeID"]] for n in nodes]))
        ray.shutdown()
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-3000:]
    nodes = json.loads(p.stdout.strip().splitlines()[-1])
    assert len(nodes) == 2 and len({n[2] for n in nodes}) == 2  # two raylets
    assert all(ip == "127.0.0.1" and cpus == 2 for ip, cpus, _ in nodes)


def test_killed_actor_restarts_and_its_call_is_retried(ray_cluster):
    import ray

    class Echo:  # defined here so Ray ships it by value to the workers
        def pid(self) -> int:
            return os.getpid()

        def slow(self, x: int, seconds: float) -> tuple[int, int]:
            time.sleep(seconds)
            return x, os.getpid()

    ray.init(address=ray_cluster, logging_level="ERROR")
    try:
        actor = ray.remote(max_restarts=1, max_task_retries=1, num_cpus=1)(Echo).remote()
        first = ray.get(actor.pid.remote(), timeout=60)
        assert [a["Pid"] for a in live_actors("Echo", ray_cluster)] == [first]
        pending = actor.slow.remote(42, 1.0)
        time.sleep(0.3)  # the call is running in the actor's process
        assert kill_actor_process("Echo", ray_cluster) == first
        x, pid = ray.get(pending, timeout=60)  # retried on the restarted actor
        assert x == 42 and pid != first and not running([first])
        assert [(a["Pid"], a["NumRestarts"]) for a in live_actors("Echo", ray_cluster)] == [(pid, 1)]
        assert kill_actor_process("Echo", ray_cluster) == pid  # restarts used up: the actor is dead
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(actor.slow.remote(1, 0.0), timeout=60)
    finally:
        ray.shutdown()


def test_teardown_leaves_no_process_even_when_the_test_fails():
    require_ray()
    env_before = dict(os.environ)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="test failed"):
        with local_cluster(worker_nodes=1, cpus_per_node=1) as address:
            assert address.startswith("127.0.0.1:")
            started = [p.pid for p in cluster_processes()]
            assert len(started) >= 6  # gcs, two raylets and their agents, ...
            raise RuntimeError("test failed")
    assert time.monotonic() - t0 < 40
    assert not running(started)
    assert dict(os.environ) == env_before


def test_a_killed_owner_takes_its_cluster_with_it():
    require_ray()
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(TESTS)!r})
        from ray_cluster import MARKER, local_cluster
        with local_cluster(worker_nodes=1, cpus_per_node=1) as address:
            print(os.environ[MARKER], flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        tmp = proc.stdout.readline().strip()  # once the cluster is up (or the script died)
        assert tmp.startswith("/tmp/rayc-")
        pids = [p.pid for p in cluster_processes(tmp)]
        assert len(pids) >= 6
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while (running(pids) or os.path.exists(tmp)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running(pids) and not cluster_processes(tmp) and not os.path.exists(tmp)
