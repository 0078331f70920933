"""Does the student beat its teacher? And what does our training path cost?

    python bench/student.py                                  # examples/cpu_run.yaml (2 rounds)
    python bench/student.py CONFIG --set loop.rounds=3 --skip-throughput

Prints, from one run:
1. every round's student against the teacher prompted zero-shot and few-shot (and the copy
   baseline) on the held-out inputs: BERT-iBLEU and critic acceptance, with the length
   ratio and copy rate beside them so a score bought by dropping content shows. The
   numbers come from `distill run` on CONFIG, which this script runs (or resumes: a
   finished run is only read back, nothing is regenerated or retrained).
2. the targets: round-1 student > teacher few-shot, round 2 > round 1, decided on
   meaning-aware numbers only (distill.trainers.compare: the human P rate of a scored blind
   sheet, else acceptance by the critic chain and eval.meaning_critics, else undecided;
   never BERT-iBLEU). Each is reported as met, missed or undecided with the margin and the
   number used; nothing is tuned here.
3. training throughput (non-padding tokens/s) of `distill train` against a plain torch
   loop on the same data and steps, side by side (bench/train_throughput.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def rows_by_name(eval_result: dict) -> dict[str, dict]:
    return {m["name"]: m["metrics"] for m in eval_result["models"]}


def compare(eval_result: dict, a: str, b: str) -> list[str]:
    """The line saying whether model ``a`` beats ``b``, and on which meaning-aware number."""
    from distill.trainers.compare import beats

    rows = {m["name"]: m for m in eval_result["models"]}
    return ["  " + beats(rows[a], rows[b])["line"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config", nargs="?", default=str(Path(__file__).parents[1] / "examples" / "cpu_run.yaml"))
    ap.add_argument("-s", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--skip-throughput", action="store_true", help="only the quality comparison")
    ap.add_argument("--steps", type=int, default=12, help="throughput: optimizer steps per side")
    args = ap.parse_args(argv)

    from distill.config import load_config
    from distill.loop import run_all

    cfg = load_config(args.config, args.overrides)
    result = run_all(cfg, progress=True)
    metrics = rows_by_name(result["eval"])
    cols = [("bert_ibleu", "BERT-iBLEU", ".3f"), ("accepted", "accepted", ".1%"), ("length_ratio", "len ratio", ".2f"),
            ("copy", "copy", ".1%"), ("degenerate", "degenerate", ".1%")]
    print(f"\nheld-out inputs: {result['eval']['inputs']['count']} ({result['eval']['inputs']['source']})")
    print(f"{'model':<24}" + "".join(f"{c[1]:>12}" for c in cols))
    for name, m in metrics.items():
        print(f"{name:<24}" + "".join(f"{format(m[k], f):>12}" for k, _, f in cols))
    teacher_few = next((n for n in metrics if "few-shot" in n), None)
    students = [f"student-round{r['round']}" for r in result["rounds"]]
    print("\ntargets:")
    if teacher_few:
        print("\n".join(compare(result["eval"], students[0], teacher_few)))
    for prev, nxt in zip(students, students[1:]):
        print("\n".join(compare(result["eval"], nxt, prev)))

    if not args.skip_throughput:
        from train_throughput import measure

        r = measure(cfg.train.model, steps=args.steps, batch_size=cfg.train.batch_size)
        print(f"\ntraining throughput ({r['steps']} steps, batch {r['batch_size']}, {r['pairs']} pairs, median of "
              f"{r['repeats']} alternating runs):")
        print(f"  distill train {r['ours_tok_s']} tok/s, plain torch loop {r['plain_tok_s']} tok/s, "
              f"ratio {r['ratio']} (steady state: {r['ours_steady_tok_s']} vs {r['plain_steady_tok_s']}, "
              f"ratio {r['steady_ratio']})")
        print(json.dumps({k: r[k] for k in ("ours_tok_s_each", "plain_tok_s_each")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
