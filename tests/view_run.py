"""A finished run folder for the ``distill view`` tests, made by the project's own stages from
real teacher output: the candidates of ``data/paraphrase/real_labels.jsonl`` (SmolLM2 and
Gemma samples, as the labellers saw them) written as generate shards, then the real
``distill filter`` (rule critics, exact dedup) and ``distill corpus`` (with plots)."""

from __future__ import annotations

import json
from pathlib import Path

from distill.config import load_config
from distill.corpus.build import run_corpus
from distill.critics.pipeline import run_filter
from distill.record import Record
from distill.shards import ShardStore

LABELS = Path(__file__).resolve().parents[1] / "data" / "paraphrase" / "real_labels.jsonl"
FILTER = ["filter.critics=[{type: wellformed}, {type: copy}, {type: length_ratio, min_ratio: 0.85, max_ratio: 1.25}, "
          "{type: entities}]"]


def make_run(root: Path, n: int = 80, per_shard: int = 20, plots: bool = True) -> Path:
    rows = [json.loads(line) for line in LABELS.read_text().splitlines()[:n]]
    store = ShardStore(root / "shards")
    recs = [Record(id=f"ctx{i // 4:06d}-{i % 4:03d}-{(i + 1) % 4:03d}", task="paraphrase", input=r["x"], output=r["y"],
                   teacher="transformers:SmolLM2-135M-Instruct", metadata={"context_id": f"ctx{i // 4:06d}"})
            for i, r in enumerate(rows)]
    shards = [recs[i : i + per_shard] for i in range(0, len(recs), per_shard)]
    for i, part in enumerate(shards):
        store.write(i, part, {"counts": {"pairs": len(part)}})
    (root / "manifest.json").write_text(json.dumps({
        "status": "complete", "shards_total": len(shards), "teacher_model_id": "transformers:SmolLM2-135M-Instruct",
        "command": ["distill", "generate"], "resolved_task": {"name": "paraphrase_pairs", "k": 4},
        "config": {"budget": {"max_completion_tokens": None, "max_cost": None}}}))
    (root / "generate_stats.json").write_text(json.dumps({"counts": {"pairs": len(recs)}}))
    cfg = load_config(None, [f"output_dir={root}", f"corpus.plots={str(plots).lower()}", *FILTER])
    run_filter(cfg, progress=False)
    run_corpus(cfg, progress=False)
    return root


def make_sheet(root: Path, items: int = 6) -> Path:
    """A blind sheet as ``distill eval --sheet`` writes it (systems only in key.json)."""
    from distill.trainers.sheet import write_sheet

    rows = [json.loads(line) for line in LABELS.read_text().splitlines()[100 : 100 + items]]
    ev = root / "eval"
    (ev / "generations").mkdir(parents=True, exist_ok=True)
    for name, field in (("student", "y"), ("teacher", "x")):
        (ev / "generations" / f"{name}.jsonl").write_text(
            "".join(json.dumps({"input": r["x"], "output": r[field] if field == "y" else r["x"].upper()}) + "\n"
                    for r in rows))
    results = {"models": [{"name": "student", "spec": {"kind": "model"}, "fingerprint": "s1"},
                          {"name": "teacher", "spec": {"kind": "model"}, "fingerprint": "t1"}]}
    write_sheet(results, ev, items, seed=0)
    return ev / "sheet" / "sheet.jsonl"
