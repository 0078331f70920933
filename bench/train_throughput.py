"""Student training throughput: our `distill train` path vs a plain torch loop, same data.

    python bench/train_throughput.py                     # SmolLM2-135M, 64 pairs, 12 steps
    python bench/train_throughput.py --steps 20 --batch-size 8

Both sides train the same base model on the same pairs (the positive pairs of the shipped
labelled set, data/paraphrase/labels.jsonl), encoded by the same PairEncoder (chat prompt,
completion-only labels), for the same number of optimizer steps with the same batch size,
peak learning rate (no warmup; ours decays it linearly, the Trainer's default, which does not
change the cost of a step), AdamW and fp32 on the CPU. "Plain" is what a user would write:
shuffle, pad each batch, forward, backward, ``torch.optim.AdamW.step()``.

Throughput is non-padding input tokens per second. Two figures per side:
- whole: the whole training call (ours: ``Trainer.train()``, which also writes the final
  checkpoint with optimizer state; plain: the loop, nothing saved);
- steady: from the end of step 1 to the end of the last step (ours from the Trainer's
  per-step logs), i.e. without warm-up and without the final checkpoint.
The two sides alternate (plain, ours, plain, ours, ...) in one process and the median of the
repeats is reported, so load from other jobs on the machine hits both.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from importlib import resources
from pathlib import Path


def labelled_pairs(n: int) -> list[dict]:
    text = resources.files("distill.data.paraphrase").joinpath("labels.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    pos = [r for r in rows if r.get("label") == 1]
    return [{"id": r["id"], "task": "paraphrase", "input": r["x"], "output": r["y"]} for r in pos[:n]]


def make_corpus(folder: Path, rows: list[dict]) -> Path:
    import datasets

    empty = {c: [] for c in ("id", "task", "input", "output")}
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "validation": datasets.Dataset.from_dict(empty),
                               "test": datasets.Dataset.from_dict(empty)})
    dd.save_to_disk(str(folder / "dataset"), num_shards={s: 1 for s in dd})
    return folder


def run_plain(base: str, rows: list[dict], steps: int, batch_size: int, lr: float, max_length: int,
              seed: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.config import ParaphraseInstructTask
    from distill.trainers.data import PairEncoder

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(base)
    enc = PairEncoder(tok, "causal", ParaphraseInstructTask.model_fields["instruction"].default, max_length)
    data = [enc(r["input"], r["output"]) for r in rows]
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    order: list[int] = []
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    tokens, marks = 0, []
    t0 = time.perf_counter()
    for _ in range(steps):
        if len(order) < batch_size:
            order += rng.sample(range(len(data)), len(data))
        batch, order = [data[i] for i in order[:batch_size]], order[batch_size:]
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.tensor([b["input_ids"] + [pad] * (width - len(b["input_ids"])) for b in batch])
        mask = torch.tensor([[1] * len(b["input_ids"]) + [0] * (width - len(b["input_ids"])) for b in batch])
        labels = torch.tensor([b["labels"] + [-100] * (width - len(b["labels"])) for b in batch])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(mask.sum())
        marks.append((tokens, time.perf_counter() - t0))
    whole = marks[-1][0] / marks[-1][1]
    steady = (marks[-1][0] - marks[0][0]) / (marks[-1][1] - marks[0][1]) if steps > 1 else whole
    return {"tok_s": whole, "steady_tok_s": steady, "tokens": tokens, "seconds": marks[-1][1], "last_loss": loss.item()}


def run_ours(model_dir: str | None, corpus: Path, out: Path, steps: int, batch_size: int, lr: float,
             max_length: int, seed: int) -> dict:
    from distill.config import RunConfig
    from distill.trainers.train import run_train

    cfg = RunConfig(output_dir=str(out), seed=seed, train=dict(
        corpus_dir=str(corpus), output_dir=str(out / "student"), model=model_dir, max_steps=steps,
        batch_size=batch_size, learning_rate=lr, warmup_ratio=0.0, max_length=max_length, device="cpu",
        precision="fp32", logging_steps=1, save_steps=max(steps, 1), save_total_limit=1))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    s = run_train(cfg, progress=False)
    log = s["token_log"]
    steady = (log[-1][1] - log[0][1]) / (log[-1][2] - log[0][2]) if len(log) > 1 else s["tokens_per_second"]
    return {"tok_s": s["tokens_per_second"], "steady_tok_s": steady, "tokens": s["tokens_seen"],
            "seconds": s["train_runtime_s"], "last_loss": s["train_loss_last"]}


def measure(model_dir: str | None = None, pairs: int = 64, steps: int = 12, batch_size: int = 8,
            lr: float = 5e-5, max_length: int = 128, seed: int = 0, repeats: int = 2) -> dict:
    import statistics

    import torch

    from distill.generator.models import resolve_model

    base = resolve_model(model_dir)
    rows = labelled_pairs(pairs)
    runs: dict[str, list[dict]] = {"ours": [], "plain": []}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        corpus = make_corpus(Path(tmp) / "corpus", rows)
        for i in range(repeats):  # alternate, so load from other jobs hits both sides
            runs["plain"].append(run_plain(base, rows, steps, batch_size, lr, max_length, seed))
            runs["ours"].append(run_ours(model_dir, corpus, Path(tmp) / f"ours-{i}", steps, batch_size, lr,
                                         max_length, seed))

    def med(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side])

    o, p, os_, ps = med("ours", "tok_s"), med("plain", "tok_s"), med("ours", "steady_tok_s"), med("plain", "steady_tok_s")
    return {"model": base, "pairs": len(rows), "steps": steps, "batch_size": batch_size, "max_length": max_length,
            "threads": torch.get_num_threads(), "repeats": repeats,
            "ours_tok_s": round(o, 1), "plain_tok_s": round(p, 1), "ratio": round(o / p, 3),
            "ours_steady_tok_s": round(os_, 1), "plain_steady_tok_s": round(ps, 1), "steady_ratio": round(os_ / ps, 3),
            "tokens_per_run": runs["ours"][0]["tokens"], "plain_tokens_per_run": runs["plain"][0]["tokens"],
            "ours_tok_s_each": [round(r["tok_s"], 1) for r in runs["ours"]],
            "plain_tok_s_each": [round(r["tok_s"], 1) for r in runs["plain"]],
            "ours_last_loss": runs["ours"][0]["last_loss"], "plain_last_loss": round(runs["plain"][0]["last_loss"], 4)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model folder or hub id; default: SmolLM2-135M-Instruct")
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs per side; the median is reported")
    a = ap.parse_args()
    r = measure(a.model, a.pairs, a.steps, a.batch_size, max_length=a.max_length, repeats=a.repeats)
    print(json.dumps(r, indent=2))
    print(f"\n{'':<8}{'whole tok/s':>14}{'steady tok/s':>14}")
    print(f"{'ours':<8}{r['ours_tok_s']:>14}{r['ours_steady_tok_s']:>14}")
    print(f"{'plain':<8}{r['plain_tok_s']:>14}{r['plain_steady_tok_s']:>14}")
    print(f"{'ratio':<8}{r['ratio']:>14}{r['steady_ratio']:>14}")
