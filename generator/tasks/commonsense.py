"""Commonsense if-then knowledge, the task of Symbolic Knowledge Distillation (West et al., 2022):
events in ("PersonX goes to the mall"), ATOMIC inferences out (why PersonX did it, what they
needed, want, feel, what happens to them, how others feel), one structured JSON object per
sample, decoded under a JSON schema made from the relations asked for.

The prompt is a plain few-shot completion (the format small instruct models follow best:
measured on SmolLM2-135M, a chat prompt gives rambling sentences or copies the example).
Each inference becomes a record: ``input`` is ``"<event> | <relation>"`` (what the student is
asked), ``output`` the inference, ``metadata`` the event, relation and sample.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from distill.errors import DistillError
from distill.generator.backends.base import SamplingParams
from distill.generator.schema import OutputSchema
from distill.generator.seeds import read_rows
from distill.generator.tasks.base import Task
from distill.record import Record

#: ATOMIC relations: what each asks (the student's instruction lists them)
RELATIONS = {
    "xIntent": "why PersonX did this ('to ...')",
    "xNeed": "what PersonX needed to do before ('to ...')",
    "xWant": "what PersonX wants to do after ('to ...')",
    "oWant": "what others want to do after ('to ...')",
    "xEffect": "what happens to PersonX as a result",
    "oEffect": "what happens to others as a result",
    "xReact": "how PersonX feels after (a word or two)",
    "oReact": "how others feel after (a word or two)",
    "xAttr": "how PersonX is seen (an adjective)",
}

#: the shipped few-shot examples (written for this project), one inference per relation
FEW_SHOT: list[tuple[str, dict[str, str]]] = [
    ("PersonX bakes a cake", {
        "xIntent": "to celebrate a birthday", "xNeed": "to buy flour and eggs", "xWant": "to share the cake",
        "oWant": "to taste the cake", "xEffect": "gets flour on their hands", "oEffect": "get a slice of cake",
        "xReact": "proud", "oReact": "grateful", "xAttr": "caring"}),
    ("PersonX misses the bus", {
        "xIntent": "none", "xNeed": "to leave home late", "xWant": "to call a taxi", "oWant": "none",
        "xEffect": "is late for work", "oEffect": "have to wait for PersonX", "xReact": "frustrated",
        "oReact": "annoyed", "xAttr": "late"}),
    ("PersonX adopts a dog", {
        "xIntent": "to have a companion", "xNeed": "to visit the shelter", "xWant": "to take the dog for a walk",
        "oWant": "to pet the dog", "xEffect": "has a new pet", "oEffect": "meet the dog",
        "xReact": "happy", "oReact": "happy for PersonX", "xAttr": "kind"}),
]

SEPARATOR = " | "


def record_input(event: str, relation: str) -> str:
    """What the student is asked: the event and the relation (COMET's input, made readable)."""
    return f"{event}{SEPARATOR}{relation}"


def parse_input(text: str) -> tuple[str, str]:
    """(event, relation) of a record input made by :func:`record_input`."""
    event, _, relation = text.rpartition(SEPARATOR)
    if not event or relation not in RELATIONS:
        raise ValueError(f"not a commonsense input (event{SEPARATOR}relation): {text!r}")
    return event, relation


def schema(relations: list[str], max_chars: int) -> dict:
    """One short string per relation, nothing else."""
    return {"type": "object", "additionalProperties": False, "required": list(relations),
            "properties": {r: {"type": "string", "minLength": 1, "maxLength": max_chars} for r in relations}}


def prompt_prefix(relations: list[str], few_shot: list[tuple[str, dict[str, str]]]) -> str:
    head = "Commonsense inferences about events (ATOMIC), as JSON: " + "; ".join(
        f"{r}: {RELATIONS[r]}" for r in relations) + ".\n\n"
    return head + "".join(f"Event: {e}\n{json.dumps({r: ans[r] for r in relations})}\n\n" for e, ans in few_shot)


class Commonsense(Task):
    def __init__(self, cfg, seed: int) -> None:
        super().__init__(cfg, seed)
        self.name = "commonsense"
        shots = cfg.few_shot if cfg.few_shot is not None else FEW_SHOT
        for e, ans in shots:
            missing = [r for r in cfg.relations if r not in ans]
            if missing:
                raise DistillError(f"task.few_shot: the example {e!r} has no {', '.join(missing)}")
        self.prefix = prompt_prefix(cfg.relations, shots)
        self.schema = OutputSchema(schema(cfg.relations, cfg.max_chars))

    def resolve_defaults(self, backend) -> None:
        backend.refuse_json_schema(self._params())

    def _params(self) -> SamplingParams:
        s = self.cfg.sampling
        return SamplingParams(max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                              seed=self.seed, json_schema=self.schema.text)

    def prompt(self, event: str):
        text = self.prefix + f"Event: {event}\n"
        return [{"role": "user", "content": text}] if self.cfg.chat else text

    def seeds(self) -> list[Record]:
        rows = read_rows(self.cfg.events, self.cfg.field)[: self.cfg.limit]
        return [Record(id=f"ev{i:06d}", task="commonsense.seed", input=str(r[self.cfg.field]).strip().rstrip("."),
                       output="", metadata={"line": r["_line"]}) for i, r in enumerate(rows)]

    def generate(self, seeds: list[Record], teacher) -> Iterator[Record]:
        comps_per_event = teacher.generate([self.prompt(s.input) for s in seeds], self.cfg.k, self._params())
        for seed, comps in zip(seeds, comps_per_event):
            for i, c in enumerate(comps):
                self.counts["samples"] += 1
                value, why = self.schema.check(c.text)  # a backend that cannot enforce it (an API) is checked here
                if why is not None:
                    self.counts["samples_dropped_schema"] += 1
                    self.counts[f"schema_failed:{why.split(':')[0].split(' (')[0]}"] += 1
                    continue
                for rel in self.cfg.relations:
                    y = str(value.get(rel, "")).strip()
                    self.counts["inferences"] += 1
                    if not y:
                        self.counts["inferences_dropped_empty"] += 1
                        continue
                    yield Record(id=f"{seed.id}-s{i:03d}-{rel}", task="commonsense",
                                 input=record_input(seed.input, rel), output=y, teacher=teacher.model_id,
                                 metadata={"source_id": seed.id, "event": seed.input, "relation": rel, "sample": i,
                                           "finish_reason": c.finish_reason})
