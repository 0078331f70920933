"""``executor.type: ray`` on a real Ray cluster (a head and a worker node on 127.0.0.1, started by
the ``ray_cluster`` fixture): generate and filter give the records a local run gives, a replica
killed mid-run is restarted and its shard retried without paying twice for what it received, and
the budget holds across replicas."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill.record import Record
from distill.shards import ShardStore

try:
    from fault_server import FaultServer
    from test_faults import generate_cmd as faults_cmd, seeds_file
except ImportError:  # tests/ is a package
    from tests.fault_server import FaultServer
    from tests.test_faults import generate_cmd as faults_cmd, seeds_file

pytest.importorskip("psutil")

LABELS = Path(__file__).resolve().parents[1] / "data" / "paraphrase" / "real_labels.jsonl"
REACHED_S = 0.5  # as in test_faults: answers written this long before a kill had reached the client


def generate_cmd(seeds: Path, out: Path, url: str, *extra: str) -> list[str]:
    """test_faults' command with a client timeout that a loaded machine running a cluster keeps."""
    return faults_cmd(seeds, out, url, "--set", "teacher.openai.timeout=5", *extra)


def on_ray(address: str, replicas: int = 2) -> list[str]:
    return ["--set", "executor.type=ray", "--set", f"executor.address={address}",
            "--set", f"executor.replicas={replicas}", "--set", "executor.filter_workers=2"]


def shard_bytes(out: Path, sub: str = "shards") -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / sub).glob("shard-*.jsonl"))}


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "OPENAI_API_KEY": "k"})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    return p


def stats(out: Path) -> dict:
    return json.loads((out / "generate_stats.json").read_text())


def test_shard_cache_reads_the_run_cache_and_merges_back(tmp_path):
    """A replica's shard cache sees the run's cache.sqlite (read-only) and writes only its own
    file; merging moves its rows into cache.sqlite once (a second merge adds nothing), keeps an
    entry the run cache already held, and deletes the part."""
    from distill.generator.backends.base import Completion
    from distill.generator.cache import CREATE, RequestCache, ShardCache
    from distill.shards import merge_sqlite

    main = RequestCache(tmp_path / "cache.sqlite")
    main.put_many([("a", Completion("old a", 2, "stop"), 5)])
    main.close()
    part = tmp_path / "cache" / "shard-00000.sqlite"
    sc = ShardCache(part, base=tmp_path / "cache.sqlite")
    assert sc.get_many(["a", "b"])["a"].text == "old a" and sc.totals() == (5, 2)
    sc.put_many([("b", Completion("new b", 3, "stop"), 7), ("a", Completion("other a", 9, "stop"), 0)])
    assert sc.totals() == (12, 14)
    sc.close()
    assert merge_sqlite(tmp_path / "cache.sqlite", part.parent, "completions", CREATE) == 1
    assert not part.parent.exists() and merge_sqlite(tmp_path / "cache.sqlite", part.parent, "completions", CREATE) == 0
    main = RequestCache(tmp_path / "cache.sqlite")
    got = main.get_many(["a", "b"])
    assert got["a"].text == "old a" and got["b"].text == "new b" and main.totals() == (12, 5)
    main.close()


def test_distill_run_rounds_keep_the_executor(tmp_path):
    from distill.config import load_config
    from distill.loop import round_config

    cfg = load_config(None, [f"output_dir={tmp_path}", "executor.type=ray", "executor.replicas=3",
                             "train.model=x", "loop.rounds=2"])
    for k, student in ((1, None), (2, str(tmp_path / "student"))):
        r = round_config(cfg, k, student)
        assert r.executor.type == "ray" and r.executor.replicas == 3


