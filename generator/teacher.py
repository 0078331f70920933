"""The teacher as tasks see it: a backend behind the request cache, the budget and the
progress bar. Tasks call :meth:`Teacher.generate`; they never talk to a backend directly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from distill.cache import RequestCache, cache_key
from distill.errors import BudgetExhausted
from distill.generator.backends.base import Backend, Completion, Prompt, Request, SamplingParams, Usage
from distill.generator.constraints import LexicalConstraint


@dataclass
class Budget:
    """Stops a run once spent. Prices are per million tokens; ``None`` means no limit."""

    max_completion_tokens: int | None = None
    max_cost: float | None = None
    price_prompt: float = 0.0
    price_completion: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_prompt + completion_tokens * self.price_completion) / 1e6

    def check(self, prompt_tokens: int, completion_tokens: int) -> None:
        if self.max_completion_tokens is not None and completion_tokens >= self.max_completion_tokens:
            raise BudgetExhausted(
                f"budget reached: {completion_tokens} completion tokens >= max_completion_tokens="
                f"{self.max_completion_tokens}")
        if self.max_cost is not None and self.cost(prompt_tokens, completion_tokens) >= self.max_cost:
            raise BudgetExhausted(
                f"budget reached: cost {self.cost(prompt_tokens, completion_tokens):.4f} >= max_cost={self.max_cost}")


class Teacher:
    """Cached, budgeted generation. ``usage`` counts what this process paid for;
    ``cached_samples`` what it got from the cache instead."""

    def __init__(self, backend: Backend, cache: RequestCache | None = None, budget: Budget | None = None,
                 progress=None) -> None:
        self.backend = backend
        self.cache = cache
        self.budget = budget or Budget()
        self.progress = progress
        self.usage = Usage()
        self.cached_samples = 0
        self.gen_seconds = 0.0
        self._ledger = cache.totals() if cache is not None else (0, 0)

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    def generate(self, prompts: Sequence[Prompt], n: int, params: SamplingParams,
                 constraints: Sequence[LexicalConstraint | None] | None = None) -> list[list[Completion]]:
        """``n`` completions for each prompt, from the cache where it has them; ``constraints``
        (one per prompt, None: free) are applied by the backend and part of the cache key."""
        model = self.backend.model_id
        cons = list(constraints) if constraints is not None else [None] * len(prompts)
        if len(cons) != len(prompts):
            raise ValueError(f"{len(cons)} constraints for {len(prompts)} prompts")
        self.backend.refuse_constraints(cons)
        keys = [[cache_key(model, p, params, i, c) for i in range(n)] for p, c in zip(prompts, cons)]
        have = self.cache.get_many([k for ks in keys for k in ks]) if self.cache is not None else {}
        self.cached_samples += len(have)
        if self.progress is not None and have:
            self.progress.update(len(have))
        todo = [Request(p, params, tuple(i for i in range(n) if ks[i] not in have), n, c)
                for p, ks, c in zip(prompts, keys, cons) if any(k not in have for k in ks)]
        step = self.backend.chunk_size or max(len(todo), 1)
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            self.budget.check(*self._ledger)
            t0 = time.perf_counter()
            results = self.backend.generate_requests(chunk)
            self.gen_seconds += time.perf_counter() - t0
            rows = []
            for req, res in zip(chunk, results):
                for j, (idx, comp) in enumerate(zip(req.indices, res.completions)):
                    k = cache_key(model, req.prompt, params, idx, req.constraints)
                    have[k] = comp
                    rows.append((k, comp, res.prompt_tokens if j == 0 else 0))
                self.usage.add(Usage(res.prompt_tokens, sum(c.completion_tokens for c in res.completions), 1,
                                     len(res.completions)))
            if self.cache is not None:
                self.cache.put_many(rows)
            self._ledger = (self._ledger[0] + sum(r[2] for r in rows),
                            self._ledger[1] + sum(r[1].completion_tokens for r in rows))
            if self.progress is not None:
                self.progress.update(len(rows))
                if self.gen_seconds > 0:
                    self.progress.set_postfix(tok_s=f"{self.usage.completion_tokens / self.gen_seconds:.1f}",
                                              refresh=False)
        return [[have[k] for k in ks] for ks in keys]

    @property
    def ledger(self) -> tuple[int, int]:
        """(prompt, completion) tokens paid for over the whole run, earlier processes included."""
        return self._ledger
