"""The teacher's yield: the share of P (faithful, reworded paraphrases) among raw candidates,
per teacher setting, from the hand labels.

    python bench/teacher_yield.py --run "SmolLM2 few-shot T=0.8=runs/lab/t1" \
        --run "SmolLM2 few-shot T=0.3=runs/lab/yield/fewshot-t03" ...

Each run is a ``distill generate`` output; every raw sample counts (k samples of one input
that are the same text count k times, as they cost k samples), looked up by (x, y) in
data/paraphrase/real_labels.jsonl (labels are per unique pair). Rates come with 95% Wilson
intervals; tokens/s is the run's own (generate_stats.json), on whatever the machine was
doing at the time, so compare it only within one run of this script's inputs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from meaning_critics import LABELS, fmt  # noqa: E402


def run_rows(run: Path) -> list[tuple[str, str]]:
    out = []
    for f in sorted((run / "shards").glob("shard-*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                out.append((r["input"].strip(), r["output"].strip()))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labels", default=str(LABELS))
    p.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR (split at the last '=')")
    a = p.parse_args(argv)
    labels = {}
    for line in Path(a.labels).read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            labels[(r["x"].strip(), r["y"].strip())] = r["label"]
    print("| teacher setting | samples | labelled | P (yield) | C | M | D | unique |\n|---|---|---|---|---|---|---|---|")
    for spec in a.run:
        name, path = spec.rsplit("=", 1)
        rows = run_rows(Path(path))
        got = [labels[r] for r in rows if r in labels]
        c = Counter(got)
        n = len(got)
        print(f"| {name} | {len(rows)} | {n} | " + " | ".join(fmt(c[k], n) for k in "PCMD")
              + f" | {len(set(rows))} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
