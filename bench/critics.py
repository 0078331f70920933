"""Critics and dedup speed, side by side in one run.

    python bench/critics.py                         # everything (about 20 min on 2 busy cores)
    python bench/critics.py --sizes 10000,100000    # skip the 1M run
    python bench/critics.py --no-embed --no-nli     # dedup only

1. Semantic dedup of n random unit vectors (384-d) with near-duplicates planted (5% of the
   rows are overwritten by a noisy copy of another row, cosine ~0.97), threshold 0.9: the
   neighbour search, connected components and survivor pick, as ``SemanticDedup.decide``
   runs them, per method. Exact methods at 1M (~n^2/2 = 5e11 dot products) are too slow
   for this machine and are skipped and estimated from 100k (x 100); HNSW is skipped above
   ``--hnsw-max`` (its build dominates: ~5 min for 100k here). Approximate methods report
   recall against the exact result where one ran, else against the planted pairs. The
   growth exponent is the least-squares slope of log(time) against log(n), over all sizes
   run and over the last two (fixed costs flatten the small sizes).
2. Embedding throughput: our Encoder (no cache; cold on-disk cache; warm cache) against a
   raw ``SentenceTransformer.encode`` of the same model over the same sentences, alternating
   runs, median of repeats.
3. The NLI critic against a raw model forward: bench/critics_nli.py's ``run_bench()``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

THRESHOLD = 0.9


def planted(n: int, d: int = 384, frac: float = 0.05, noise: float = 0.012, seed: int = 0):
    """Unit vectors; ``frac`` of the rows replaced by a noisy copy of another row."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    m = int(n * frac)
    src, dst = rng.choice(n, m, replace=False), rng.choice(n, m, replace=False)
    x[dst] = x[src] + rng.standard_normal((m, d), dtype=np.float32) * noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    a, b = np.minimum(src, dst), np.maximum(src, dst)
    true = np.einsum("ij,ij->i", x[a], x[b]) >= THRESHOLD
    return x, set(zip(a[true & (a != b)].tolist(), b[true & (a != b)].tolist()))


def dedup_once(x: np.ndarray, method: str) -> tuple[float, set, int]:
    """Time of the whole decision over vectors: pairs, clusters, survivors."""
    from distill.critics.neighbors import SearchParams, components, neighbor_pairs, pick_survivors

    t = time.perf_counter()
    r, c = neighbor_pairs(x, THRESHOLD, SearchParams(method=method))
    k, labels = components(len(x), r, c)
    pick_survivors(labels, np.full(len(x), -np.inf), np.arange(len(x)))
    secs = time.perf_counter() - t
    return secs, set(zip(r.tolist(), c.tolist())), len(x) - k


def slope(ns: list[int], ts: list[float]) -> float | None:
    if len(ns) < 2:
        return None
    return float(np.polyfit(np.log(ns), np.log(ts), 1)[0])


def bench_dedup(sizes: list[int], methods: list[str], hnsw_max: int, exact_max: int) -> dict:
    from distill.critics.neighbors import have_faiss

    if not have_faiss():
        methods = [m for m in methods if not m.startswith("faiss")]
        print("faiss not installed: faiss methods skipped")
    times: dict[str, dict[int, float]] = {m: {} for m in methods}
    rows = []
    for n in sizes:
        x, planted_pairs = planted(n)
        exact = None
        for m in methods:
            if (m in ("torch", "faiss_flat") and n > exact_max) or (m == "faiss_hnsw" and n > hnsw_max):
                prev = [k for k in times[m] if k < n]
                est = times[m][max(prev)] * (n / max(prev)) ** (2 if m != "faiss_hnsw" else 1.1) if prev else None
                rows.append((n, m, None, est, None, None))
                continue
            secs, pairs, dropped = dedup_once(x, m)
            times[m][n] = secs
            if m in ("torch", "faiss_flat"):
                exact = exact or pairs
                recall = None
            else:
                ref = exact or planted_pairs
                recall = len(pairs & ref) / max(1, len(ref))
            rows.append((n, m, secs, None, len(pairs), recall))
            print(f"  n={n:>9,} {m:<11} {secs:8.1f} s  pairs {len(pairs):>7,}  dropped {dropped:>7,}"
                  + ("" if recall is None else f"  recall {recall:.4f} vs {'exact' if exact else 'planted'}"),
                  flush=True)
        del x
    exps = {m: slope(sorted(t), [t[k] for k in sorted(t)]) for m, t in times.items()}
    last = {m: slope(sorted(t)[-2:], [t[k] for k in sorted(t)[-2:]]) for m, t in times.items()}
    return {"rows": rows, "exponents": exps, "last_step_exponents": last}


SUBJ = ["The mayor", "A local farmer", "The new museum", "Heavy rain", "The city council", "A young pianist",
        "The company", "Police officers", "The football club", "Scientists in Oslo", "The old bridge", "Voters"]
VERB = ["announced", "criticised", "celebrated", "delayed", "reported", "questioned", "welcomed", "rejected"]
OBJ = ["the budget for next year", "plans for a second runway", "a sharp rise in food prices",
       "the results of the election", "a long-awaited trade deal", "the closure of two schools",
       "a record harvest", "new rules on parking", "the opening of a concert hall", "a strike by bus drivers"]
