"""Lexical constraints (task.constraints) on the CPU default teacher: throughput and how often
a paraphrase adds a name, number or time, with and without them.

    python bench/constraints.py                        # first 40 inputs of builtin:lee-train, k=4
    python bench/constraints.py --inputs 8 --k 2 --json out.json

The prompt is examples/cpu_run.yaml's (few-shot, temperature 0.8, top-p 0.95, 64 tokens). The
constrained side bans new names, numbers and times. Additions are counted by the `entities`
critic (critics/consistency.py: ent_added, num_added, time_added > 0), which is not the rule
the decoder enforces, so it can still find some on the constrained side (a lower-case
organisation, a number phrase). Sides alternate in blocks of inputs (ABAB) so load on the
machine hits both; both sides use the same per-sample seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=40)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--block", type=int, default=20, help="inputs per alternating block")
    ap.add_argument("--config", default="examples/cpu_run.yaml")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from distill.config import load_config
    from distill.critics.consistency import ConsistencyCritic
    from distill.generator.backends import make_backend
    from distill.generator.backends.base import SamplingParams
    from distill.generator.constraints import violations
    from distill.generator.tasks import build_task
    from distill.generator.tasks.paraphrase import clean_answer
    from distill.record import Record

    cfg = load_config(args.config, [f"task.limit={args.inputs}", f"task.k={args.k}",
                                    "task.constraints={ban_new_names: true, ban_new_numbers: true, ban_new_times: true}"])
    task = build_task(cfg.task, cfg.seed)
    xs = [r.input for r in task.seeds()]
    s = cfg.task.sampling
    params = SamplingParams(max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                            seed=cfg.seed)
    critic = ConsistencyCritic(checks=["entities", "numbers", "times"])
    sides = {"free": {"tokens": 0, "seconds": 0.0, "rows": []}, "constrained": {"tokens": 0, "seconds": 0.0, "rows": []}}
    with make_backend(cfg.teacher) as backend:
        backend.lexicon()  # read the vocabulary once, outside the timing
        for start in range(0, len(xs), args.block):
            block = xs[start : start + args.block]
            for side, out in sides.items():
                cons = [task.constraint(x) for x in block] if side == "constrained" else None
                t0 = time.perf_counter()
                comps = backend.generate([task.messages(x) for x in block], args.k, params, cons)
                out["seconds"] += time.perf_counter() - t0
                for x, cs, c in zip(block, comps, cons or [None] * len(block)):
                    for co in cs:
                        out["tokens"] += co.completion_tokens
                        y = clean_answer(co.text)
                        rec = Record(id="b", task="paraphrase", input=x, output=y)
                        critic.judge(rec)
                        out["rows"].append({"x": x, "y": y, "finish": co.finish_reason, **rec.scores,
                                            "leaks": violations(y, task.constraint(x)) if c else None})
    report = {}
    for side, out in sides.items():
        rows, n = out["rows"], len(out["rows"])
        share = lambda f: round(sum(1 for r in rows if f(r)) / n, 3)  # noqa: E731
        report[side] = {
            "samples": n, "completion_tokens": out["tokens"], "seconds": round(out["seconds"], 1),
            "tokens_per_second": round(out["tokens"] / out["seconds"], 1),
            "share_name_added": share(lambda r: r["ent_added"] > 0),
            "share_number_added": share(lambda r: r["num_added"] > 0),
            "share_time_added": share(lambda r: r["time_added"] > 0),
            "share_any_added": share(lambda r: r["ent_added"] + r["num_added"] + r["time_added"] > 0),
            "share_copy": share(lambda r: r["y"].strip().lower() == r["x"].strip().lower()),
            "share_cut_by_max_tokens": share(lambda r: r["finish"] == "length"),
        }
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"report": report, "rows": {k: v["rows"] for k, v in sides.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
