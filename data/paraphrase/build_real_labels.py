"""How data/paraphrase/real_labels.jsonl was made (kept to make it again, or a new set).

1. ``sheets``: pool the candidates of one or more ``distill generate`` runs (each with its
   ``distill filter`` output, so every candidate carries today's chain's verdict), drop exact
   repeats of (x, y) within a run, shuffle, and cut blind batches for labellers: each item is
   an opaque id, x and y only (no source, no critic verdict, no score). A fraction of items is
   put in two batches, to measure agreement. The key (item -> run, record id, verdict) is
   written apart.
2. ``merge``: read the filled batches and the key; where two labellers disagree the item is
   adjudicated (``--adjudicated`` file) or, failing that, takes the stricter label (M over D
   over C over P) and the union of kinds; split by source sentence (a hash of x) into
   train / dev / test; write real_labels.jsonl and print counts and agreement.

    python data/paraphrase/build_real_labels.py sheets --run teacher-fewshot=runs/lab/teacher \
        --run student-r1=runs/lab/student --batches 4 --overlap 80 --out runs/lab/sheets
    python data/paraphrase/build_real_labels.py merge --sheets runs/lab/sheets --out data/paraphrase/real_labels.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from collections import Counter

import yaml
from pathlib import Path

LABELS = ("P", "C", "M", "D")
KINDS = ("added", "dropped", "fact", "role", "number", "time", "negation", "attribution")
STRICT = {"M": 3, "D": 2, "C": 1, "P": 0}


def _jsonl(path: Path) -> list[dict]:
    return [obj for _, obj in read_objects(path)]


def run_candidates(source: str, run: Path) -> list[dict]:
    """Every generated record of ``run`` with today's chain's verdict from its filter output."""
    verdict: dict[str, str] = {}
    for f in sorted((run / "filtered" / "rejects").glob("*.jsonl")):
        for row in _jsonl(f):
            verdict[row["record"]["id"]] = f"dropped:{row['reason']}"
    out, seen = [], set()
    for f in sorted((run / "shards").glob("shard-*.jsonl")):
        for r in _jsonl(f):
            pair = (r["input"].strip(), r["output"].strip())
            if pair in seen:
                continue
            seen.add(pair)
            out.append({"source": source, "record_id": r["id"], "x": pair[0], "y": pair[1],
                        "verdict": verdict.get(r["id"], "kept")})
    return out


def keep_chain(spec: dict[str, dict], pool: list[dict]) -> list[dict]:
    """The candidates every critic of ``spec`` (name -> critic config) keeps."""
    from distill.critics.registry import build_critic
    from distill.record import Record

    alive = list(pool)
    for name, cfg in spec.items():
        critic = build_critic(cfg["type"], {k: v for k, v in cfg.items() if k != "type"}, where=name)
        recs = [Record(id=str(i), task="paraphrase", input=c["x"], output=c["y"]) for i, c in enumerate(alive)]
        verdicts = [v for j in range(0, len(recs), critic.batch_size) for v in critic.judge_batch(recs[j:j + critic.batch_size])]
        alive = [c for c, v in zip(alive, verdicts) if v is True]
    return alive


from distill.critics.labels import split_of  # noqa: E402  (one split rule for every labels file)
from distill.jsonl import read_objects  # noqa: E402


def cmd_sheets(a) -> None:
    pool: list[dict] = []
    for spec in a.run:
        source, path = spec.split("=", 1)
        pool += run_candidates(source, Path(path))
    if a.keep_chain:  # label only what a chain keeps: enough to measure any stricter chain's precision
        spec = yaml.safe_load(Path(a.keep_chain).read_text())
        kept = keep_chain(spec, pool)
        print(f"{a.keep_chain}: {len(kept)} of {len(pool)} candidates kept")
        pool = [{**c, "sample": "chain-kept", "stratum": ",".join(spec)} for c in kept]
    rng = random.Random(a.seed)
    rng.shuffle(pool)
    if a.limit:
        pool = pool[: a.limit]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    key = {}
    batches: list[list[str]] = [[] for _ in range(a.batches)]
    for i, c in enumerate(pool):
        item = f"{a.prefix}{i:05d}"
        key[item] = c
        batches[i % a.batches].append(item)
    # overlap: the first `overlap` items of each batch are also given to the next labeller
    per = a.overlap // a.batches
    for b in range(a.batches):
        batches[(b + 1) % a.batches] += batches[b][:per]
    for b, items in enumerate(batches):
        rng.shuffle(items)
        (out / f"batch-{b}.jsonl").write_text("".join(
            json.dumps({"item": it, "x": key[it]["x"], "y": key[it]["y"]}, ensure_ascii=False) + "\n" for it in items))
    (out / "key.json").write_text(json.dumps(key, indent=1, ensure_ascii=False))
    print(f"{len(pool)} candidates -> {a.batches} batches of ~{len(batches[0])} ({per * a.batches} items twice);"
          f" verdicts: {Counter(c['verdict'].split(':')[0] for c in pool)}; sources: {Counter(c['source'] for c in pool)}")


def read_labels(path: Path) -> dict[str, dict]:
    out = {}
    for n, row in read_objects(path):
        lab = str(row.get("label", "")).strip().upper()
        kinds = [k for k in row.get("kinds") or [] if k]
        if lab not in LABELS or any(k not in KINDS for k in kinds):
            raise SystemExit(f"{path}:{n}: bad label {row.get('label')!r} / kinds {kinds}")
        out[row["item"]] = {"label": lab, "kinds": sorted(set(kinds)) if lab == "M" else [],
                            "note": row.get("note", ""), "labeller": path.stem}
    return out


def kappa(a: list[str], b: list[str]) -> float:
    n = len(a)
    po = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb[k] for k in LABELS) / n**2
    return (po - pe) / (1 - pe) if pe < 1 else 1.0


def chain_verdicts(config: str, rows: list[dict]) -> list[str]:
    """"kept" or "dropped:<reason>" of the first critic of ``config``'s chain that drops the pair."""
    from distill.config import load_config
    from distill.critics.registry import build_critic
    from distill.record import Record

    cfg = load_config(config)
    recs = [Record(id=r["id"], task="paraphrase", input=r["x"], output=r["y"]) for r in rows]
    out = ["kept"] * len(rows)
    for spec in cfg.filter.critics:
        critic = build_critic(spec.type, spec.kwargs(), teacher=cfg.teacher, encoder=cfg.filter.dedup.encoder)
        todo = [i for i, v in enumerate(out) if v == "kept"]
        for j in range(0, len(todo), critic.batch_size):
            idx = todo[j:j + critic.batch_size]
            for i, v in zip(idx, critic.judge_batch([recs[i] for i in idx])):
                if v is not True:
                    out[i] = f"dropped:{v[1]}"
    return out


