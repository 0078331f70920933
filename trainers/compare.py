"""Does one evaluated system beat another? Decided on meaning-aware numbers only.

BERT-iBLEU rewards rewording and tolerates lost meaning (shared/EVAL.md), and a student
can raise a rule chain's acceptance by drifting from its input, so neither decides here.
In order of trust:

1. the human rate of the sheet's first label (P for paraphrases: same meaning, visibly
   reworded; G for summaries; A for commonsense) from a scored blind sheet
   (:mod:`distill.trainers.sheet`), when both systems were judged;
2. else the share of outputs kept by the critic chain *and* ``eval.meaning_critics``
   (meaning critics alone would accept a copy: the chain's copy and well-formedness
   checks are what make "kept on meaning" mean "a paraphrase that keeps the meaning");
3. else no verdict: the line says what to add, and shows BERT-iBLEU and acceptance only
   for reference.
"""

from __future__ import annotations

from typing import Any

MEANING = "kept by the critic chain and the meaning critics"


def _human_rate(row: dict[str, Any], good: str) -> dict[str, float] | None:
    h = row.get("human")
    return h["rates"].get(good) if h and h.get("judged") else None


def _reference(a: dict[str, Any], b: dict[str, Any]) -> str:
    """The automatic numbers both rows have, per eval set where the metrics are per set."""
    def flat(m: dict[str, Any]) -> dict[str, float]:
        out = {k: v for k, v in m.items() if isinstance(v, (int, float))}
        for name, sub in m.items():
            if isinstance(sub, dict) and isinstance(sub.get("accepted"), (int, float)):
                out[f"accepted on {name}"] = sub["accepted"]
        return out

    fa, fb = flat(a["metrics"]), flat(b["metrics"])
    keys = [k for k in ("bert_ibleu", "accepted") if k in fa and k in fb] + \
        [k for k in fa if k.startswith("accepted on ") and k in fb]
    names = {"bert_ibleu": "BERT-iBLEU", "accepted": "critic acceptance"}
    return ", ".join(f"{names.get(k, k)} {fa[k]:.3f} vs {fb[k]:.3f}" for k in keys) or "none"


def beats(a: dict[str, Any], b: dict[str, Any], good: str = "P") -> dict[str, Any]:
    """Whether row ``a`` (a results.json model row) beats row ``b``: ``{"basis", "a", "b",
    "met" (True / False / None: undecided), "line"}``. ``good``: the sheet label that counts."""
    pa, pb = _human_rate(a, good), _human_rate(b, good)
    head = f"{a['name']} vs {b['name']}"
    HUMAN = f"human {good} rate (blind sheet)"
    if pa is not None and pb is not None:
        overlap = pa["low"] <= pb["high"] and pb["low"] <= pa["high"]
        met = pa["rate"] > pb["rate"]
        line = (f"{head}, {HUMAN}, {a['human']['judged']} and {b['human']['judged']} judged: "
                f"{100 * pa['rate']:.1f}% [{100 * pa['low']:.1f}, {100 * pa['high']:.1f}] vs "
                f"{100 * pb['rate']:.1f}% [{100 * pb['low']:.1f}, {100 * pb['high']:.1f}] "
                f"({100 * (pa['rate'] - pb['rate']):+.1f} points) -> {'met' if met else 'MISSED'}"
                + (" (the 95% intervals overlap: not a clear difference)" if overlap else ""))
        return {"basis": HUMAN, "a": pa["rate"], "b": pb["rate"], "met": met, "line": line}
    ma, mb = a["metrics"].get("accepted_and_meaning"), b["metrics"].get("accepted_and_meaning")
    if isinstance(ma, (int, float)) and isinstance(mb, (int, float)):
        met = ma > mb
        line = (f"{head}, {MEANING}: {100 * ma:.1f}% vs {100 * mb:.1f}% ({100 * (ma - mb):+.1f} points) -> "
                f"{'met' if met else 'MISSED'} (no scored sheet for both; automatic judges only)")
        return {"basis": MEANING, "a": ma, "b": mb, "met": met, "line": line}
    line = (f"{head}: UNDECIDED, no meaning-aware number (score a blind sheet: `distill eval CONFIG --sheet N`, "
            f"then --score-sheet; or set eval.meaning_critics). For reference only: {_reference(a, b)}")
    return {"basis": None, "a": None, "b": None, "met": None, "line": line}


def round_lines(results: dict[str, Any]) -> list[str]:
    """One line per round k+1 vs round k among the ``student-round<k>`` rows."""
    rows = {r["name"]: r for r in results["models"]}
    good = next(iter(results.get("sheet_labels") or {"P": ""}))
    students = sorted((int(n[len("student-round"):]), n) for n in rows
                      if n.startswith("student-round") and n[len("student-round"):].isdigit())
    return [beats(rows[nxt], rows[prev], good)["line"] for (_, prev), (_, nxt) in zip(students, students[1:])]
