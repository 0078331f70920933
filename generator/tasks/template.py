"""User-defined prompt templates: summarization, commonsense or anything else that is
"fill a prompt from a seed row, keep what the teacher writes"."""

from __future__ import annotations

from collections.abc import Iterator

from distill.errors import DistillError
from distill.generator.backends.base import SamplingParams
from distill.generator.seeds import read_rows
from distill.generator.tasks.base import Task
from distill.record import Record


class TemplatePrompts(Task):
    def __init__(self, cfg, seed: int) -> None:
        super().__init__(cfg, seed)
        self.name = cfg.task_name

    def seeds(self) -> list[Record]:
        rows = read_rows(self.cfg.inputs, self.cfg.input_field)[: self.cfg.limit]
        out = []
        for i, r in enumerate(rows):
            fields = {k: v for k, v in r.items() if k != "_line"}
            try:
                prompt = self.cfg.prompt.format(**fields)
            except (KeyError, IndexError) as e:
                raise DistillError(f"{self.cfg.inputs} line {r['_line']}: the prompt template needs field {e} "
                                   f"(row has: {', '.join(fields)})") from None
            out.append(Record(id=f"in{i:06d}", task=f"{self.name}.seed", input=str(r[self.cfg.input_field]),
                              output="", metadata={"prompt": prompt, "line": r["_line"], "fields": fields}))
        return out

    def generate(self, seeds: list[Record], teacher) -> Iterator[Record]:
        s = self.cfg.sampling
        params = SamplingParams(max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                                stop=tuple(self.cfg.stop), seed=self.seed)
        prompts = [[{"role": "user", "content": r.metadata["prompt"]}] if self.cfg.chat else r.metadata["prompt"]
                   for r in seeds]
        for seed, comps in zip(seeds, teacher.generate(prompts, self.cfg.k, params)):
            for i, c in enumerate(comps):
                self.counts["samples"] += 1
                y = c.text.strip()
                if not y:
                    self.counts["samples_dropped_empty"] += 1
                    continue
                yield Record(id=f"{seed.id}-s{i:03d}", task=self.name, input=seed.input, output=y,
                             teacher=teacher.model_id,
                             metadata={"source_id": seed.id, "sample": i, "finish_reason": c.finish_reason,
                                       "prompt": seed.metadata["prompt"]})