def cmd_merge(a) -> None:
    key: dict[str, dict] = {}
    votes: dict[str, list[dict]] = {}
    for sheets in map(Path, a.sheets):
        key.update(json.loads((sheets / "key.json").read_text()))
        for f in sorted(sheets.glob("batch-*.labels.jsonl")):
            for item, lab in read_labels(f).items():
                votes.setdefault(item, []).append(lab)
    adj = read_labels(Path(a.adjudicated)) if a.adjudicated else {}
    pairs = [(v[0]["label"], v[1]["label"]) for v in votes.values() if len(v) >= 2]
    rows = []
    for item, c in key.items():
        if item not in votes:
            continue
        vs = votes[item]
        if item in adj:
            final = adj[item]
        else:
            final = max(vs, key=lambda v: STRICT[v["label"]])
            final = {**final, "kinds": sorted({k for v in vs if v["label"] == "M" for k in v["kinds"]})
                     if final["label"] == "M" else []}
        rows.append({"id": item, "x": c["x"], "y": c["y"], "label": final["label"], "kinds": final["kinds"],
                     "source": c["source"], "group": hashlib.sha1(c["x"].strip().lower().encode()).hexdigest()[:10],
                     "split": split_of(c["x"]), "verdict_before": c["verdict"],
                     "sample": c.get("sample", "all"), **({"stratum": c["stratum"]} if "stratum" in c else {}),
                     "labellers": [v["labeller"] for v in vs], "agree": len({v["label"] for v in vs}) == 1,
                     "note": final.get("note", "")})
    rows.sort(key=lambda r: r["id"])
    if a.verdict_config:
        for r, v in zip(rows, chain_verdicts(a.verdict_config, rows)):
            r["verdict_before"] = v
    Path(a.out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{len(rows)} labelled -> {a.out}")
    print("labels:", dict(Counter(r["label"] for r in rows)))
    print("splits:", dict(Counter(r["split"] for r in rows)))
    print("by source:", {s: dict(Counter(r["label"] for r in rows if r["source"] == s))
                         for s in sorted({r["source"] for r in rows})})
    print("kept by today's chain:", dict(Counter(r["label"] for r in rows if r["verdict_before"] == "kept")))
    print("M kinds:", dict(Counter(k for r in rows for k in r["kinds"])))
    if pairs:
        agree = sum(x == y for x, y in pairs) / len(pairs)
        print(f"double-labelled: {len(pairs)}, raw agreement {agree:.2f}, Cohen's kappa "
              f"{kappa([p[0] for p in pairs], [p[1] for p in pairs]):.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sheets")
    s.add_argument("--run", action="append", required=True, help="SOURCE=RUN_DIR (a generate run with filtered/)")
    s.add_argument("--batches", type=int, default=4)
    s.add_argument("--overlap", type=int, default=80, help="items labelled twice, in all")
    s.add_argument("--limit", type=int, default=None)
    s.add_argument("--keep-chain", default=None, help="YAML {name: critic spec}: put only what all of them keep on the sheets")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--prefix", default="L", help="item id prefix (distinct per sheet set)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_sheets)
    m = sub.add_parser("merge")
    m.add_argument("--sheets", required=True, nargs="+", help="sheet folders (each with key.json)")
    m.add_argument("--adjudicated", default=None)
    m.add_argument("--verdict-config", default=None,
                   help="a config whose filter.critics give each pair's verdict_before (e.g. the old cpu_run chain)")
    m.add_argument("--out", required=True)
    m.set_defaults(func=cmd_merge)
    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
