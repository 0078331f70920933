"""``distill eval`` for the commonsense task: the teacher and its students on held-out events.

The end of the commonsense pipe (events -> teacher -> critics -> corpus -> student ->
**eval**); :func:`distill.trainers.evaluate.run_eval` hands over here when
``task.name == "commonsense"``. Inputs are ``eval.inputs`` (else ``builtin:atomic-heldout``,
events the teacher never saw), at most ``eval.limit`` of them, each asked for every
relation of ``task.relations``: one item per (event, relation). What each system of
``eval.models`` is:

- ``kind: model`` with ``few_shot: N`` >= 1, the **teacher**: the task's own structured
  prompt (:meth:`Commonsense.prompt`, its first N examples) once per event, the task's
  sampling with the spec's temperature, decoded under the task's JSON schema and read into
  one inference per relation as the generator reads a sample. An output that fails the
  schema (no JSON, a relation missing, too long: what the generator would drop) leaves
  every relation of its event empty, counted as *unparsed*;
- ``kind: model`` with ``few_shot: 0``, a **student**: asked per item exactly what
  ``distill train`` fed it for a record whose input is ``record_input(event, relation)``
  (``train.instruction``, or the spec's ``instruction``; chat or plain prompt as
  :class:`~distill.trainers.data.PairEncoder` decides from the model's tokenizer);
- ``kind: copy``: the event itself as every inference (a floor for the critics).

Every item is judged by ``eval.critics`` (else ``filter.critics``) on a Record like the
generator's; an empty output is a drop without asking them. Per system: accepted (every
critic keeps) with a 95% Wilson interval, accepted per relation, the reject reasons, the
empty and unparsed rates, distinct inferences (distinct non-empty outputs after
``normalize_text`` / non-empty outputs) and mean words per non-empty output.

Writes in the eval folder what the paraphrase evaluation writes, less the plot:
``results.json``, ``results.md``, ``generations/<name>.jsonl``, ``models/<name>-<fp>.json``
(per system, reused while its fingerprint holds) and ``cache.sqlite``. The blind sheet
(:mod:`distill.trainers.sheet`) takes these items with the labels of :data:`SHEET_LABELS`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from distill.config import EvalModelSpec, RunConfig
from distill.errors import ConfigError, DistillError
from distill.trainers import evaluate as E
from distill.trainers import sheet

DEFAULT_EVENTS = "builtin:atomic-heldout"
SHEET_LABELS = {"A": "a plausible inference about the event that answers its relation",
                "R": "not: implausible, answers another relation, not about the event, empty or degenerate"}


def load_events(cfg: RunConfig) -> tuple[list[str], str]:
    """(events, a description of their source), normalised as Commonsense.seeds does."""
    from distill.generator.seeds import read_rows

    path = cfg.eval.inputs or DEFAULT_EVENTS
    try:
        rows = read_rows(path, cfg.eval.field)[: cfg.eval.limit]
    except DistillError as e:
        raise DistillError(f"eval.inputs: {e}") from None
    except OSError as e:  # a shipped pool's file missing from the install
        raise DistillError(f"eval.inputs: cannot read {path}: {e}") from None
    return [str(r[cfg.eval.field]).strip().rstrip(".") for r in rows], str(path)


def role(spec: EvalModelSpec) -> str:
    return "copy" if spec.kind == "copy" else "teacher" if spec.few_shot else "student"


def teacher_task(cfg: RunConfig, spec: EvalModelSpec):
    from distill.generator.tasks.commonsense import FEW_SHOT, Commonsense

    shots = cfg.task.few_shot if cfg.task.few_shot is not None else FEW_SHOT
    if spec.few_shot > len(shots):
        raise ConfigError(f"eval.models ({spec.name}): few_shot={spec.few_shot}, but the commonsense task has "
                          f"{len(shots)} examples (task.few_shot)")
    return Commonsense(cfg.task.model_copy(update={"few_shot": list(shots[: spec.few_shot])}), cfg.seed)


def teacher_params(task, spec: EvalModelSpec):
    """The task's own sampling (and schema), at the spec's temperature (greedy by default)."""
    return dataclasses.replace(task._params(), temperature=spec.sampling.temperature)


def student_params(cfg: RunConfig, spec: EvalModelSpec):
    from distill.generator.backends import SamplingParams

    s = spec.sampling
    return SamplingParams(max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                          seed=cfg.seed)


def instruction(cfg: RunConfig, spec: EvalModelSpec) -> str:
    return spec.instruction or cfg.train.instruction


def student_encoder(spec: EvalModelSpec, text: str):
    """A PairEncoder on the model's own tokenizer, as ``distill train`` built it (causal: the
    backends serve decoder-only models); None when no tokenizer loads offline (an API model,
    or a folder without one)."""
    if spec.backend == "openai":
        return None
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # as distill train: a hub id loads from the local cache
    from distill.generator.models import resolve_model
    from distill.trainers.data import PairEncoder

    try:
        path = resolve_model(spec.model)
        if Path(path).is_dir() and not (Path(path) / "tokenizer_config.json").is_file():
            return None
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path)
    except (DistillError, OSError, ValueError):
        return None
    return PairEncoder(tok, "causal", text, max_length=1 << 20)


def student_prompt(encoder, text: str, x: str):
    """What ``distill train`` fed the student for input ``x``: PairEncoder's chat messages
    (the backend renders them with the same template and generation prompt) or, for a model
    without a chat template, its plain prompt. Without a tokenizer: the chat messages."""
    if encoder is None:
        return [{"role": "user", "content": f"{text}\n\n{x}"}]  # PairEncoder.messages
    return encoder.messages(x) if encoder.chat else encoder.prompt_text(x)


def fingerprint(spec: EvalModelSpec, cfg: RunConfig, events: list[str], critic_specs: list,
                encoder: str | None) -> str:
    r = role(spec)
    gen = None
    if r == "teacher":
        task = teacher_task(cfg, spec)
        gen = {**E.backend_identity(spec, cfg), "prompt": task.prefix, "chat": task.cfg.chat,
               "params": dataclasses.asdict(teacher_params(task, spec))}
    elif r == "student":
        gen = {**E.backend_identity(spec, cfg), "instruction": instruction(cfg, spec),
               "params": dataclasses.asdict(student_params(cfg, spec))}
    judge = cfg.teacher.model_dump() if any(c.type == "lm_judge" for c in critic_specs) else None
    payload = {"v": E.RESULT_VERSION, "task": "commonsense", "role": r, "gen": gen,
               "inputs": hashlib.sha256(json.dumps([events, cfg.task.relations]).encode()).hexdigest(),
               "critics": [c.model_dump() for c in critic_specs], "judge_teacher": judge, "encoder": encoder}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def generate(spec: EvalModelSpec, cfg: RunConfig, events: list[str], out: Path, progress: bool = True,
             backend_factory: Callable[[EvalModelSpec], Any] | None = None) -> list[tuple[str, bool]]:
    """(output, unparsed) per item, event-major, relations in ``task.relations`` order."""
    from distill.generator.tasks.commonsense import record_input

    rels = cfg.task.relations
    r = role(spec)
    if r == "copy":
        return [(e, False) for e in events for _ in rels]
    if r == "teacher":
        task = teacher_task(cfg, spec)
        texts = E.complete(spec, cfg, [task.prompt(e) for e in events], teacher_params(task, spec), out, progress,
                           backend_factory)
        items = []
        for text in texts:  # read as Commonsense.generate reads a sample: checked against the task's schema
            value, why = task.schema.check(text)
            items += [("", True)] * len(rels) if why is not None else [(str(value.get(r, "")).strip(), False)
                                                                        for r in rels]
        return items
    text = instruction(cfg, spec)
    enc = student_encoder(spec, text)
    prompts = [student_prompt(enc, text, record_input(e, rel)) for e in events for rel in rels]
    return [(y.strip(), False) for y in E.complete(spec, cfg, prompts, student_params(cfg, spec), out, progress,
                                                    backend_factory)]


def judge(critics: list, events: list[str], relations: list[str], outputs: list[tuple[str, bool]]) -> list[dict]:
    """One item per (event, relation): kept by every critic, or the first failing reason;
    an empty output is dropped as ``empty`` (``unparsed`` when the teacher's JSON failed)."""
    from distill.generator.tasks.commonsense import record_input
    from distill.record import Record

    keys = [(e, rel) for e in events for rel in relations]
    items = [{"i": i, "event": e, "relation": rel, "input": record_input(e, rel), "output": y, "unparsed": bad,
              "empty": not y} for i, ((e, rel), (y, bad)) in enumerate(zip(keys, outputs))]
    records = [Record(id=str(it["i"]), task="commonsense", input=it["input"], output=it["output"],
                      metadata={"event": it["event"], "relation": it["relation"]}) for it in items if not it["empty"]]
    kept, reasons = E.judge_records(critics, records)
    for it in items:
        it["accepted"] = str(it["i"]) in kept
        it["reject_reason"] = ("unparsed" if it["unparsed"] else "empty") if it["empty"] else reasons.get(str(it["i"]))
    return items


def summarize(items: list[dict], relations: list[str]) -> dict[str, Any]:
    from distill.critics.rules import normalize_text

    n = len(items)
    kept = sum(it["accepted"] for it in items)
    ys = [it["output"] for it in items if not it["empty"]]
    per = {rel: [it["accepted"] for it in items if it["relation"] == rel] for rel in relations}
    ci = sheet.wilson(kept, n)
    return {"n": n, "accepted_count": kept, "accepted": kept / n if n else 0.0, "accepted_ci": list(ci) if ci else None,
            "per_relation": {rel: {"n": len(v), "accepted": sum(v) / len(v) if v else 0.0} for rel, v in per.items()},
            "empty": (n - len(ys)) / n if n else 0.0, "unparsed": sum(it["unparsed"] for it in items) / n if n else 0.0,
            "distinct": len({normalize_text(y) for y in ys}) / len(ys) if ys else 0.0,
            "mean_words": sum(len(y.split()) for y in ys) / len(ys) if ys else 0.0,
            "reject_reasons": dict(Counter(it["reject_reason"] for it in items if it["reject_reason"]).most_common())}


def run_commonsense_eval(cfg: RunConfig, progress: bool = True, models: list | None = None,
                         backend_factory: Callable[[EvalModelSpec], Any] | None = None) -> dict[str, Any]:
    """run_eval for the commonsense task (same arguments, same caching and phases)."""
    t0 = time.perf_counter()
    specs = E.model_specs(cfg.eval.models if models is None else models)
    out = E.eval_dir(cfg)
    events, source = load_events(cfg)
    rels = cfg.task.relations
    critic_specs = cfg.eval.critics if cfg.eval.critics is not None else cfg.filter.critics
    encoder = cfg.eval.encoder or cfg.filter.dedup.encoder

    def score_one(critics, outputs):
        items = judge(critics, events, rels, outputs)
        return summarize(items, rels), items

    rows = E.run_models(cfg, specs, out, critic_specs, encoder,
                        lambda spec: fingerprint(spec, cfg, events, critic_specs, encoder),
                        lambda spec: generate(spec, cfg, events, out, progress, backend_factory), score_one, role)
    results = {"task": "commonsense",
               "inputs": {"source": source, "events": len(events), "relations": rels, "count": len(events) * len(rels),
                          "limit": cfg.eval.limit},
               "critics": [c.model_dump() for c in critic_specs],
               "critics_source": "eval.critics" if cfg.eval.critics is not None else "filter.critics",
               "sheet_labels": SHEET_LABELS}
    results["seconds"] = round(time.perf_counter() - t0, 2)
    return E.finish_results(results, rows, specs, out)


run = run_commonsense_eval  # what distill.trainers.evaluate.run_eval calls for this task


# ---- results.md ------------------------------------------------------------------------------

def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def table(results: dict[str, Any]) -> str:
    rels = results["inputs"]["relations"]
    head = ["system", "role", "n", f"accepted ({results['critics_source']}) [95% CI]", *rels, "empty", "unparsed",
            "distinct", "mean words"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in results["models"]:
        m = row["metrics"]
        ci = m["accepted_ci"]
        acc = _pct(m["accepted"]) + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")
        role_ = f"teacher ({row['spec']['few_shot']}-shot)" if row["role"] == "teacher" else row["role"]
        cells = [row["name"], role_, str(m["n"]), acc, *(_pct(m["per_relation"][r]["accepted"]) for r in rels),
                 _pct(m["empty"]), _pct(m["unparsed"]), f"{m['distinct']:.2f}", f"{m['mean_words']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


LEGEND = """\
One item per (held-out event, relation); rates are over all items (an empty or unparsed output counts as not accepted):
- **accepted**: every critic of the chain keeps the inference (judged on the record `"<event> | <relation>"` -> \
inference, as the corpus was filtered); 95% Wilson interval. The relation columns: the same, per relation.
- **empty**: no inference. **unparsed**: the teacher's output failed the task's JSON schema (what the generator drops), \
so every relation of that event is empty.
- **distinct**: distinct inferences (lowercased, punctuation dropped) / non-empty inferences; low means one answer fits \
all. **mean words**: per non-empty inference.
Roles: *teacher*: the task's few-shot JSON prompt per event; *student*: the prompt `distill train` taught it, per item; \
*copy*: the event as the inference (a floor)."""


def markdown(results: dict[str, Any]) -> str:
    inp, crit = results["inputs"], ", ".join(c["type"] for c in results["critics"]) or "none"
    reasons = [f"- {r['name']}: " + (", ".join(f"{k} {v}" for k, v in list(r["metrics"]["reject_reasons"].items())[:5])
                                     or "none") for r in results["models"]]
    text = (f"# Evaluation (commonsense)\n\n{inp['events']} held-out events ({inp['source']}) × "
            f"{len(inp['relations'])} relations = {inp['count']} items. Critics ({results['critics_source']}): {crit}."
            f"\n\n{table(results)}\n\n{LEGEND}\n\nTop reject reasons (first failing critic):\n" + "\n".join(reasons)
            + "\n")
    human = sheet.human_table(results)
    return text + (f"\n## Human judgment\n\n{human}\n" if human else "")


def report(results: dict[str, Any]) -> str:
    """What ``distill eval`` prints."""
    cached = [r["name"] for r in results["models"] if r["cached"]]
    return (f"\n{table(results)}\n\n{results['inputs']['count']} items, {results['seconds']} s"
            + (f" (reused: {', '.join(cached)})" if cached else "")
            + f"; results.json, results.md and generations/ in {results['output_dir']}")
