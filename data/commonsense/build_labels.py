"""Blind labelling sheets of real commonsense inferences, and the merge of their labels into
``labels.jsonl`` (the binary format ``distill critic train`` reads).

    python data/commonsense/build_labels.py sheets FILTER_DIR OUT_DIR --n 600 --batches 4 --overlap 60
    python data/commonsense/build_labels.py merge OUT_DIR data/commonsense/labels.jsonl

``sheets`` samples ``n`` inferences that the form critic keeps (``FILTER_DIR/critics`` of a filter run:
what the trained critic will be asked about), in a seeded order, and writes ``batch-K.jsonl``
sheets with opaque ids and only the event, the relation and the inference (no teacher, no
score), plus ``key.jsonl``; ``overlap`` items appear in two batches, for agreement. A labeller
adds ``label``: ``A`` (accept) or ``R`` (reject) and, for R, ``kind`` (see LABELS.md).
``merge`` joins the labelled batches with the key; the split is by event (a hash of it), so
every inference of one event lands in one split; the first batch's label of an overlap item
is kept and agreement (and Cohen's kappa) is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

from distill.jsonl import read_objects

KINDS = ("wrong_relation", "implausible", "unrelated", "contradicts", "malformed", "vague")


def _split(event: str) -> str:
    from distill.critics.labels import split_of

    return split_of(event)


def sheets(run: Path, out: Path, n: int, batches: int, overlap: int, seed: int) -> None:
    from distill.shards import ShardStore

    recs = list(ShardStore(run / "critics").iter_records())
    rng = random.Random(seed)
    rng.shuffle(recs)
    pick = recs[:n]
    out.mkdir(parents=True, exist_ok=True)
    key = []
    items = []
    for r in pick:
        oid = hashlib.sha1(f"{seed}:{r.id}".encode()).hexdigest()[:10]
        key.append({"oid": oid, "id": r.id, "x": r.input, "y": r.output, "event": r.metadata["event"],
                    "relation": r.metadata["relation"]})
        items.append({"oid": oid, "event": r.metadata["event"], "relation": r.metadata["relation"],
                      "inference": r.output})
    per = -(-len(items) // batches)
    parts = [items[i * per:(i + 1) * per] for i in range(batches)]
    shared = items[:overlap]  # batch 0's first items again in the last batch
    parts[-1] = parts[-1] + shared
    for k, part in enumerate(parts):
        rng.shuffle(part)
        (out / f"batch-{k}.jsonl").write_text("".join(json.dumps(it, ensure_ascii=False) + "\n" for it in part))
    (out / "key.jsonl").write_text("".join(json.dumps(k, ensure_ascii=False) + "\n" for k in key))
    print(f"{len(items)} items in {batches} batches ({overlap} twice) under {out}")


def merge(folder: Path, dest: Path) -> None:
    key = {k["oid"]: k for _, k in read_objects(folder / "key.jsonl")}
    got: dict[str, list[dict]] = {}
    for p in sorted(folder.glob("batch-*.labelled.jsonl")):
        for n, row in read_objects(p):
            if row.get("label") not in ("A", "R"):
                sys.exit(f"{p} line {n}: label must be A or R, not {row.get('label')!r}")
            got.setdefault(row["oid"], []).append(row)
    pairs = [(v[0]["label"], v[1]["label"]) for v in got.values() if len(v) > 1]
    if pairs:
        agree = sum(a == b for a, b in pairs) / len(pairs)
        pa = sum(a == "A" for a, _ in pairs) / len(pairs)
        pb = sum(b == "A" for _, b in pairs) / len(pairs)
        pe = pa * pb + (1 - pa) * (1 - pb)
        kappa = (agree - pe) / (1 - pe) if pe < 1 else 1.0
        print(f"double-labelled {len(pairs)}: agreement {agree:.3f}, Cohen's kappa {kappa:.3f}")
    rows = []
    for oid, labels in got.items():
        k, first = key[oid], labels[0]
        rows.append({"id": k["id"], "x": k["x"], "y": k["y"], "label": int(first["label"] == "A"),
                     "kind": "accept" if first["label"] == "A" else (first.get("kind") or "implausible"),
                     "split": _split(k["event"]), "group": k["event"], "relation": k["relation"]})
    rows.sort(key=lambda r: r["id"])
    dest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    by = {s: sum(r["split"] == s for r in rows) for s in ("train", "dev", "test")}
    print(f"{len(rows)} rows -> {dest}: {sum(r['label'] for r in rows)} accepted; splits {by}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sheets")
    s.add_argument("run", type=Path)
    s.add_argument("out", type=Path)
    s.add_argument("--n", type=int, default=600)
    s.add_argument("--batches", type=int, default=4)
    s.add_argument("--overlap", type=int, default=60)
    s.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("merge")
    m.add_argument("folder", type=Path)
    m.add_argument("dest", type=Path)
    a = ap.parse_args()
    if a.cmd == "sheets":
        sheets(a.run, a.out, a.n, a.batches, a.overlap, a.seed)
    else:
        merge(a.folder, a.dest)


if __name__ == "__main__":
    main()
