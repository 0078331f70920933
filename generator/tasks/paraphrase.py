"""Paraphrase generation, two ways.

``ParaphrasePairs`` is Impossible Distillation's constrained over-generation with a plain
LM (Jung et al., NAACL 2024): write a short news context from a dateline, sample k
continuations of its next sentence, and take ordered pairs of distinct continuations as
candidate paraphrases (the critics decide which pairs are real ones; each record keeps
its context id so they can group them).

``ParaphraseInstruct`` asks an instruction-following teacher (a chat model, an API, or a
student trained on the corpus) to paraphrase given inputs.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from importlib import resources
from itertools import permutations
from pathlib import Path

import yaml

from distill.errors import DistillError
from distill.generator.backends.base import SamplingParams
from distill.generator.constraints import constraint_for
from distill.generator.seeds import read_rows
from distill.generator.tasks.base import Task
from distill.record import Record

SENTENCE_END = (".", "?", "!")
# End of a sentence: the first terminator followed by whitespace. The stop strings keep
# the terminator (include_stop) so a sample that stopped there is a whole sentence. A bare
# "\n" is not a stop: after a context the model often starts with a line break.
FIRST_SENTENCE_STOPS = (". ", "? ", "! ", ".\n", "?\n", "!\n")
_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SPLIT.split(text.strip()) if s.strip()]


def load_datelines(path: str | None) -> dict:
    if path is None:
        text = resources.files("distill.data.paraphrase").joinpath("datelines.yaml").read_text()
        source = "the shipped datelines.yaml"
    else:
        p = Path(path)
        if not p.is_file():
            raise DistillError(f"task.datelines: file not found: {p}")
        text, source = p.read_text(), str(p)
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DistillError(f"{source} is not valid YAML: {e}") from None
    for key in ("templates", "places", "outlets"):
        if not isinstance(d, dict) or not d.get(key) or not isinstance(d[key], list):
            raise DistillError(f"{source}: needs a non-empty list {key!r}")
    return d


class ParaphrasePairs(Task):
    name = "paraphrase"

    def resolve_defaults(self, backend) -> None:
        if self.cfg.k is None:
            on_gpu = backend.name == "vllm" or str(getattr(backend, "device", "cpu")).startswith("cuda")
            self.cfg.k = 100 if on_gpu else 16

    def samples_per_seed(self) -> int:
        return (self.cfg.k or 16) + 1  # the context, then k continuations

    def two_stage(self) -> bool:
        return True

    def seeds(self) -> list[Record]:
        d = load_datelines(self.cfg.datelines)
        rng = random.Random(self.seed)
        out = []
        for i in range(self.cfg.num_contexts):
            t = rng.choice(d["templates"])
            prompt = t.format(place=rng.choice(d["places"]), outlet=rng.choice(d["outlets"]),
                              month=rng.choice(d.get("months") or ["January"]), day=rng.randint(1, 28))
            out.append(Record(id=f"ctx{i:06d}", task="paraphrase.seed", input=prompt, output=""))
        return out

    def _params(self, s, stop: tuple[str, ...]) -> SamplingParams:
        return SamplingParams(max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                              stop=stop, include_stop=True, seed=self.seed)

    def contexts(self, seeds: list[Record], teacher) -> list[tuple[Record, str]]:
        lo, hi = self.cfg.context_sentences
        done = teacher.generate([s.input for s in seeds], 1, self._params(self.cfg.context, ("\n",)))
        out = []
        for seed, (c,) in zip(seeds, done):
            self.counts["contexts"] += 1
            sents = [s for s in split_sentences(f"{seed.input} {c.text.strip()}") if s.endswith(SENTENCE_END)]
            # the last piece may be cut by max_tokens: keep whole sentences only
            if c.finish_reason == "length" and sents and not c.text.rstrip().endswith(SENTENCE_END):
                sents = sents[:-1] if len(sents) > 1 else []
            if len(sents) < lo:
                self.counts["contexts_dropped_too_few_sentences"] += 1
                continue
            out.append((seed, " ".join(sents[:hi])))
        self.counts["contexts_kept"] += len(out)
        return out

    def generate(self, seeds: list[Record], teacher) -> Iterator[Record]:
        ctxs = self.contexts(seeds, teacher)
        k = self.cfg.k or 16
        samples = teacher.generate([ctx for _, ctx in ctxs], k, self._params(self.cfg.continuation, FIRST_SENTENCE_STOPS))
        for (seed, ctx), comps in zip(ctxs, samples):
            kept: dict[str, int] = {}  # sentence -> first sample index, in sample order
            for i, c in enumerate(comps):
                self.counts["continuations"] += 1
                s = c.text.strip()
                if not s.endswith(SENTENCE_END):
                    self.counts["continuations_dropped_no_sentence_end"] += 1
                elif "\n" in s:
                    self.counts["continuations_dropped_multiline"] += 1
                elif len(s.split()) < self.cfg.min_words:
                    self.counts["continuations_dropped_too_short"] += 1
                elif s in kept:
                    self.counts["continuations_dropped_repeat"] += 1
                else:
                    kept[s] = i
            self.counts["continuations_kept"] += len(kept)
            for (x, i), (y, j) in permutations(kept.items(), 2):
                self.counts["pairs"] += 1
                yield Record(
                    id=f"{seed.id}-{i:03d}-{j:03d}", task="paraphrase", input=x, output=y,
                    teacher=teacher.model_id,
                    metadata={"context_id": seed.id, "context": ctx, "dateline": seed.input,
                              "x_sample": i, "y_sample": j},
                )


def clean_answer(text: str) -> str:
    """Strip whitespace and one pair of wrapping quotes; critics judge the rest."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'":
        t = t[1:-1].strip()
    return t