@pytest.mark.slow
def test_generate_openai_on_ray_matches_local(ray_cluster, tmp_path):
    seeds = seeds_file(tmp_path, 64)  # 8 shards
    with FaultServer(delay=0.05) as server:
        run(generate_cmd(seeds, tmp_path / "local", server.url))
        local_paid = len(server.ledger)
        run(generate_cmd(seeds, tmp_path / "ray", server.url, *on_ray(ray_cluster)))
        assert len(server.ledger) == 2 * local_paid  # the cluster paid for each answer once, as local did
    assert shard_bytes(tmp_path / "ray") == shard_bytes(tmp_path / "local") and len(shard_bytes(tmp_path / "ray")) == 8
    s = stats(tmp_path / "ray")
    assert s["status"] == "complete" and s["records"] == 64 * 4
    assert s["executor"]["replicas"] == 2 and s["executor"]["nodes"] == 2  # spread over both nodes
    assert sum(s["executor"]["shards_by_pid"].values()) == 8
    assert s["completion_tokens_paid"] == stats(tmp_path / "local")["completion_tokens_paid"]
    assert not (tmp_path / "ray" / "cache").exists()  # shard caches merged into cache.sqlite
    # a rerun on the cluster finds every shard finished and starts nothing
    p = run(generate_cmd(seeds, tmp_path / "ray", "http://127.0.0.1:9", *on_ray(ray_cluster)))
    assert "nothing to do" in p.stdout + p.stderr


def _replica_pids() -> list[int]:
    import psutil

    pids = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any("ray::TeacherReplica" in part for part in (p.info["cmdline"] or [])):
                pids.append(p.info["pid"])
        except psutil.Error:
            pass
    return pids


@pytest.mark.slow
def test_replica_killed_mid_run_is_retried_without_paying_twice(ray_cluster, tmp_path):
    seeds = seeds_file(tmp_path, 96)  # 12 shards of 8 requests (n=4)
    with FaultServer(delay=0.25) as clean:
        run(generate_cmd(seeds, tmp_path / "ref", clean.url))
    out = tmp_path / "killed"
    with FaultServer(delay=0.25) as server:
        proc = subprocess.Popen(generate_cmd(seeds, out, server.url, *on_ray(ray_cluster)), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env={**os.environ, "OPENAI_API_KEY": "k"})
        killed_at, victim = None, None
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            # mid-shard: a replica has stored part of a shard that is not finished yet
            parts = list((out / "cache").glob("shard-*.sqlite")) if (out / "cache").is_dir() else []
            if len(list((out / "shards").glob("*.done.json"))) >= 2 and parts:
                pids = _replica_pids()
                if pids:
                    victim = pids[0]
                    os.kill(victim, signal.SIGKILL)
                    killed_at = time.time()
                    break
            time.sleep(0.05)
        log = proc.communicate(timeout=240)[0]
        assert proc.returncode == 0, log[-4000:]
        assert killed_at is not None, "the run ended before a replica could be killed mid-shard"
        ledger = list(server.ledger)
    assert shard_bytes(out) == shard_bytes(tmp_path / "ref")
    paid: dict = {}
    for e in ledger:
        paid.setdefault(e.key, []).append(e)
    twice = [v for v in paid.values() if len(v) > 1]
    # only answers still on the wire when the replica died may be paid again: at most its concurrency
    assert all(v[0].t > killed_at - REACHED_S for v in twice), [(v[0].t - killed_at) for v in twice]
    assert len(twice) <= 4
    assert stats(out)["status"] == "complete"


@pytest.mark.slow
def test_budget_holds_across_replicas(ray_cluster, tmp_path):
    seeds = seeds_file(tmp_path, 48)
    out = tmp_path / "budget"
    with FaultServer(delay=0.05) as server:
        p = subprocess.run(generate_cmd(seeds, out, server.url, "--set", "budget.max_completion_tokens=300",
                                        "--set", "task.sampling.max_tokens=16", *on_ray(ray_cluster)),
                           capture_output=True, text=True, timeout=300, env={**os.environ, "OPENAI_API_KEY": "k"})
        paid = sum(e.completion_tokens for e in server.ledger)
    assert p.returncode == 3, p.stdout + p.stderr[-3000:]
    assert "stopped by the budget" in p.stdout + p.stderr
    assert 300 <= paid <= 300 + 16 * 4  # over by at most one call (n=4 x max_tokens 16), over the whole cluster
    assert stats(out)["completion_tokens_paid"] == paid


