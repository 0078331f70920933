"""How well each summarization critic, and chains of them, keep good summaries: measured on
hand labels of real teacher output (data/summarization/labels.jsonl, G / E / U / O, split
by document).

    python bench/summary_critics.py [--labels data/summarization/labels.jsonl] [--scores FILE]

Every critic scores every labelled candidate with no bound (each score written; scores are
computed once and kept in --scores, default runs/bench/summary_scores.json, keyed by the
candidate's id); then, per score, the AUC of "G against the rest" on train+dev and test; per
chain, precision (share of G among what it keeps) and recall (share of all G it keeps) with
Wilson intervals, at bounds chosen on train+dev (``--pick``) and applied once to test.
The test split never picks a bound.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "data" / "summarization" / "labels.jsonl"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def fmt(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k}/{n} = {k / n:.2f} [{lo:.2f}, {hi:.2f}]" if n else "0/0"


def auc(pos: list[float], neg: list[float]) -> float | None:
    if not pos or not neg:
        return None
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def compute_scores(rows: list[dict]) -> dict[str, dict]:
    """Every critic's scores for every row, each critic unbounded."""
    from distill.critics.consistency import ConsistencyCritic
    from distill.critics.infosum import InfoSumCritic
    from distill.critics.rules import Compression
    from distill.critics.summary import Coverage, Extractive
    from distill.critics.wellformed import WellFormed
    from distill.record import Record

    recs = [Record(id=r["id"], task="summarization", input=r["input"], output=r["output"]) for r in rows]
    wf = WellFormed()
    ent = ConsistencyCritic(max_dropped=None)
    verdicts = {"entities": ent.judge_batch(recs), "wellformed": wf.judge_batch(recs)}
    Compression(max_ratio=10.0, unit="words").judge_batch(recs)
    Coverage(min_coverage=0.0).judge_batch(recs)
    Extractive(max_extract=1.0).judge_batch(recs)
    info = InfoSumCritic(min_saliency=None, min_faithfulness=None)
    try:
        for i in range(0, len(recs), 16):
            info.judge_batch(recs[i:i + 16])
            print(f"infosum {min(i + 16, len(recs))}/{len(recs)}", file=sys.stderr, flush=True)
    finally:
        info.close()
    out = {}
    for r in recs:
        s = {k: float(v) for k, v in r.scores.items()}
        for name, vs in verdicts.items():
            v = vs[recs.index(r)]
            s[f"{name}_ok"] = 1.0 if v is True else 0.0
            if v is not True:
                s[f"{name}_reason"] = v[1]
        out[r.id] = s
    return out


#: (name, [(score, op, bound)]): bounds given here are fixed by rule, not picked
SINGLE = [("compression (words) <= 0.5", [("compression", "<=", 0.5)]),
          ("extractive: extract <= 0.8", [("extract", "<=", 0.8)]),
          ("entities (nothing added or changed)", [("entities_ok", ">=", 1.0)]),
          ("wellformed", [("wellformed_ok", ">=", 1.0)]),
          ("coverage >= 0.2 (its default)", [("coverage", ">=", 0.2)])]
PICKED = ("coverage", "info_faithfulness", "info_faithfulness_mean", "info_saliency")


def keeps(s: dict, bounds: list[tuple[str, str, float]]) -> bool:
    for k, op, b in bounds:
        v = s.get(k)
        if v is None or isinstance(v, str):
            return False
        if not {"<=": v <= b, ">=": v >= b, "<": v < b, ">": v > b}[op]:
            return False
    return True


#: what a chain should keep: a good summary (G), or any faithful one (G or E: E copies a sentence)
TARGETS = {"G": ("G",), "faithful (G or E)": ("G", "E")}
POS: tuple[str, ...] = ("G",)


def pr(rows: list[dict], scores: dict, bounds) -> tuple[int, int, int]:
    """(kept positives, kept, all positives), positives the labels in POS"""
    kept = [r for r in rows if keeps(scores[r["id"]], bounds)]
    return sum(r["label"] in POS for r in kept), len(kept), sum(r["label"] in POS for r in rows)


def pick(rows: list[dict], scores: dict, base: list, score: str, min_recall_g: int = 3) -> float | None:
    """The bound on ``score`` (>=) that maximises F0.5 (precision weighted over recall) on
    ``rows`` after ``base``, keeping at least ``min_recall_g`` positives, ties to the looser bound."""
    values = sorted({scores[r["id"]][score] for r in rows if score in scores[r["id"]]
                     and math.isfinite(scores[r["id"]][score])})
    best, best_key = None, None
    for v in values:
        g, k, _ = pr(rows, scores, base + [(score, ">=", v)])
        if g < min_recall_g or k == 0:
            continue
        _, _, n = pr(rows, scores, [])
        p, r = g / k, g / n
        key = (round(1.25 * p * r / (0.25 * p + r), 4), g)
        if best_key is None or key > best_key:
            best, best_key = v, key
    return best


