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
        self.schema = None
        if cfg.output_schema:
            from distill.generator.schema import OutputSchema

            self.schema = OutputSchema(cfg.output_schema)  # a bad schema fails here, before any model loads

    def resolve_defaults(self, backend) -> None:
        if self.schema is not None:
            backend.refuse_json_schema(self._params())

    def _params(self) -> SamplingParams:
        s = self.cfg.sampling
        return SamplingParams(max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                              stop=() if self.schema else tuple(self.cfg.stop), seed=self.seed,
                              json_schema=self.schema.text if self.schema else None)

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
        params = self._params()
        prompts = [[{"role": "user", "content": r.metadata["prompt"]}] if self.cfg.chat else r.metadata["prompt"]
                   for r in seeds]
        for seed, comps in zip(seeds, teacher.generate(prompts, self.cfg.k, params)):
            for i, c in enumerate(comps):
                self.counts["samples"] += 1
                y = c.text.strip()
                if not y:
                    self.counts["samples_dropped_empty"] += 1
                    continue
                meta = {"source_id": seed.id, "sample": i, "finish_reason": c.finish_reason,
                        "prompt": seed.metadata["prompt"]}
                if self.schema is not None:
                    value, why = self.schema.check(y)
                    if why is not None:  # counted, with the reason's kind (not JSON / which rule)
                        self.counts["samples_dropped_schema"] += 1
                        self.counts[f"schema_failed:{why.split(':')[0].split(' (')[0]}"] += 1
                        continue
                    meta["structured"] = value
                yield Record(id=f"{seed.id}-s{i:03d}", task=self.name, input=seed.input, output=y,
                             teacher=teacher.model_id, metadata=meta)