class ParaphraseInstruct(Task):
    name = "paraphrase"

    def seeds(self) -> list[Record]:
        rows = read_rows(self.cfg.inputs, self.cfg.field)[: self.cfg.limit]
        # other JSONL fields (e.g. the context_id `distill run` writes) ride along into the records
        return [Record(id=f"in{i:06d}", task="paraphrase.seed", input=r[self.cfg.field].strip(), output="",
                       metadata={"line": r["_line"], **{k: v for k, v in r.items() if k not in (self.cfg.field, "_line")}})
                for i, r in enumerate(rows)]

    def resolve_defaults(self, backend) -> None:
        if self.cfg.constraints is not None and self.cfg.constraints.active():
            backend.refuse_constraints([self.cfg.constraints])  # fail before any shard is written

    def constraint(self, x: str):
        """What a paraphrase of ``x`` may not introduce (task.constraints); None: off."""
        c = self.cfg.constraints
        if c is None:
            return None
        return constraint_for(x, c.ban_new_names, c.ban_new_numbers, c.ban_new_times, c.boost_kept_names)

    def messages(self, x: str) -> list[dict[str, str]]:
        msgs = []
        for a, b in self.cfg.few_shot:
            msgs += [{"role": "user", "content": f"{self.cfg.instruction}\n\n{a}"}, {"role": "assistant", "content": b}]
        return msgs + [{"role": "user", "content": f"{self.cfg.instruction}\n\n{x}"}]

    def generate(self, seeds: list[Record], teacher) -> Iterator[Record]:
        s = self.cfg.sampling
        params = SamplingParams(max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                                seed=self.seed)
        outs = teacher.generate([self.messages(r.input) for r in seeds], self.cfg.k, params,
                                [self.constraint(r.input) for r in seeds])
        for seed, comps in zip(seeds, outs):
            for i, c in enumerate(comps):
                self.counts["samples"] += 1
                y = clean_answer(c.text)
                if not y:
                    self.counts["samples_dropped_empty"] += 1
                    continue
                yield Record(id=f"{seed.id}-s{i:03d}", task="paraphrase", input=seed.input, output=y,
                             teacher=teacher.model_id,
                             metadata={**{k: v for k, v in seed.metadata.items() if k != "line"},
                                       "source_id": seed.id, "sample": i, "finish_reason": c.finish_reason})