TAIL = ["on Monday.", "after a long debate.", "despite strong protests.", "in a short statement.",
        "for the third time this year.", "without giving details.", "to the surprise of many residents."]


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < n:
        s = f"{rng.choice(SUBJ)} {rng.choice(VERB)} {rng.choice(OBJ)} {rng.choice(TAIL)}"
        if rng.random() < 0.5:
            s += f" {rng.choice(SUBJ)} {rng.choice(VERB).lower()} {rng.choice(OBJ)}."
        out[s] = None
    return list(out)


def bench_embed(n: int, repeats: int) -> dict:
    from distill.critics.embed import Encoder

    texts = sentences(n)
    ours = Encoder()
    raw = ours.model  # the same SentenceTransformer object: only our wrapper differs
    bs = ours.batch_size

    def run_raw() -> float:
        t = time.perf_counter()
        raw.encode(texts, batch_size=bs, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return time.perf_counter() - t

    def run_ours() -> float:
        t = time.perf_counter()
        ours.encode(texts)
        return time.perf_counter() - t

    tmp = tempfile.TemporaryDirectory()
    cached = Encoder(cache_path=Path(tmp.name) / "emb.sqlite")
    cached.model = raw

    def run_cold() -> float:  # an empty cache: encode, then write every vector
        with cached.db:
            cached.db.execute("DELETE FROM emb")
        t = time.perf_counter()
        cached.encode(texts)
        return time.perf_counter() - t

    def run_warm() -> float:  # runs right after run_cold: every vector read back
        t = time.perf_counter()
        cached.encode(texts)
        return time.perf_counter() - t

    sides = {"raw": run_raw, "ours": run_ours, "ours_cold_cache": run_cold, "ours_warm_cache": run_warm}
    run_raw(), run_ours()  # warm-up
    secs: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(repeats):
        for k, fn in sides.items():
            secs[k].append(fn())
    med = {k: statistics.median(v) for k, v in secs.items()}
    cached.close()
    tmp.cleanup()
    import torch

    return {"sentences": n, "batch_size": bs, "threads": torch.get_num_threads(),
            **{f"{k}_per_s": round(n / v, 1) for k, v in med.items()},
            **{f"ratio_{k}_over_raw": round(med["raw"] / v, 3) for k, v in med.items() if k != "raw"}}


def run_nli_hook() -> dict | None:
    path = Path(__file__).with_name("critics_nli.py")
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("critics_nli", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.run_bench()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--methods", default="torch,torch_ivf,faiss_flat,faiss_ivf,faiss_hnsw")
    ap.add_argument("--exact-max", type=int, default=100_000, help="largest n run with an exact method")
    ap.add_argument("--hnsw-max", type=int, default=100_000, help="largest n run with HNSW")
    ap.add_argument("--embed-sentences", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-dedup", action="store_true")
    ap.add_argument("--no-embed", action="store_true")
    ap.add_argument("--no-nli", action="store_true")
    a = ap.parse_args()
    import torch

    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"load average {os.getloadavg()[0]:.1f} at start")
    if not a.no_dedup:
        sizes = [int(s) for s in a.sizes.split(",")]
        methods = a.methods.split(",")
        print(f"semantic dedup, 384-d, cosine >= {THRESHOLD} (search + components + survivors):")
        d = bench_dedup(sizes, methods, a.hnsw_max, a.exact_max)
        print("\n  method      " + "".join(f"{n:>14,}" for n in sizes) + "   exponent (all sizes / last two run)")
        for m in methods:
            cells = []
            for n in sizes:
                row = next((r for r in d["rows"] if r[0] == n and r[1] == m), None)
                if row is None:
                    cells.append(f"{'-':>14}")
                elif row[2] is not None:
                    cells.append(f"{row[2]:>12.1f} s")
                else:
                    cells.append(f"{'~' + format(row[3], '.0f') + ' s*' if row[3] else 'skipped':>14}")
            e, e2 = d["exponents"].get(m), d["last_step_exponents"].get(m)
            print(f"  {m:<11} " + "".join(cells) + (f"   {e:.2f} / {e2:.2f}" if e is not None else "   -"))
        print("  * not run: estimated from the largest n run (exact: x (n ratio)^2; HNSW: ^1.1)")
        print(f"  load average {os.getloadavg()[0]:.1f} after dedup")
    if not a.no_embed:
        e = bench_embed(a.embed_sentences, a.repeats)
        print(f"embedding ({e['sentences']} sentences, all-MiniLM-L6-v2, batch {e['batch_size']}, "
              f"{e['threads']} threads): raw SentenceTransformer.encode {e['raw_per_s']}/s; ours {e['ours_per_s']}/s "
              f"(ratio {e['ratio_ours_over_raw']}); ours, cold disk cache {e['ours_cold_cache_per_s']}/s "
              f"(ratio {e['ratio_ours_cold_cache_over_raw']}); ours, warm cache {e['ours_warm_cache_per_s']}/s "
              f"(ratio {e['ratio_ours_warm_cache_over_raw']})")
    if not a.no_nli:
        r = run_nli_hook()
        if r is None:
            print("nli critic: bench/critics_nli.py not found, skipped")
        else:
            print("nli critic: " + ", ".join(f"{k} {round(v, 3) if isinstance(v, float) else v}"
                                             for k, v in r.items()))


if __name__ == "__main__":
    main()
