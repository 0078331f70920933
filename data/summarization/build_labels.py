"""Build the hand-labelled summarization set (labels.jsonl) from real teacher output.

    python data/summarization/build_labels.py sheets RUN_DIR OUT_DIR --per-batch 60
        every distinct (document, summary) candidate of a `distill generate` folder, shuffled,
        cut into blind batches OUT_DIR/batch-NN.jsonl ({"id", "document", "summary"}: an opaque
        id, no source, no score) and a key OUT_DIR/key.jsonl kept apart; OUT_DIR/double.jsonl
        repeats every 6th item under a new id, for a second annotator (agreement)
    python data/summarization/build_labels.py merge OUT_DIR LABELS.jsonl
        joins OUT_DIR/labels-*.jsonl ({"id", "label", "note"}, one file per annotator) with the
        key: one row per candidate with its split (by document: 40% of documents are test)

The guideline the annotators follow is GUIDELINE.md beside this file; LABELS.md says who
labelled and how the splits were made.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from pathlib import Path

from distill.jsonl import read_objects

LABELS = ("G", "E", "U", "O")


def split_of(doc_key: str) -> str:
    """test for 40% of documents, train for 40%, dev for 20%, by a hash of the document."""
    h = int(hashlib.sha1(doc_key.encode()).hexdigest(), 16) % 10
    return "test" if h < 4 else "train" if h < 8 else "dev"


def candidates(run_dir: Path) -> list[dict]:
    from distill.critics.pipeline import detect_store

    seen, out = set(), []
    for r in detect_store(run_dir / "shards").iter_records():
        key = (r.input, r.output)
        if key in seen:
            continue
        seen.add(key)
        doc = str(r.metadata.get("id") or r.metadata.get("source_id"))
        out.append({"record_id": r.id, "doc_id": doc, "input": r.input, "output": r.output, "split": split_of(doc)})
    return out


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict]:
    return [obj for _, obj in read_objects(path)]


def sheets(run_dir: Path, out: Path, per_batch: int, seed: int) -> None:
    rows = candidates(run_dir)
    random.Random(seed).shuffle(rows)
    out.mkdir(parents=True, exist_ok=True)
    key, items = [], []
    for i, r in enumerate(rows):
        oid = hashlib.sha1(f"{seed}|{r['record_id']}".encode()).hexdigest()[:10]
        key.append({"id": oid, **r})
        items.append({"id": oid, "document": r["input"], "summary": r["output"]})
    doubles = [{"id": hashlib.sha1(f"double|{it['id']}".encode()).hexdigest()[:10], "document": it["document"],
                "summary": it["summary"], "of": it["id"]} for it in items[::6]]
    write_jsonl(out / "key.jsonl", key + [{"id": d["id"], "double_of": d["of"]} for d in doubles])
    for b in range(0, len(items), per_batch):
        write_jsonl(out / f"batch-{b // per_batch:02d}.jsonl", items[b:b + per_batch])
    write_jsonl(out / "double.jsonl", [{k: v for k, v in d.items() if k != "of"} for d in doubles])
    print(f"{len(items)} candidates in {-(-len(items) // per_batch)} batches, {len(doubles)} doubles -> {out}")


def merge(out: Path, labels_path: Path) -> None:
    key = {k["id"]: k for k in read_jsonl(out / "key.jsonl")}
    first: dict[str, dict] = {}
    second: dict[str, dict] = {}
    for f in sorted(out.glob("labels-*.jsonl")):
        annotator = f.stem.removeprefix("labels-")
        for row in read_jsonl(f):
            if row.get("label") not in LABELS or row.get("id") not in key:
                raise SystemExit(f"{f}: bad row {row}")
            k = key[row["id"]]
            if "double_of" in k:
                second[k["double_of"]] = {**row, "annotator": annotator}
            else:
                first[row["id"]] = {**row, "annotator": annotator}
    rows = []
    for oid, lab in first.items():
        k = key[oid]
        rows.append({"id": oid, "record_id": k["record_id"], "doc_id": k["doc_id"], "split": k["split"],
                     "input": k["input"], "output": k["output"], "label": lab["label"], "note": lab.get("note", ""),
                     "annotator": lab["annotator"],
                     **({"label_2": second[oid]["label"], "annotator_2": second[oid]["annotator"]}
                        if oid in second else {})})
    rows.sort(key=lambda r: r["record_id"])
    write_jsonl(labels_path, rows)
    both = [r for r in rows if "label_2" in r]
    agree = sum(r["label"] == r["label_2"] for r in both)
    counts = ", ".join(f"{lab} {sum(r['label'] == lab for r in rows)}" for lab in LABELS)
    print(f"{len(rows)} labelled ({counts}); "
          f"double-labelled {len(both)}, agreement {agree}/{len(both)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sheets")
    s.add_argument("run_dir", type=Path)
    s.add_argument("out", type=Path)
    s.add_argument("--per-batch", type=int, default=60)
    s.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("merge")
    m.add_argument("out", type=Path)
    m.add_argument("labels", type=Path)
    a = ap.parse_args()
    if a.cmd == "sheets":
        sheets(a.run_dir, a.out, a.per_batch, a.seed)
    else:
        merge(a.out, a.labels)


if __name__ == "__main__":
    main()
