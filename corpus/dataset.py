"""Records -> rows with a stated schema, group-wise splits, and the on-disk dataset.

A corpus folder holds the same rows twice: ``dataset/`` (``DatasetDict.save_to_disk``,
what :func:`load_corpus` reads) and ``data/<split>-NNNNN-of-MMMMM.parquet`` (the Hub's
layout, what the card's ``configs:`` points at). Every configured split exists, with 0
rows if no group landed in it, so loaders never crash on a tiny run.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from distill.critics.dedup import normalize

from distill.errors import DistillError
from distill.record import Record

#: what each column holds; the card prints this table and ``features`` states the types
FIELD_DOCS = {
    "id": "the record id, stable across reruns of the same generation (context, x sample, y sample)",
    "task": "the task that produced the pair (e.g. paraphrase)",
    "input": "x: the source text the student reads",
    "output": "y: the target text the student learns to write",
    "teacher": "the model that wrote the output",
    "round": "distillation round (0: the first teacher; k: the student of round k-1)",
    "group": "the split group (context id, else source id, else normalised input); a group is never in two splits",
    "scores": "critic scores, one field per score name (null where a critic did not score the record)",
    "metadata": "everything else the earlier stages recorded, as a JSON string",
}


def features(score_keys: list[str]):
    from datasets import Features, Value

    return Features({
        "id": Value("string"), "task": Value("string"), "input": Value("string"), "output": Value("string"),
        "teacher": Value("string"), "round": Value("int64"), "group": Value("string"),
        # subtle: Arrow cannot write a struct with no fields to Parquet; a run whose critics wrote no
        # score still gets a (null) column, so the schema is the same for every run
        "scores": {k: Value("float64") for k in score_keys} or {"none": Value("float64")},
        "metadata": Value("string"),
    })


def group_of(r: Record) -> str:
    """Near-identical items share a context (or source), so splitting by it keeps them together."""
    for key in ("context_id", "source_id"):
        v = r.metadata.get(key)
        if v not in (None, ""):
            return str(v)
    return "input:" + normalize(r.input)


def to_row(r: Record, score_keys: list[str]) -> dict[str, Any]:
    return {"id": r.id, "task": r.task, "input": r.input, "output": r.output, "teacher": r.teacher or "",
            "round": int(r.round), "group": group_of(r),
            "scores": {k: (float(r.scores[k]) if k in r.scores else None) for k in score_keys} or {"none": None},
            "metadata": json.dumps(r.metadata, ensure_ascii=False, sort_keys=True)}


def _rank(group: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}\0{group}".encode()).hexdigest()


def assign_splits(groups: list[str], splits: dict[str, float], seed: int) -> dict[str, str]:
    """Group -> split name. Groups are ordered by a hash of (seed, group), so the result
    depends only on the set of groups and the seed. Counted splits (value > 1) take their
    groups first, in config order; the rest is shared by fraction, largest remainder
    first, and every fractional split gets at least one group when there are enough."""
    order = sorted(set(groups), key=lambda g: _rank(g, seed))
    sizes: dict[str, int] = {}
    left = len(order)
    for name, v in splits.items():
        if v > 1:
            sizes[name] = min(int(v), left)
            left -= sizes[name]
    fracs = {n: v for n, v in splits.items() if v <= 1}
    if fracs:
        exact = {n: v * left for n, v in fracs.items()}
        alloc = {n: math.floor(x) for n, x in exact.items()}
        for n in sorted(fracs, key=lambda n: (alloc[n] - exact[n], list(fracs).index(n)))[: left - sum(alloc.values())]:
            alloc[n] += 1
        if left >= len(fracs):
            for n in fracs:
                if alloc[n] == 0:
                    donor = max(alloc, key=lambda m: alloc[m])
                    alloc[donor] -= 1
                    alloc[n] = 1
        sizes.update(alloc)
    out: dict[str, str] = {}
    i = 0
    for name in splits:
        for g in order[i : i + sizes.get(name, 0)]:
            out[g] = name
        i += sizes.get(name, 0)
    return out


def build_dataset_dict(records: list[Record], split_names: list[str], assignment: dict[str, str], score_keys: list[str]):
    from datasets import Dataset, DatasetDict

    feats = features(score_keys)
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in split_names}
    for r in sorted(records, key=lambda r: r.id):
        row = to_row(r, score_keys)
        rows[assignment[row["group"]]].append(row)
    return DatasetDict({s: Dataset.from_list(rows[s], features=feats) if rows[s] else
                        Dataset.from_dict({k: [] for k in feats}, features=feats) for s in split_names})


def parquet_files(split: str, n_rows: int, rows_per_shard: int) -> list[str]:
    n = max(1, math.ceil(n_rows / rows_per_shard))
    return [f"data/{split}-{i:05d}-of-{n:05d}.parquet" for i in range(n)]


def write_parquet(dd, folder: Path, rows_per_shard: int) -> dict[str, list[str]]:
    """``data/<split>-NNNNN-of-MMMMM.parquet`` under ``folder``; returns split -> relative paths."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    out = {}
    for split, ds in dd.items():
        names = parquet_files(split, len(ds), rows_per_shard)
        for i, name in enumerate(names):
            ds.shard(len(names), i, contiguous=True).to_parquet(str(folder / name))
        out[split] = names
    return out


def load_corpus(path: str | Path):
    """The corpus as a ``datasets.DatasetDict``: from ``<path>/dataset``, else from the
    Parquet files under ``<path>/data``."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    p = Path(path)
    if (p / "dataset" / "dataset_dict.json").is_file():
        return load_from_disk(str(p / "dataset"))
    files = sorted((p / "data").glob("*.parquet")) if (p / "data").is_dir() else []
    if not files:
        raise DistillError(f"no corpus in {p}: neither {p / 'dataset'} nor Parquet files in {p / 'data'}; "
                           f"run `distill corpus` first")
    by_split: dict[str, list[str]] = {}
    for f in files:
        by_split.setdefault(f.name.rsplit("-", 3)[0] if "-of-" in f.name else f.stem, []).append(str(f))
    return DatasetDict({s: load_dataset("parquet", data_files=fs, split="train") for s, fs in by_split.items()})
