"""The consistency critic (`entities`) on a hand-labelled pairs file: how often it drops a
pair that should be kept (false alarms) and how often it catches each reject kind.

    python bench/consistency_labels.py                                   # data/paraphrase/labels.jsonl
    python bench/consistency_labels.py data/paraphrase/real_labels.jsonl --show-false-alarms
    python bench/consistency_labels.py --set checks='[entities,times]' --set max_dropped=1

Reads both label formats: labels.jsonl (``label`` 1 = keep, 0 = reject, one ``kind``) and
real_labels.jsonl (``label`` P = keep, C/M/D = reject, ``kinds`` for M). A row counts
under each of its kinds (M rows under "M:<kind>", others under their label or kind).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import yaml

from distill.critics.registry import build_critic
from distill.errors import DistillError
from distill.record import Record


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise DistillError(f"labels file not found: {path}")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            x, y, label = d["x"], d["y"], d["label"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DistillError(f"{path} line {n}: not a labels row with x, y, label ({e})") from None
        if label in (1, "P"):
            keep, kinds = True, ["keep"]
        elif label in (0, "C", "D"):
            keep, kinds = False, [d.get("kind") or str(label)]
        elif label == "M":
            keep, kinds = False, [f"M:{k}" for k in d.get("kinds") or ["?"]]
        else:
            raise DistillError(f"{path} line {n}: label must be 0, 1, P, C, M or D, got {label!r}")
        rows.append({"id": d.get("id", str(n)), "x": x, "y": y, "keep": keep, "kinds": kinds,
                     "split": d.get("split", "")})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("labels", nargs="?", default="data/paraphrase/labels.jsonl")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="critic option (YAML value)")
    ap.add_argument("--split", default=None, help="only rows of this split")
    ap.add_argument("--show-false-alarms", action="store_true", help="print every dropped keep pair")
    ap.add_argument("--show-caught", action="store_true", help="print every dropped reject pair")
    a = ap.parse_args(argv)
    try:
        rows = read_rows(Path(a.labels))
        opts = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in a.set)}
        critic = build_critic("entities", opts, where="--set")
    except DistillError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = [r for r in rows if a.split is None or r["split"] == a.split]
    seen, dropped, reasons = Counter(), Counter(), Counter()
    for r in rows:
        v = critic.judge(Record(id=r["id"], task="paraphrase", input=r["x"], output=r["y"]))
        why = None if v is True else v[1]
        for k in r["kinds"]:
            seen[k] += 1
            dropped[k] += why is not None
        if why:
            reasons[why.split(":")[0]] += 1
            if (r["keep"] and a.show_false_alarms) or (not r["keep"] and a.show_caught):
                print(f"  [{','.join(r['kinds'])}] {why}\n    x: {r['x']}\n    y: {r['y']}")
    print(f"{a.labels}: {len(rows)} rows; critic options {opts or 'default'}")
    print(f"{'kind':<22}{'rows':>6}{'dropped':>9}{'rate':>8}")
    for k in ["keep"] + sorted(k for k in seen if k != "keep"):
        if seen[k]:
            label = "keep (false alarms)" if k == "keep" else k
            print(f"{label:<22}{seen[k]:>6}{dropped[k]:>9}{dropped[k] / seen[k]:>8.1%}")
    print("reasons: " + ", ".join(f"{k} {v}" for k, v in reasons.most_common()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
