"""Every critic and chain, measured on the hand labels of real candidates.

    python bench/meaning_critics.py                               # test split, the chains below
    python bench/meaning_critics.py --split dev --chains my.yaml  # chains of your own (name: [critic specs])
    python bench/meaning_critics.py --curve score_name            # precision-recall of one score

Labels are data/paraphrase/real_labels.jsonl (P / C / M / D with M kinds, see LABELS.md).
A critic *keeps* a pair or drops it; a chain keeps what all its critics keep. Per chain:

- precision: share of P among the kept pairs (what a corpus built with it holds);
- recall: share of the P pairs it keeps;
- catch rate per failure kind: share of the C, D and M-<kind> pairs it drops;

each with a 95% Wilson interval. Each critic runs once over all pairs, and the chains are
read off its verdicts, so a chain costs nothing extra. For every score a critic writes, the
AUC of P against the rest says how much the score alone separates them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import yaml

LABELS = Path(__file__).resolve().parents[1] / "data" / "paraphrase" / "real_labels.jsonl"
KINDS = ("added", "dropped", "fact", "role", "number", "time", "negation", "attribution")

#: critics measured one by one, and the chains (lists of critic names) built from them
CRITICS = {
    # the cpu_run chain before the meaning critics (rules and embedding cosine)
    "wellformed": {"type": "wellformed"},
    "copy": {"type": "copy"},
    "length_ratio": {"type": "length_ratio"},
    "lexical": {"type": "lexical"},
    "numbers": {"type": "numbers"},
    "negation": {"type": "negation"},
    "embed_similarity": {"type": "embed_similarity"},
    # the meaning-aware chain of examples/cpu_run.yaml (settings chosen on the train+dev split)
    "copy_05": {"type": "copy", "min_edit": 0.05, "max_word_edits": 1},
    "length_tight": {"type": "length_ratio", "min_ratio": 0.85, "max_ratio": 1.25},
    "entities": {"type": "entities"},
    # four teacher passes per pair: judged only on what the cheap critics keep
    "likelihood": {"type": "likelihood", "model": "smollm2-135m-instruct", "direction": "backward",
                   "baseline": "none", "min_backward": -0.9,
                   "after": ["wellformed", "copy_05", "length_tight", "entities"]},
    "likelihood_067": {"type": "likelihood", "model": "smollm2-135m-instruct", "direction": "backward",
                       "baseline": "none", "min_backward": -0.67,
                       "after": ["wellformed", "copy_05", "length_tight", "entities"]},
    "lm_judge": {"type": "lm_judge",
                 "after": ["wellformed", "copy_05", "length_tight", "entities"]},
}
BEFORE = ["wellformed", "copy", "length_ratio", "lexical", "numbers", "negation", "embed_similarity"]
RULES = ["wellformed", "copy_05", "length_tight", "entities"]
CHAINS = {
    "cpu_run chain before this work": BEFORE,
    "old chain + entities": BEFORE + ["entities"],
    "rules + entities (copy_05, length_tight)": RULES,
    "rules + entities + likelihood >= -0.9 (cpu_run now; best F1 on train+dev)": RULES + ["likelihood"],
    "rules + entities + likelihood >= -0.67 (best precision at recall >= 0.3 on train+dev)": RULES + ["likelihood_067"],
    "rules + entities + lm_judge": RULES + ["lm_judge"],
}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = p + z * z / (2 * n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, (c - h) / d), min(1.0, (c + h) / d))


def fmt(k: int, n: int) -> str:
    if n == 0:
        return "–"
    lo, hi = wilson(k, n)
    return f"{k / n:.2f} [{lo:.2f}, {hi:.2f}] ({k}/{n})"


def load_labels(path: Path, split: str | None) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if split == "fit":  # what thresholds may be chosen on: never the test split
        return [r for r in rows if r["split"] in ("train", "dev")]
    return [r for r in rows if split in (None, "all") or r["split"] == split]


def judge_all(critics: dict[str, dict], rows: list[dict], teacher=None) -> tuple[dict, dict]:
    """verdicts[name][i] = True or the drop reason; scores[i] = every score written."""
    from distill.critics.registry import build_critic
    from distill.record import Record

    recs = [Record(id=r["id"], task="paraphrase", input=r["x"], output=r["y"]) for r in rows]
    verdicts, seconds = {}, {}
    for name, spec in critics.items():
        # after: [critic names]: an expensive critic judges only what those keep (the rest: "not judged")
        after = spec.get("after", [])
        kw = {k: v for k, v in spec.items() if k not in ("type", "after")}
        kw.setdefault("name", name) if "name" in _params(spec["type"]) else None
        critic = build_critic(spec["type"], kw, where=f"critic {name}", teacher=teacher)
        todo = [i for i in range(len(recs)) if all(verdicts[a][i] is True for a in after)]
        t = time.perf_counter()
        out = []
        for j in range(0, len(todo), critic.batch_size):
            out += critic.judge_batch([recs[i] for i in todo[j:j + critic.batch_size]])
        seconds[name] = time.perf_counter() - t
        verdicts[name] = ["not judged"] * len(recs)
        for i, v in zip(todo, out):
            verdicts[name][i] = True if v is True else v[1]
        if hasattr(critic, "close"):
            critic.close()
    return verdicts, {"scores": [r.scores for r in recs], "seconds": seconds}


def _params(type_name: str) -> set[str]:
    import inspect

    from distill.critics.registry import critic_class

    return set(inspect.signature(critic_class(type_name).__init__).parameters)


def chain_row(name: str, kept: list[bool], rows: list[dict], members: tuple[str, ...] = ()) -> dict:
    """Recall and catch rates count only rows labelled whatever the critics said (``sample``
    "all"); rows labelled because a stratum chain kept them (``sample`` "chain-kept", the
    chain in ``stratum``) add to the precision of every chain at least as strict as that one,
    whose kept set among them is then fully labelled."""
    full = [r.get("sample", "all") == "all" for r in rows]
    pos = [r["label"] == "P" for r in rows]
    in_prec = [f or set(r.get("stratum", "?").split(",")) <= set(members) for f, r in zip(full, rows)]
    kp = sum(k and p and i for k, p, i in zip(kept, pos, in_prec))
    nk = sum(k and i for k, i in zip(kept, in_prec))
    k_p = sum(k and p and f for k, p, f in zip(kept, pos, full))
    row = {"chain": name, "kept": nk, "precision": (kp, nk), "recall": (k_p, sum(p and f for p, f in zip(pos, full)))}
    rows = [r for r, f in zip(rows, full) if f]
    kept = [k for k, f in zip(kept, full) if f]
    for cls in ("C", "D"):
        idx = [i for i, r in enumerate(rows) if r["label"] == cls]
        row[cls] = (sum(not kept[i] for i in idx), len(idx))
    for kind in KINDS:
        idx = [i for i, r in enumerate(rows) if r["label"] == "M" and kind in r.get("kinds", [])]
        row[f"M-{kind}"] = (sum(not kept[i] for i in idx), len(idx))
    idx = [i for i, r in enumerate(rows) if r["label"] == "M"]
    row["M (all)"] = (sum(not kept[i] for i in idx), len(idx))
    return row


def _random_sample(scores: list[dict], rows: list[dict]) -> tuple[list[dict], list[dict]]:
    keep = [i for i, r in enumerate(rows) if r.get("sample", "all") == "all"]
    return [scores[i] for i in keep], [rows[i] for i in keep]


def aucs(scores: list[dict], rows: list[dict]) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    scores, rows = _random_sample(scores, rows)
    y = [r["label"] == "P" for r in rows]
    out = {}
    for key in sorted({k for s in scores for k in s}):
        vals = [s.get(key) for s in scores]
        if any(v is None for v in vals) or len(set(vals)) < 2 or len(set(y)) < 2:
            continue
        out[key] = float(roc_auc_score(y, vals))
    return out


def curve(score: str, scores: list[dict], rows: list[dict], points: int = 12) -> list[tuple[float, int, int, int]]:
    """(threshold, kept, kept P, all P) for keeping score >= threshold, at score quantiles."""
    import numpy as np

    scores, rows = _random_sample(scores, rows)
    # a pair an earlier critic dropped has no score: it is never kept (recall counts every P)
    vals = np.array([s.get(score, -np.inf) for s in scores], dtype=float)
    pos = np.array([r["label"] == "P" for r in rows])
    out = []
    finite = vals[np.isfinite(vals)]
    for q in np.linspace(0, 0.98, points):
        t = float(np.quantile(finite, q))
        keep = vals >= t
        out.append((t, int(keep.sum()), int((keep & pos).sum()), int(pos.sum())))
    return out


def markdown(table: list[dict]) -> str:
    cols = ["precision", "recall", "C", "D", "M (all)"] + [f"M-{k}" for k in KINDS]
    head = "| chain | kept | " + " | ".join(cols) + " |\n|" + "---|" * (len(cols) + 2) + "\n"
    return head + "".join(
        f"| {r['chain']} | {r['kept']} | " + " | ".join(fmt(*r[c]) for c in cols) + " |\n" for r in table)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labels", default=str(LABELS))
    p.add_argument("--split", default="test", help="train, dev, test, fit (train+dev) or all")
    p.add_argument("--chains", default=None, help="YAML: {critics: {name: spec}, chains: {name: [critic names]}}")
    p.add_argument("--curve", action="append", default=[], help="score name: print its precision-recall curve")
    p.add_argument("--json", default=None, help="write the results here too")
    p.add_argument("--only", action="store_true", help="measure only the chains of --chains (and the critics they use)")
    a = p.parse_args(argv)
    critics, chains = dict(CRITICS), dict(CHAINS)
    if a.chains:
        extra = yaml.safe_load(Path(a.chains).read_text()) or {}
        critics.update(extra.get("critics", {}))
        chains = extra.get("chains", {}) if a.only else {**chains, **extra.get("chains", {})}
        if a.only:
            need = {c for names in chains.values() for c in names}
            need |= {d for c in need for d in critics[c].get("after", [])}
            critics = {n: spec for n, spec in critics.items() if n in need}
    rows = load_labels(Path(a.labels), a.split)
    if not rows:
        print(f"{a.labels}: no labelled pairs in split {a.split!r}", file=sys.stderr)
        return 2
    from distill.config import TeacherConfig

    verdicts, extra = judge_all(critics, rows, teacher=TeacherConfig())
    table = [chain_row(f"`{n}` alone" if not spec.get("after") else f"`{n}` after {' + '.join(spec['after'])}",
                       [v is True for v in verdicts[n]], rows, (n, *spec.get("after", ()))) for n, spec in critics.items()]
    table += [chain_row(n, [all(verdicts[c][i] is True for c in names) for i in range(len(rows))], rows,
                        tuple(names)) for n, names in chains.items()]
    labels = {k: sum(r["label"] == k for r in rows) for k in "PCMD"}
    print(f"{len(rows)} labelled pairs ({a.split}): {labels}\n")
    print(markdown(table))
    au = aucs(extra["scores"], rows)
    print("AUC of each score, P against the rest:", ", ".join(f"{k} {v:.3f}" for k, v in au.items()))
    print("seconds per critic:", ", ".join(f"{k} {v:.1f}" for k, v in extra["seconds"].items()))
    curves = {}
    for s in a.curve:
        curves[s] = curve(s, extra["scores"], rows)
        print(f"\nprecision-recall of {s} >= t:")
        for t, kept, kp, allp in curves[s]:
            print(f"  t={t:.4f} kept={kept} precision={kp / max(kept, 1):.2f} recall={kp / max(allp, 1):.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"split": a.split, "labels": labels, "table": table, "auc": au,
                                            "curves": curves, "seconds": extra["seconds"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