def write_real_candidates(root: Path, n: int = 160, per_shard: int = 20) -> None:
    """Generate shards made of real teacher candidates (data/paraphrase/real_labels.jsonl)."""
    rows = [json.loads(line) for line in LABELS.read_text().splitlines()[:n]]
    store = ShardStore(root / "shards")
    recs = [Record(id=f"c{i:05d}", task="paraphrase", input=r["x"], output=r["y"], teacher="transformers:SmolLM2")
            for i, r in enumerate(rows)]
    for k in range(0, n, per_shard):
        store.write(k // per_shard, recs[k : k + per_shard], {"counts": {"samples": per_shard}})


FILTER = ["--set", "filter.critics=[{type: wellformed}, {type: copy, min_edit: 0.05}, "
          "{type: length_ratio, min_ratio: 0.7, max_ratio: 1.4}, {type: entities}]",
          "--set", "filter.dedup.semantic={field: output, threshold: 0.9}",
          "--set", "filter.dedup.diversity={threshold: 0.9}"]


@pytest.mark.slow
def test_filter_on_ray_matches_local(ray_cluster, tmp_path):
    """The critic chain and the dedup embeddings on a pool of two workers (real MiniLM), the global
    dedup on the driver: the same kept shards, rejects and funnel as a local filter."""
    for name in ("local", "ray"):
        write_real_candidates(tmp_path / name)
    run([sys.executable, "-m", "distill.cli", "filter", "--no-progress", *FILTER, "-o", str(tmp_path / "local")])
    run([sys.executable, "-m", "distill.cli", "filter", "--no-progress", *FILTER, *on_ray(ray_cluster),
         "-o", str(tmp_path / "ray")])
    lf, rf = tmp_path / "local" / "filtered", tmp_path / "ray" / "filtered"
    assert shard_bytes(rf, "kept") == shard_bytes(lf, "kept") and shard_bytes(rf, "kept")
    assert shard_bytes(rf, "critics") == shard_bytes(lf, "critics")
    ls, rs = (json.loads((d / "stats.json").read_text()) for d in (lf, rf))
    assert ls["funnel"] == rs["funnel"] and ls["scores"] == rs["scores"]
    assert any(s["stage"] == "dedup:semantic" for s in rs["funnel"])
    assert not (rf / "embeddings").exists()  # per-shard embeddings merged for the dedup


def test_unreachable_cluster_is_one_line(tmp_path):
    pytest.importorskip("ray")
    seeds = seeds_file(tmp_path, 8)
    p = subprocess.run(generate_cmd(seeds, tmp_path / "x", "http://127.0.0.1:9", "--set", "executor.type=ray",
                                    "--set", "executor.address=127.0.0.1:1"),
                       capture_output=True, text=True, timeout=120, env={**os.environ, "OPENAI_API_KEY": "k"})
    assert p.returncode == 2, p.stderr[-2000:]
    assert "executor.address" in p.stderr and "Traceback" not in p.stderr
    assert not list((tmp_path / "x").glob("shards/*.jsonl"))


@pytest.mark.slow
def test_a_replica_that_cannot_load_its_model_is_one_line(ray_cluster, tmp_path):
    seeds = seeds_file(tmp_path, 8)
    p = subprocess.run([sys.executable, "-m", "distill.cli", "generate", "--no-progress",
                        "--set", "task.name=paraphrase_instruct", "--set", f"task.inputs={seeds}",
                        "--set", f"teacher.model={tmp_path / 'no-model'}", *on_ray(ray_cluster), "-o", str(tmp_path / "x")],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 2, p.stderr[-2000:]
    assert f"teacher.model: no such model folder: {tmp_path / 'no-model'}" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "x" / "manifest.json").exists()  # nothing claimed


@pytest.mark.slow
def test_generate_transformers_on_ray_matches_local(ray_cluster, tmp_path):
    """The real SmolLM2 transformers backend, one replica per node, against the same run locally."""
    seeds = seeds_file(tmp_path, 4)
    base = [sys.executable, "-m", "distill.cli", "generate", "--no-progress", "--set", "task.name=paraphrase_instruct",
            "--set", f"task.inputs={seeds}", "--set", "task.k=2", "--set", "task.sampling.max_tokens=12",
            "--set", "shards.items_per_shard=2", "--set", "teacher.device=cpu", "--set", "teacher.batch_size=4"]
    run(base + ["-o", str(tmp_path / "local")], timeout=600)
    run(base + [*on_ray(ray_cluster), "-o", str(tmp_path / "ray")], timeout=600)
    assert shard_bytes(tmp_path / "ray") == shard_bytes(tmp_path / "local") and len(shard_bytes(tmp_path / "ray")) == 2
    assert stats(tmp_path / "ray")["executor"]["nodes"] == 2


def test_a_replica_needs_the_gpus_of_its_tensor_parallel_engine():
    from distill.config import load_config
    from distill.errors import ConfigError

    with pytest.raises(ConfigError, match=r"executor.num_gpus \(1\) must be at least teacher.vllm.tensor_parallel_size"):
        load_config(None, ["executor.type=ray", "teacher.backend=vllm", "teacher.vllm.tensor_parallel_size=2",
                           "executor.num_gpus=1"])
    assert load_config(None, ["executor.type=ray", "teacher.backend=vllm", "teacher.vllm.tensor_parallel_size=2",
                              "executor.num_gpus=2"]).executor.num_gpus == 2


def _raylet_of(node_id: str) -> int:
    """The pid of node ``node_id``'s raylet (its command line names the node)."""
    import psutil

    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        if p.info["name"] == "raylet" and f"--node_id={node_id}" in (p.info["cmdline"] or []):
            return p.info["pid"]
    raise AssertionError(f"no raylet for node {node_id}")


@pytest.mark.slow
def test_a_node_that_dies_mid_run_is_survived(tmp_path):
    """Two worker nodes (none of the work on the head): the raylet of a node holding a replica is
    SIGKILLed mid-run; Ray restarts the replica on the other node, its shard is retried, and the
    run completes with the records of a local run."""
    pytest.importorskip("ray")
    try:
        from ray_cluster import live_actors, local_cluster
    except ImportError:
        from tests.ray_cluster import live_actors, local_cluster
    seeds = seeds_file(tmp_path, 96)
    with FaultServer(delay=0.25) as clean:
        run(generate_cmd(seeds, tmp_path / "ref", clean.url))
    out = tmp_path / "node"
    with local_cluster(worker_nodes=2, head_cpus=0) as address, FaultServer(delay=0.25) as server:
        proc = subprocess.Popen(generate_cmd(seeds, out, server.url, *on_ray(address), "--set", "executor.max_restarts=-1",
                                             "--set", "executor.max_task_retries=-1"),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "OPENAI_API_KEY": "k"})
        killed = None
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if len(list((out / "shards").glob("*.done.json"))) >= 2:
                replicas = live_actors("TeacherReplica", address)
                if replicas:
                    killed = _raylet_of(replicas[0]["Address"]["NodeID"])
                    os.kill(killed, signal.SIGKILL)
                    break
            time.sleep(0.05)
        log = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, log[-4000:]
        assert killed is not None, "the run ended before a node could be killed"
    assert shard_bytes(out) == shard_bytes(tmp_path / "ref")
    assert stats(out)["status"] == "complete"
