"""Throughput of VLLMBackend.generate_requests vs a raw ``LLM.generate`` on the same engine.

Both sides run the same prompts with the same per-prompt seeds, so they produce the
same tokens and the ratio measures the backend's overhead only (request building,
chat rendering, result conversion). Warm-up once, alternate the order, median of
``repeats``. Run: ``python bench/teacher_vllm.py`` (the ``__main__`` guard matters:
vLLM starts its engine core in a child process).
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

NEWS_PROMPTS = [
    f"Write a short news headline and lead sentence about {topic}.\nHeadline:"
    for topic in [
        "a new city bike lane", "rising coffee prices", "a local library reopening",
        "a heat wave in Europe", "a breakthrough battery design", "a national football final",
        "a central bank rate decision", "a wildfire near a small town", "a new museum exhibit",
        "a rail strike", "a record-breaking marathon", "a rocket launch",
        "a school lunch program", "a flood warning", "an election recount", "a tech company merger",
    ]
]

CPU_ENGINE = dict(enforce_eager=True, max_model_len=1024, max_num_seqs=8)


def run_bench(
    backend: Any = None,
    prompts: list[str] | None = None,
    n: int = 4,
    temperature: float = 0.7,
    top_p: float = 0.9,
    max_tokens: int = 48,
    repeats: int = 3,
    engine_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Completion tokens/s, ours vs raw, medians of ``repeats`` runs.

    ``backend``: a VLLMBackend to reuse (left open); if None one is started with
    ``engine_kwargs`` (default: the CPU settings above) and closed at the end.
    """
    from vllm import SamplingParams as VSP

    from distill.generator.backends.base import Request, SamplingParams, request_seed
    from distill.generator.backends.vllm_backend import VLLMBackend

    prompts = list(prompts or NEWS_PROMPTS)
    own = backend is None
    t0 = time.perf_counter()
    if own:
        backend = VLLMBackend(**(CPU_ENGINE if engine_kwargs is None else engine_kwargs))
    startup_s = time.perf_counter() - t0
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p)
    reqs = [Request(p, params, tuple(range(n)), n) for p in prompts]
    raw_params = [
        VSP(n=n, seed=request_seed(p, params), temperature=temperature, top_p=top_p, max_tokens=max_tokens)
        for p in prompts
    ]

    def ours() -> tuple[int, float]:
        t = time.perf_counter()
        res = backend.generate_requests(reqs)
        return sum(c.completion_tokens for r in res for c in r.completions), time.perf_counter() - t

    def raw() -> tuple[int, float]:
        t = time.perf_counter()
        outs = backend.llm.generate(prompts, raw_params, use_tqdm=False)
        return sum(len(o.token_ids) for r in outs for o in r.outputs), time.perf_counter() - t

    try:
        backend.generate_requests(reqs[:2])  # warm-up
        backend.llm.generate(prompts[:2], raw_params[:2], use_tqdm=False)
        runs: dict[str, list[tuple[int, float]]] = {"ours": [], "raw": []}
        for i in range(repeats):
            order = [("ours", ours), ("raw", raw)]
            for name, fn in order if i % 2 == 0 else order[::-1]:
                runs[name].append(fn())
    finally:
        if own:
            backend.close()
    tps = {k: statistics.median(tok / s for tok, s in v) for k, v in runs.items()}
    return {
        "model_id": backend.model_id,
        "prompts": len(prompts),
        "n": n,
        "max_tokens": max_tokens,
        "repeats": repeats,
        "startup_s": round(startup_s, 1) if own else None,
        "completion_tokens": {k: [tok for tok, _ in v] for k, v in runs.items()},
        "seconds": {k: [round(s, 2) for _, s in v] for k, v in runs.items()},
        "ours_tokens_per_s": round(tps["ours"], 1),
        "raw_tokens_per_s": round(tps["raw"], 1),
        "ratio_ours_over_raw": round(tps["ours"] / tps["raw"], 3),
    }


if __name__ == "__main__":
    r = run_bench()
    print(json.dumps(r, indent=2))
    print(
        f"vLLM teacher: ours {r['ours_tokens_per_s']} tok/s, raw LLM.generate {r['raw_tokens_per_s']} tok/s, "
        f"ratio ours/raw {r['ratio_ours_over_raw']}"
    )