def trained_scores(rows: list[dict], scores: dict, path: Path) -> None:
    """The shipped trained critic's verdict on every row, as ``trained_ok`` (it reads the
    upstream scores computed above)."""
    from distill.critics.trained import TrainedCritic
    from distill.record import Record

    critic = TrainedCritic(path=str(path))
    recs = [Record(id=r["id"], task="summarization", input=r["input"], output=r["output"],
                   scores={k: v for k, v in scores[r["id"]].items() if not isinstance(v, str)}) for r in rows]
    for r, v in zip(recs, critic.judge_batch(recs)):
        scores[r.id]["trained_ok"] = 1.0 if v is True else 0.0
        scores[r.id]["trained_p"] = float(r.scores[critic.name])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--scores", type=Path, default=ROOT / "runs" / "bench" / "summary_scores.json")
    ap.add_argument("--critic", type=Path, default=ROOT / "data" / "summarization" / "critic",
                    help="a trained critic artifact (distill critic train) to measure too")
    a = ap.parse_args(argv)
    rows = [json.loads(line) for line in a.labels.read_text().splitlines() if line.strip()]
    scores = json.loads(a.scores.read_text()) if a.scores.is_file() else {}
    todo = [r for r in rows if r["id"] not in scores]
    if todo:
        scores.update(compute_scores(todo))
        a.scores.parent.mkdir(parents=True, exist_ok=True)
        a.scores.write_text(json.dumps(scores))
    if a.critic.is_dir():
        trained_scores(rows, scores, a.critic)
    for target, labels in TARGETS.items():
        report(rows, scores, target, labels, a.critic.is_dir())
    return 0


def report(rows: list[dict], scores: dict, target: str, labels: tuple[str, ...], trained: bool) -> None:
    global POS
    POS = labels
    print(f"\n# Target: {target}")
    fit = [r for r in rows if r["split"] != "test"]
    test = [r for r in rows if r["split"] == "test"]
    print(f"labels: {len(rows)} (train+dev {len(fit)}, test {len(test)}); {target} share: "
          f"train+dev {fmt(sum(r['label'] in labels for r in fit), len(fit))}, "
          f"test {fmt(sum(r['label'] in labels for r in test), len(test))}")
    print(f"\n## AUC, {target} against the rest\n\n| score | train+dev | test |\n|---|---|---|")
    keys = ["compression", "extract", "coverage", "info_saliency", "info_saliency_pmi", "info_faithfulness",
            "info_faithfulness_mean", "info_brevity", "consistency", "ent_added"] + (["trained_p"] if trained else [])
    for k in keys:
        cells = []
        for part in (fit, test):
            pos = [scores[r["id"]][k] for r in part if r["label"] in labels and k in scores[r["id"]]]
            neg = [scores[r["id"]][k] for r in part if r["label"] not in labels and k in scores[r["id"]]]
            v = auc(pos, neg)
            cells.append("-" if v is None else f"{v:.2f}")
        print(f"| {k} | {' | '.join(cells)} |")
    print("\n## Critics and chains on test (bounds picked on train+dev)\n")
    print(f"| critic / chain | bound(s) | test precision ({target} among kept) | test recall (of {target}) | "
          f"train+dev precision |")
    print("|---|---|---|---|---|")

    def line(name, bounds):
        g, k, n = pr(test, scores, bounds)
        fg, fk, _ = pr(fit, scores, bounds)
        b = ", ".join(f"{s} {op} {v:.3g}" for s, op, v in bounds) or "none"
        print(f"| {name} | {b} | {fmt(g, k)} | {fmt(g, n)} | {fmt(fg, fk)} |")

    line("keep everything", [])
    for name, bounds in SINGLE:
        line(name, bounds)
    for s in PICKED:
        v = pick(fit, scores, [], s)
        if v is not None:
            line(f"{s} alone", [(s, ">=", v)])
    rule = [b for name, bs in SINGLE for b in bs if not name.startswith(("extractive", "coverage"))]
    line("rule chain (compression, entities, wellformed)", rule)
    chain = list(rule)
    for s in ("info_faithfulness_mean", "coverage", "info_saliency"):
        v = pick(fit, scores, chain, s)
        if v is not None:
            chain = chain + [(s, ">=", v)]
            line(f"+ {s}", chain)
    if trained:
        line("trained critic alone (data/summarization/critic)", [("trained_ok", ">=", 1.0)])
        line("shipped chain (examples/summarize_cpu.yaml): rules + coverage >= 0.2 + trained critic",
             rule + [("coverage", ">=", 0.2), ("trained_ok", ">=", 1.0)])


if __name__ == "__main__":
    raise SystemExit(main())
