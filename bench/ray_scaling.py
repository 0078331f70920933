"""Generate throughput against the number of teacher replicas on a Ray cluster.

    python bench/ray_scaling.py              # 1, 2, 4 replicas, 48 shards, on a local 2-node cluster
    python bench/ray_scaling.py --quick      # 16 shards: a smoke run (~1 min)
    python bench/ray_scaling.py --address 10.0.0.5:6379 --replicas 1 2 4 8   # an existing cluster

The teacher is a loopback OpenAI-compatible server (tests/fault_server.py, no faults) that
answers every request after a fixed ``--delay``, so a replica's throughput is set by that latency
and the pool's by how well shards are spread: each replica has one request in flight
(``teacher.openai.concurrency=1``), and N replicas should be N times as fast. Every run is
``distill.runner.run_generate`` with ``executor.type=ray`` into a fresh output folder; a last row
runs the same config with ``executor.type=local`` (one engine, in this process) for reference.

Per row: wall seconds (the whole ``run_generate``: joining the cluster, starting the replicas,
merging caches), ``work`` seconds (shards only, all replicas ready: the summary's
``executor.work_seconds``), samples/s on each, speed-up over 1 replica and scaling efficiency
thr(N) / (N * thr(1)). The target is efficiency >= 0.9 at 4 replicas on ``work``; ``wall`` pays a
fixed start-up cost per run that a longer run amortises.

The local cluster (tests/ray_cluster.py) has ``--nodes`` nodes of ``--cpus-per-node`` CPUs; each
replica reserves one CPU (``executor.num_cpus``), so the largest replica count must fit. The
replicas wait on the network, not on a CPU, so a 2-core machine can run 4 of them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fault_server import FaultServer  # noqa: E402
from ray_cluster import local_cluster  # noqa: E402


def seeds_file(folder: Path, n: int) -> Path:
    path = folder / "seeds.txt"
    path.write_text("".join(f"Sentence number {i} says that the council met on day {i}.\n" for i in range(n)))
    return path


def config(seeds: Path, out: Path, url: str, args, executor: list[str]):
    from distill.config import load_config

    return load_config(None, [
        "task.name=paraphrase_instruct", f"task.inputs={seeds}", f"task.k={args.k}",
        f"shards.items_per_shard={args.items}", "teacher.backend=openai", "teacher.model=fake",
        f"teacher.openai.base_url={url}", f"teacher.openai.concurrency={args.concurrency}",
        "teacher.openai.mode=chat", "teacher.openai.timeout=30", f"output_dir={out}", *executor])


def run_once(cfg) -> dict:
    from distill.runner import run_generate

    t = time.perf_counter()
    s = run_generate(cfg, progress=False)
    wall = time.perf_counter() - t
    if s.status != "complete":
        raise SystemExit(f"run into {s.output_dir} ended {s.status}: {s.message}")
    ex = getattr(s, "executor", None) or {}
    return {"wall": wall, "work": ex.get("work_seconds"), "samples": s.records, "shards": s.shards_written_now,
            "nodes": ex.get("nodes"), "by_pid": ex.get("shards_by_pid")}


def table(rows: list[tuple[str, dict]]) -> str:
    base = next((r for name, r in rows if name == "1"), None)

    def thr(r, key):
        return r["samples"] / r[key] if r.get(key) else None

    def cell(x, fmt):
        return format(x, fmt) if x is not None else "-"

    lines = [f"{'replicas':>8} {'wall s':>7} {'work s':>7} {'samples/s wall':>14} {'samples/s work':>14} "
             f"{'speed-up':>8} {'efficiency':>10} {'(on wall)':>9} {'nodes':>5}"]
    for name, r in rows:
        n = int(name) if name.isdigit() else None
        su = eff = eff_wall = None
        key = "work" if r.get("work") and base and base.get("work") else "wall"
        if n and base:
            su = thr(r, key) / thr(base, key)
            eff = su / n
            eff_wall = thr(r, "wall") / (n * thr(base, "wall"))
        lines.append(f"{name:>8} {r['wall']:7.2f} {cell(r.get('work'), '7.2f'):>7} {thr(r, 'wall'):14.1f} "
                     f"{cell(thr(r, 'work'), '14.1f'):>14} {cell(su, '8.2f'):>8} {cell(eff, '10.2f'):>10} "
                     f"{cell(eff_wall, '9.2f'):>9} {cell(r.get('nodes'), '5'):>5}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="16 shards instead of 48")
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--shards", type=int, default=None, help="shards per run (default 48, --quick 16)")
    ap.add_argument("--items", type=int, default=4, help="seed items per shard")
    ap.add_argument("--k", type=int, default=2, help="samples per item (one request with n=k)")
    ap.add_argument("--delay", type=float, default=0.1, help="seconds the teacher takes per request")
    ap.add_argument("--concurrency", type=int, default=1, help="requests in flight per replica")
    ap.add_argument("--address", default=None, help="an existing Ray cluster (default: start a local one)")
    ap.add_argument("--nodes", type=int, default=2, help="local cluster: nodes, the head included")
    ap.add_argument("--cpus-per-node", type=int, default=None, help="local cluster (default: enough for the replicas)")
    ap.add_argument("--no-local", action="store_true", help="skip the executor.type=local reference row")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()
    shards = args.shards or (16 if args.quick else 48)
    os.environ.setdefault("OPENAI_API_KEY", "bench")  # the fake server takes any key
    cpus = args.cpus_per_node or -(-max(args.replicas) // args.nodes)

    rows: list[tuple[str, dict]] = []
    with tempfile.TemporaryDirectory(prefix="ray-scaling-") as tmp_, FaultServer(delay=args.delay) as server:
        tmp = Path(tmp_)
        seeds = seeds_file(tmp, shards * args.items)
        t = time.perf_counter()
        cluster = (nullcontext(args.address) if args.address else
                   local_cluster(worker_nodes=args.nodes - 1, cpus_per_node=cpus))
        with cluster as address:
            print(f"cluster {address}: {args.nodes if not args.address else '?'} node(s) of {cpus} CPU(s), "
                  f"ready in {time.perf_counter() - t:.1f} s; teacher delay {args.delay} s, {shards} shards of "
                  f"{args.items} items x k={args.k}, concurrency {args.concurrency} per replica", flush=True)
            for n in args.replicas:
                cfg = config(seeds, tmp / f"ray-{n}", server.url, args, [
                    "executor.type=ray", f"executor.address={address}", f"executor.replicas={n}"])
                r = run_once(cfg)
                rows.append((str(n), r))
                print(f"  {n} replica(s): wall {r['wall']:.2f} s, work {r['work']} s, shards by pid {r['by_pid']}",
                      flush=True)
        if not args.no_local:
            rows.append(("local", run_once(config(seeds, tmp / "local", server.url, args, ["executor.type=local"]))))
        outs = [tmp / f"ray-{n}" for n in args.replicas] + ([] if args.no_local else [tmp / "local"])
        same = len({tuple(p.read_bytes() for p in sorted((o / "shards").glob("shard-*.jsonl"))) for o in outs}) == 1
    print()
    print(table(rows))
    print(f"\nrecords identical across every run: {same}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
