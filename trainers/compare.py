"""Does one evaluated system beat another? Decided on meaning-aware numbers only.

BERT-iBLEU rewards rewording and tolerates lost meaning (shared/EVAL.md), and a student
can raise a rule chain's acceptance by drifting from its input, so neither decides here.
In order of trust:

1. the human P rate (same meaning, visibly reworded) from a scored blind sheet
   (:mod:`distill.trainers.sheet`), when both systems were judged;
2. else the share of outputs kept by the critic chain *and* ``eval.meaning_critics``
   (meaning critics alone would accept a copy: the chain's copy and well-formedness
   checks are what make "kept on meaning" mean "a paraphrase that keeps the meaning");
3. else no verdict: the line says what to add, and shows BERT-iBLEU and acceptance only
   for reference.
"""

from __future__ import annotations

from typing import Any

HUMAN = "human P rate (blind sheet)"
MEANING = "kept by the critic chain and the meaning critics"


def _human_p(row: dict[str, Any]) -> dict[str, float] | None:
    h = row.get("human")
    return h["rates"]["P"] if h and h.get("judged") else None


def beats(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Whether row ``a`` (a results.json model row) beats row ``b``: ``{"basis", "a", "b",
    "met" (True / False / None: undecided), "line"}``."""
    pa, pb = _human_p(a), _human_p(b)
    head = f"{a['name']} vs {b['name']}"
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
    if ma is not None and mb is not None:
        met = ma > mb
        line = (f"{head}, {MEANING}: {100 * ma:.1f}% vs {100 * mb:.1f}% ({100 * (ma - mb):+.1f} points) -> "
                f"{'met' if met else 'MISSED'} (no scored sheet for both; automatic judges only)")
        return {"basis": MEANING, "a": ma, "b": mb, "met": met, "line": line}
    ref = ", ".join(f"{label} {a['metrics'][k]:.3f} vs {b['metrics'][k]:.3f}"
                    for k, label in (("bert_ibleu", "BERT-iBLEU"), ("accepted", "critic acceptance")))
    line = (f"{head}: UNDECIDED, no meaning-aware number (score a blind sheet: `distill eval CONFIG --sheet N`, "
            f"then --score-sheet; or set eval.meaning_critics). For reference only: {ref}")
    return {"basis": None, "a": None, "b": None, "met": None, "line": line}


def round_lines(results: dict[str, Any]) -> list[str]:
    """One line per round k+1 vs round k among the ``student-round<k>`` rows."""
    rows = {r["name"]: r for r in results["models"]}
    students = sorted((int(n[len("student-round"):]), n) for n in rows
                      if n.startswith("student-round") and n[len("student-round"):].isdigit())
    return [beats(rows[nxt], rows[prev])["line"] for (_, prev), (_, nxt) in zip(students, students[1:])]
