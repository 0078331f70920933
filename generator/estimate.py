"""``distill generate --estimate``: what a run would send and cost, without sending anything.

The task runs as it would, over the shards not yet finished, against a teacher that answers
from the request cache where it can (what was paid for already costs nothing) and otherwise
counts the request and answers with a placeholder of ``max_tokens`` tokens. So for one-phase
tasks (instruction, template) requests and prompt tokens are exact; for the pair task the
continuation prompts are built from placeholder contexts of the longest allowed length (an
upper bound) unless the contexts are cached. Completion tokens are a maximum: max_tokens per
sample. Prompt tokens are counted with the teacher's tokenizer: the model's for
transformers and vLLM, ``teacher.openai.tokenizer`` for an API (else about 4 characters a
token, said so).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distill.generator.cache import RequestCache, cache_key
from distill.config import RunConfig
from distill.generator.backends.base import (
    Backend, Completion, Prompt, SamplingParams, apply_stop, local_model_id, prompt_text,
)
from distill.generator.teacher import Teacher
from distill.shards import ShardStore

PLACEHOLDER = "The estimate counts this placeholder sentence. "


@dataclass
class Estimate:
    output_dir: str
    shards_total: int
    shards_todo: int
    requests: int
    samples: int
    cached_samples: int
    prompt_tokens: int
    max_completion_tokens: int
    tokenizer: str
    cost_low: float
    cost_high: float
    exact_prompts: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        exact = "" if self.exact_prompts else " (continuation prompts from placeholder contexts: an upper bound)"
        return "\n".join([
            f"estimate for {self.output_dir} (nothing was sent, nothing was written):",
            f"  shards to generate: {self.shards_todo} of {self.shards_total}",
            f"  requests: {self.requests:,}   samples: {self.samples:,}   already in the cache: {self.cached_samples:,}",
            f"  prompt tokens: {self.prompt_tokens:,}, counted with {self.tokenizer}{exact}",
            f"  completion tokens: at most {self.max_completion_tokens:,} (max_tokens x samples)",
            (f"  cost: {self.cost_low:.4f} to {self.cost_high:.4f} at the configured prices "
             f"(prompt tokens only, to every sample at max_tokens)" if self.cost_high else
             "  cost: no prices configured (budget.price_per_million_prompt_tokens / _completion_tokens)"),
        ])


class _Counter:
    """Prompt tokens as the teacher counts them."""

    def __init__(self, cfg) -> None:
        self.tok, self.name, self.chat_overhead = None, "about 4 characters a token (no tokenizer known)", 0
        path = None
        if cfg.backend in ("transformers", "vllm"):
            from distill.generator.models import resolve_model

            path = resolve_model(cfg.model)
        elif cfg.openai.tokenizer:
            path = cfg.openai.tokenizer
        if path:
            import os

            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from transformers import AutoTokenizer

            self.tok, self.name = AutoTokenizer.from_pretrained(path), f"the tokenizer of {path}"
        self.chat = cfg.backend == "openai" and cfg.openai.mode == "chat"

    def count(self, prompt: Prompt) -> int:
        if self.tok is None:
            return math.ceil(len(prompt_text(prompt)) / 4)
        if isinstance(prompt, list) or self.chat:  # chat messages, or text an API wraps as one user message
            msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
            if self.tok.chat_template:
                ids = self.tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
                return len(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
            return sum(len(self.tok(m["content"])["input_ids"]) for m in msgs)
        return len(self.tok(prompt, add_special_tokens=True)["input_ids"])


class _DryBackend(Backend):
    """Stands in for the configured backend: its name, device and model id (so the cache is
    looked up under the same keys), no model, no connection."""

    def __init__(self, cfg) -> None:
        self.name = cfg.backend
        self.device = "cpu" if cfg.device == "auto" else cfg.device
        if cfg.backend == "openai":
            from distill.generator.backends.openai_backend import openai_ids

            self._id, self.cache_aliases = openai_ids(cfg.model, cfg.openai.base_url)
        else:
            from distill.generator.models import resolve_model

            self._id, self.cache_aliases = local_model_id(cfg.backend, resolve_model(cfg.model)), ()
        self.supports_constraints = cfg.backend == "transformers"
        self.groups_n = cfg.backend != "openai"

    @property
    def model_id(self) -> str:
        return self._id


class _CountingTeacher(Teacher):
    def __init__(self, backend: _DryBackend, cache: RequestCache | None, counter: _Counter) -> None:
        super().__init__(backend, cache)
        self.counter = counter
        self.requests = self.samples = self.prompt_tokens = self.max_completion = self.cached = 0

    def generate(self, prompts: Sequence[Prompt], n: int, params: SamplingParams, constraints=None) -> list[list[Completion]]:
        model = self.backend.model_id
        cons = list(constraints) if constraints is not None else [None] * len(prompts)
        keys = [[cache_key(model, p, params, i, c) for i in range(n)] for p, c in zip(prompts, cons)]
        have = self._cached(keys, prompts, params, cons)
        fill = _placeholder(params)
        out = []
        for p, ks in zip(prompts, keys):
            missing = sum(k not in have for k in ks)
            self.cached += n - missing
            if missing:
                # one request per prompt (n samples in it), except where an API samples one by one
                per_sample = not self.backend.groups_n and (missing == 1 or params.temperature == 0)
                reqs = missing if per_sample else 1
                self.requests += reqs
                self.samples += missing
                self.prompt_tokens += reqs * self.counter.count(p) if self.backend.name == "openai" \
                    else self.counter.count(p)
                self.max_completion += missing * params.max_tokens
            out.append([have.get(k) or fill for k in ks])
        return out


def _placeholder(params: SamplingParams) -> Completion:
    text = (PLACEHOLDER * max(1, params.max_tokens // 7)).strip()
    text, _ = apply_stop(text + " ", params.stop, params.include_stop)
    return Completion(text, params.max_tokens, "length")


def estimate_generate(cfg: RunConfig) -> Estimate:
    from distill.generator.tasks import build_task
    from distill.runner import _budget, _check_resume

    out = Path(cfg.output_dir)
    _check_resume(out, cfg)
    budget = _budget(cfg.budget, cfg.teacher)
    task = build_task(cfg.task.model_copy(deep=True), cfg.seed)
    seeds = task.seeds()
    per = cfg.shards.items_per_shard
    n_shards = math.ceil(len(seeds) / per)
    store = ShardStore(out / "shards", cfg.shards.format)
    todo = [i for i in range(n_shards) if not store.is_done(i)]
    backend = _DryBackend(cfg.teacher)
    task.resolve_defaults(backend)
    cpath = out / "cache.sqlite"
    cache = RequestCache(cpath, readonly=True) if cpath.is_file() else None
    counter = _Counter(cfg.teacher)
    teacher = _CountingTeacher(backend, cache, counter)
    try:
        for i in todo:
            list(task.generate(seeds[i * per : (i + 1) * per], teacher))
    finally:
        if cache is not None:
            cache.close()
    exact = not task.two_stage() or teacher.max_completion == 0
    return Estimate(str(out), n_shards, len(todo), teacher.requests, teacher.samples, teacher.cached,
                    teacher.prompt_tokens, teacher.max_completion, counter.name,
                    round(budget.cost(teacher.prompt_tokens, 0), 6),
                    round(budget.cost(teacher.prompt_tokens, teacher.max_completion), 6), exact)
