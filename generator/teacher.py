"""The teacher as tasks see it: a backend behind the request cache, the budget and the
progress bar. Tasks call :meth:`Teacher.generate`; they never talk to a backend directly.

Every sample is stored in the request cache the moment the backend hands it over (a
streaming backend does so per API call or per batch), so a run killed at any point repays
only what was in flight. The budget is a gate in front of each call: what is in flight
counts as spent in full (its ``max_tokens``), so a cap is overshot by at most one call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from distill.generator.cache import RequestCache, cache_key
from distill.errors import BudgetExhausted
from distill.generator.backends.base import Backend, Completion, GateFull, Prompt, Request, SamplingParams, Usage
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

    def spent(self, prompt_tokens: int, completion_tokens: int) -> str | None:
        """Why the budget is spent at these totals, or None while there is room."""
        if self.max_completion_tokens is not None and completion_tokens >= self.max_completion_tokens:
            return (f"budget reached: {completion_tokens} completion tokens >= max_completion_tokens="
                    f"{self.max_completion_tokens}")
        if self.max_cost is not None and self.cost(prompt_tokens, completion_tokens) >= self.max_cost:
            return f"budget reached: cost {self.cost(prompt_tokens, completion_tokens):.4f} >= max_cost={self.max_cost}"
        return None

    def check(self, prompt_tokens: int, completion_tokens: int) -> None:
        why = self.spent(prompt_tokens, completion_tokens)
        if why:
            raise BudgetExhausted(why)


class _BudgetGate:
    """The budget in front of each teacher call: a call is admitted while what is spent plus
    what is in flight is under the cap, and counts as spent in full until it is delivered.
    When only the calls in flight stand in the way, :class:`GateFull` tells the caller to wait
    for one of them; BudgetExhausted once what was delivered reaches the cap."""

    def __init__(self, teacher: "Teacher") -> None:
        self.teacher = teacher
        self.held = [0, 0]  # prompt, completion tokens of the calls in flight
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, completion_tokens: int, prompt_tokens: int) -> Iterator[None]:
        with self._lock:
            spent_p, spent_c = self.teacher.ledger
            self.teacher.budget.check(spent_p, spent_c)
            if self.teacher.budget.spent(spent_p + self.held[0], spent_c + self.held[1]):
                raise GateFull()
            self.held[0] += prompt_tokens
            self.held[1] += completion_tokens
        try:
            yield
        finally:
            with self._lock:
                self.held[0] -= prompt_tokens
                self.held[1] -= completion_tokens


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
        self._gate = _BudgetGate(self)

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
        have = self._cached(keys, prompts, params, cons)
        self.cached_samples += len(have)
        if self.progress is not None and have:
            self.progress.update(len(have))
        todo = [(Request(p, params, tuple(i for i in range(n) if ks[i] not in have), n, c), ks)
                for p, ks, c in zip(prompts, keys, cons) if any(k not in have for k in ks)]
        step = self.backend.chunk_size or max(len(todo), 1)
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            requests = [r for r, _ in chunk]
            started: set[int] = set()

            def deliver(i: int, indices: tuple[int, ...], comps: list[Completion], prompt_tokens: int,
                        chunk: list = chunk, started: set[int] = started) -> None:
                self._store(chunk[i][1], indices, comps, prompt_tokens, have, first=i not in started)
                started.add(i)

            t0 = time.perf_counter()
            try:
                if self.backend.streams:
                    self.backend.generate_requests(requests, deliver=deliver, gate=self._gate)
                else:  # stored when the whole chunk is back; the budget is checked per chunk
                    self.budget.check(*self.ledger)
                    for i, res in enumerate(self.backend.generate_requests(requests)):
                        deliver(i, requests[i].indices, res.completions, res.prompt_tokens)
            finally:
                self.gen_seconds += time.perf_counter() - t0
            lost = sum(ks[i] not in have for r, ks in chunk for i in r.indices)
            if lost:
                raise RuntimeError(f"the {self.backend.name} backend returned without delivering "
                                   f"{lost} requested sample(s)")
        return [[have[k] for k in ks] for ks in keys]

    def _cached(self, keys: list[list[str]], prompts: Sequence[Prompt], params: SamplingParams,
                cons: list) -> dict[str, Completion]:
        """What the cache holds for ``keys``, also under the backend's older model ids
        (``cache_aliases``: a run cached before the id changed is not paid again)."""
        if self.cache is None:
            return {}
        have = self.cache.get_many([k for ks in keys for k in ks])
        for alias in getattr(self.backend, "cache_aliases", ()):
            old = {cache_key(alias, p, params, i, c): k for p, c, ks in zip(prompts, cons, keys)
                   for i, k in enumerate(ks) if k not in have}
            if not old:
                break
            have.update({old[a]: comp for a, comp in self.cache.get_many(list(old)).items()})
        return have

    def _store(self, keys: list[str], indices: tuple[int, ...], comps: list[Completion], prompt_tokens: int,
               have: dict[str, Completion], first: bool) -> None:
        """Samples just handed over (``keys``: the request's cache key per sample index): into the
        cache (one transaction), the ledger and the bar."""
        if len(indices) != len(comps):
            raise RuntimeError(f"the {self.backend.name} backend delivered {len(comps)} completions "
                               f"for {len(indices)} samples")
        rows = []
        for j, (idx, comp) in enumerate(zip(indices, comps)):
            have[keys[idx]] = comp
            rows.append((keys[idx], comp, prompt_tokens if j == 0 else 0))
        if self.cache is not None:
            self.cache.put_many(rows)
        done = sum(c.completion_tokens for c in comps)
        self._ledger = (self._ledger[0] + prompt_tokens, self._ledger[1] + done)
        self.usage.add(Usage(prompt_tokens, done, int(first), len(comps)))
        if self.progress is not None:
            self.progress.update(len(comps))
            if self.gen_seconds > 0:
                self.progress.set_postfix(tok_s=f"{self.usage.completion_tokens / self.gen_seconds:.1f}",
                                          refresh=False)

    @property
    def ledger(self) -> tuple[int, int]:
        """(prompt, completion) tokens paid for over the whole run, earlier processes included."""
        return self._ledger
