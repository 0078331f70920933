"""``distill eval`` for the summarization task: the teacher, its students and lead-1 on held-out documents.

The end of the summarization pipe (documents -> teacher -> critics -> corpus -> student ->
**eval**); :func:`distill.trainers.evaluate.run_eval` hands over here when the task is
``summarize_instruct`` or ``summarize_pairs``. The documents come in sets: ``eval.inputs``
(one set; a JSONL row may carry ``references``, a list of strings or one string), else
:data:`DEFAULT_SETS`: ACL abstracts with three human aspect summaries each, and held-out news
documents without references. ``eval.limit`` caps each set. What each system of
``eval.models`` is:

- ``kind: model`` with ``few_shot: N`` >= 1, or with no ``model`` (the default CPU teacher), a
  **teacher**: the task's own prompt
  (:meth:`SummarizeInstruct.prompt`, chat or plain as ``task.chat``) after its first N examples;
- ``kind: model`` with ``few_shot: 0``, a **student**: asked exactly what ``distill train``
  fed it (``train.instruction``, or the spec's ``instruction``, and the document; chat or plain
  prompt as :class:`~distill.trainers.data.PairEncoder` decides from the model's tokenizer),
  which is ``SummarizeInstruct.prompt(document)`` with no examples for a chat model;
- ``kind: copy``: **lead-1**, the document's first sentence (the classic extractive baseline).

Sampling is the spec's (greedy by default). An answer is read as the generator reads one:
its first whole sentence. With none, the stripped answer is kept for the numbers but counted
as *unfinished* and not accepted (the generator drops it); an empty answer stays empty.

Per system and set: accepted by ``eval.critics`` (else ``filter.critics``, judged on a Record
document -> summary as the generator writes) with a 95% Wilson interval, reject reasons,
empty / unfinished rates, mean words, compression, distinct summaries, the means of the
summary critics' scores where they wrote them (:data:`SCORE_KEYS`), and on a set with
references ROUGE-1/2/L F1 (best reference per document, averaged over documents; a bootstrap
interval on ROUGE-L).

Writes what the commonsense evaluation writes: ``results.json``, ``results.md``,
``generations/<name>.jsonl``, ``models/<name>-<fp>.json`` (reused while the fingerprint
holds) and ``cache.sqlite``. The blind sheet takes these items with :data:`SHEET_LABELS`
(``--sheet N``: N documents taking the sets in turn, :func:`interleave`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from distill.config import EvalModelSpec, RunConfig, SummarizeInstructTask
from distill.errors import ConfigError, DistillError
from distill.trainers import evaluate as E
from distill.trainers import sheet
from distill.trainers.eval_commonsense import instruction, student_encoder, student_prompt
from distill.trainers.eval_commonsense import student_params as params

DEFAULT_SETS = ("builtin:aclsum-test", "builtin:lee-docs-heldout")
SHEET_LABELS = {
    "G": "a faithful one-sentence summary of the document's main point: everything it says is in the document",
    "E": "faithful but extractive: copies a sentence (or most of one) of the document word for word",
    "U": "unfaithful: adds, changes or contradicts a fact (a name, number, time, role or claim) that the document "
         "does not support",
    "O": "off: misses the main point (only a minor detail), not a summary, degenerate or empty"}
#: record.scores of the summary critics whose means are reported (infosum, coverage, extractive)
SCORE_KEYS = ("info_saliency", "info_faithfulness", "coverage", "extract")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
BOOTSTRAP = {"resamples": 1000, "seed": 0, "confidence": 0.95}
METRICS_VERSION = 1  # bump when a summarization metric changes (on top of evaluate.RESULT_VERSION)


@dataclasses.dataclass
class DocSet:
    """One eval set: documents (whitespace normalised as the task's seeds are), their ids and
    references (an empty list where a document has none)."""

    name: str
    source: str
    docs: list[str]
    ids: list[str]
    references: list[list[str]]


def _references(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    refs = [value] if isinstance(value, str) else value
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise DistillError(f"{where}: references must be a string or a list of strings")
    return [" ".join(r.split()) for r in refs if r.strip()]


def load_sets(cfg: RunConfig) -> list[DocSet]:
    """``eval.inputs`` as one set, else :data:`DEFAULT_SETS`; each capped at ``eval.limit``."""
    from distill.generator.seeds import read_rows

    given = cfg.eval.inputs
    sets = []
    for path in [given] if given else DEFAULT_SETS:
        where = "eval.inputs" if given else f"eval (default set {path}; set eval.inputs to use another)"
        try:
            rows = read_rows(path, cfg.eval.field)[: cfg.eval.limit]
        except DistillError as e:
            raise DistillError(f"{where}: {e}") from None
        except OSError as e:  # a shipped pool's file missing from the install
            raise DistillError(f"{where}: cannot read {path}: {e}") from None
        name = str(path).removeprefix("builtin:") if str(path).startswith("builtin:") else Path(path).name
        sets.append(DocSet(name, str(path), [" ".join(str(r[cfg.eval.field]).split()) for r in rows],
                           [str(r.get("id", r["_line"])) for r in rows],
                           [_references(r.get("references"), f"{where}: {path} line {r['_line']}") for r in rows]))
    return sets


def interleave(sizes: list[int]) -> list[int]:
    """Item indices taking the sets in turn (set 1's first, set 2's first, set 1's second, ...):
    the order the blind sheet takes documents in, so ``--sheet N`` draws on every set."""
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    return [starts[k] + i for i in range(max(sizes, default=0)) for k in range(len(sizes)) if i < sizes[k]]


def role(spec: EvalModelSpec) -> str:
    """lead-1 (kind copy); teacher: few-shot, or the default model (the CPU teacher) zero-shot;
    else a student."""
    return "lead-1" if spec.kind == "copy" else "teacher" if spec.few_shot or spec.model is None else "student"


def teacher_task(cfg: RunConfig, spec: EvalModelSpec):
    """SummarizeInstruct on ``task`` (summarize_instruct) or the defaults (summarize_pairs),
    with the spec's first N examples and instruction."""
    from distill.generator.tasks.summarize import SummarizeInstruct

    base = cfg.task if cfg.task.name == "summarize_instruct" else SummarizeInstructTask()
    if spec.few_shot > len(base.few_shot):
        raise ConfigError(f"eval.models ({spec.name}): few_shot={spec.few_shot}, but the summarization task has "
                          f"{len(base.few_shot)} examples (task.few_shot)")
    update = {"few_shot": list(base.few_shot[: spec.few_shot]), "instruction": spec.instruction or base.instruction}
    return SummarizeInstruct(base.model_copy(update=update), cfg.seed)


def lead1(document: str) -> str:
    from distill.generator.tasks.paraphrase import split_sentences

    sents = split_sentences(document)
    return sents[0] if sents else ""


def read_answer(text: str) -> tuple[str, bool]:
    """(summary, unfinished): the answer's first whole sentence, as the generator keeps it;
    without one, the stripped answer and True; an empty answer is ("", False)."""
    from distill.generator.tasks.paraphrase import clean_answer
    from distill.generator.tasks.summarize import first_sentences

    y = clean_answer(text)
    if not y:
        return "", False
    first = first_sentences(y, 1, False)  # with one sentence kept, a cut answer reads the same
    return (y, True) if first is None else (first, False)


def fingerprint(spec: EvalModelSpec, cfg: RunConfig, sets: list[DocSet], critic_specs: list,
                encoder: str | None) -> str:
    r = role(spec)
    gen = None
    if r == "teacher":
        task = teacher_task(cfg, spec)
        gen = {**E.backend_identity(spec, cfg), "instruction": task.cfg.instruction, "shots": task.cfg.few_shot,
               "chat": task.cfg.chat, "params": dataclasses.asdict(params(cfg, spec))}
    elif r == "student":
        gen = {**E.backend_identity(spec, cfg), "instruction": instruction(cfg, spec),
               "params": dataclasses.asdict(params(cfg, spec))}
    judge = cfg.teacher.model_dump() if any(c.type == "lm_judge" for c in critic_specs) else None
    data = [[s.name, s.docs, s.ids, s.references] for s in sets]
    payload = {"v": E.RESULT_VERSION, "metrics_v": METRICS_VERSION, "task": "summarization", "role": r, "gen": gen,
               "inputs": hashlib.sha256(json.dumps(data).encode()).hexdigest(),
               "critics": [c.model_dump() for c in critic_specs], "judge_teacher": judge, "encoder": encoder}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def generate(spec: EvalModelSpec, cfg: RunConfig, docs: list[str], out: Path, progress: bool = True,
             backend_factory: Callable[[EvalModelSpec], Any] | None = None) -> list[tuple[str, bool]]:
    """(summary, unfinished) per document, one model load for all sets."""
    r = role(spec)
    if r == "lead-1":
        return [(lead1(d), False) for d in docs]
    if r == "teacher":
        task = teacher_task(cfg, spec)
        prompts = [task.prompt(d) for d in docs]
    else:
        text = instruction(cfg, spec)
        enc = student_encoder(spec, text)
        prompts = [student_prompt(enc, text, d) for d in docs]
    return [read_answer(t) for t in E.complete(spec, cfg, prompts, params(cfg, spec), out, progress,
                                                 backend_factory)]


def judge(critics: list, sets: list[DocSet], outputs: list[tuple[str, bool]]) -> list[dict]:
    """One item per (set, document): kept by every critic, or the first failing reason; an
    empty answer is dropped as ``empty`` and an unfinished one as ``unfinished`` without
    asking the critics. ``scores``: what the critics wrote into the record."""
    from distill.record import Record

    keys = [(s, j) for s in sets for j in range(len(s.docs))]
    items = []
    for i, ((s, j), (y, unfinished)) in enumerate(zip(keys, outputs)):
        it = {"i": i, "set": s.name, "doc_id": s.ids[j], "input": s.docs[j], "output": y, "empty": not y,
              "unfinished": unfinished}
        if s.references[j]:
            it["references"] = s.references[j]
        items.append(it)
    records = {str(it["i"]): Record(id=str(it["i"]), task="summarization", input=it["input"], output=it["output"],
                                    metadata={"id": it["doc_id"], "set": it["set"],
                                              **({"references": it["references"]} if "references" in it else {})})
               for it in items if not it["empty"] and not it["unfinished"]}
    kept, reasons = E.judge_records(critics, list(records.values()))
    for it in items:
        rec = records.get(str(it["i"]))
        it["accepted"] = str(it["i"]) in kept
        it["reject_reason"] = reasons.get(str(it["i"])) if rec else "empty" if it["empty"] else "unfinished"
        it["scores"] = dict(rec.scores) if rec else {}
    add_rouge(items)
    return items


def add_rouge(items: list[dict]) -> None:
    """``item["rouge"]``: ROUGE-1/2/L F1 of the output against each of its references, the best
    reference per measure (rouge_score's score_multi); 0 for an empty output."""
    todo = [it for it in items if it.get("references")]
    if not todo:
        return
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    for it in todo:
        s = scorer.score_multi(it["references"], it["output"]) if it["output"] else None
        it["rouge"] = {t: float(s[t].fmeasure) if s else 0.0 for t in ROUGE_TYPES}


def bootstrap_ci(values: list[float]) -> list[float] | None:
    """Percentile interval of the mean: documents resampled with replacement (fixed seed)."""
    if not values:
        return None
    import numpy as np

    v = np.asarray(values, dtype=float)
    idx = np.random.default_rng(BOOTSTRAP["seed"]).integers(0, len(v), size=(BOOTSTRAP["resamples"], len(v)))
    tail = 100 * (1 - BOOTSTRAP["confidence"]) / 2
    lo, hi = np.percentile(v[idx].mean(axis=1), [tail, 100 - tail])
    return [float(lo), float(hi)]


def summarize(items: list[dict]) -> dict[str, Any]:
    """The numbers of one system on one set (the items of that set)."""
    from distill.critics.rules import normalize_text

    n = len(items)
    kept = sum(it["accepted"] for it in items)
    full = [it for it in items if not it["empty"]]
    ys = [it["output"] for it in full]
    ci = sheet.wilson(kept, n)
    out = {"n": n, "accepted_count": kept, "accepted": kept / n if n else 0.0, "accepted_ci": list(ci) if ci else None,
           "empty": (n - len(full)) / n if n else 0.0,
           "unfinished": sum(it["unfinished"] for it in items) / n if n else 0.0,
           "distinct": len({normalize_text(y) for y in ys}) / len(ys) if ys else 0.0,
           "mean_words": sum(len(y.split()) for y in ys) / len(ys) if ys else 0.0,
           "compression": (sum(len(it["output"].split()) / max(1, len(it["input"].split())) for it in full) / len(full)
                           if full else 0.0),
           "reject_reasons": dict(Counter(it["reject_reason"] for it in items if it["reject_reason"]).most_common()),
           "rouge": None, "critic_scores": {}}
    scored = [it["rouge"] for it in items if "rouge" in it]
    if scored:
        out["rouge"] = {"n": len(scored), **{t: sum(r[t] for r in scored) / len(scored) for t in ROUGE_TYPES},
                        "rougeL_ci": bootstrap_ci([r["rougeL"] for r in scored])}
    for k in SCORE_KEYS:  # an item dropped by an earlier critic lacks the later ones' scores
        vals = [float(it["scores"][k]) for it in items if k in it["scores"]]
        if vals:
            out["critic_scores"][k] = {"mean": sum(vals) / len(vals), "n": len(vals)}
    return out


def run_summarize_eval(cfg: RunConfig, progress: bool = True, models: list | None = None,
                       backend_factory: Callable[[EvalModelSpec], Any] | None = None) -> dict[str, Any]:
    """run_eval for the summarization tasks (same arguments, same caching and phases)."""
    t0 = time.perf_counter()
    specs = E.model_specs(cfg.eval.models if models is None else models)
    out = E.eval_dir(cfg)
    sets = load_sets(cfg)
    docs = [d for s in sets for d in s.docs]
    critic_specs = cfg.eval.critics if cfg.eval.critics is not None else cfg.filter.critics
    encoder = cfg.eval.encoder or cfg.filter.dedup.encoder

    def score_one(critics, outputs):
        items = judge(critics, sets, outputs)
        return {s.name: summarize([it for it in items if it["set"] == s.name]) for s in sets}, items

    rows = E.run_models(cfg, specs, out, critic_specs, encoder,
                        lambda spec: fingerprint(spec, cfg, sets, critic_specs, encoder),
                        lambda spec: generate(spec, cfg, docs, out, progress, backend_factory), score_one, role)
    results = {"task": "summarization",
               "inputs": {"sets": [{"name": s.name, "source": s.source, "count": len(s.docs),
                                    "with_references": sum(bool(r) for r in s.references)} for s in sets],
                          "count": len(docs), "limit": cfg.eval.limit},
               "critics": [c.model_dump() for c in critic_specs],
               "critics_source": "eval.critics" if cfg.eval.critics is not None else "filter.critics",
               "rouge": {"types": list(ROUGE_TYPES), "use_stemmer": True, "references": "max per document",
                         "bootstrap": BOOTSTRAP},
               "sheet_labels": SHEET_LABELS, "sheet_order": interleave([len(s.docs) for s in sets])}
    results["seconds"] = round(time.perf_counter() - t0, 2)
    return E.finish_results(results, rows, specs, out)


run = run_summarize_eval  # what distill.trainers.evaluate.run_eval calls for this task


# ---- results.md ------------------------------------------------------------------------------

def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _role(row: dict[str, Any]) -> str:
    return f"teacher ({row['spec']['few_shot']}-shot)" if row["role"] == "teacher" else row["role"]


def table(results: dict[str, Any], set_name: str) -> str:
    """One set's table: a row per system; the ROUGE columns only where the set has references."""
    refs = any(r["metrics"][set_name]["rouge"] for r in results["models"])
    head = ["system", "role", "n", f"accepted ({results['critics_source']}) [95% CI]",
            *(["ROUGE-1", "ROUGE-2", "ROUGE-L [95% CI]"] if refs else []),
            "compression", "mean words", "empty", "unfinished", "distinct"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in results["models"]:
        m = row["metrics"][set_name]
        ci, rg = m["accepted_ci"], m["rouge"]
        acc = _pct(m["accepted"]) + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")
        rouge = []
        if refs:
            rouge = ["-"] * 3 if not rg else [f"{100 * rg['rouge1']:.1f}", f"{100 * rg['rouge2']:.1f}",
                                               f"{100 * rg['rougeL']:.1f} [{100 * rg['rougeL_ci'][0]:.1f}, "
                                               f"{100 * rg['rougeL_ci'][1]:.1f}]"]
        cells = [row["name"], _role(row), str(m["n"]), acc, *rouge, f"{m['compression']:.2f}",
                 f"{m['mean_words']:.1f}", _pct(m["empty"]), _pct(m["unfinished"]), f"{m['distinct']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def score_table(results: dict[str, Any], set_name: str) -> str:
    """Means of the summary critics' scores per system ('' when no critic wrote one)."""
    keys = [k for k in SCORE_KEYS if any(k in r["metrics"][set_name]["critic_scores"] for r in results["models"])]
    if not keys:
        return ""
    lines = ["| system | " + " | ".join(f"{k} (n)" for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for row in results["models"]:
        cs = row["metrics"][set_name]["critic_scores"]
        lines.append(f"| {row['name']} | " + " | ".join(f"{cs[k]['mean']:.3f} ({cs[k]['n']})" if k in cs else "-"
                                                         for k in keys) + " |")
    return "\n".join(lines)


LEGEND = """\
One item per document; rates are over the set's documents (an empty or unfinished summary counts as not accepted):
- **accepted**: every critic of the chain keeps the summary (judged on the record document -> summary, as the corpus \
was filtered); 95% Wilson interval. An empty summary is dropped as `empty` and an unfinished one as `unfinished` \
without asking the critics (the generator drops both).
- **ROUGE-1/2/L** (sets with human references only): F1 ×100 (rouge_score, Porter stemmer) against the document's \
references, the best reference per document and measure, averaged over the documents with references; ROUGE-L \
with a 95% bootstrap interval (1000 resamples of the documents, fixed seed).
- **compression**: summary words / document words and **mean words**, over non-empty summaries.
- **empty**: no answer. **unfinished**: an answer without a whole sentence (cut by max_tokens, or no final \
punctuation), kept as it is for ROUGE and the lengths.
- **distinct**: distinct summaries (lowercased, punctuation dropped) / non-empty summaries.
Roles: *teacher (N-shot)*: the task's prompt with its first N examples; *student*: zero-shot, the prompt \
`distill train` taught (instruction and document); *lead-1*: the document's first sentence (`kind: copy`), the \
extractive baseline. A model's answer is read as the generator reads it: its first whole sentence."""


def markdown(results: dict[str, Any]) -> str:
    inp, crit = results["inputs"], ", ".join(c["type"] for c in results["critics"]) or "none"
    parts = [f"# Evaluation (summarization)\n\n{inp['count']} documents in {len(inp['sets'])} set(s). "
             f"Critics ({results['critics_source']}): {crit}."]
    for s in inp["sets"]:
        refs = f", {s['with_references']} with human reference summaries" if s["with_references"] else ""
        parts.append(f"## {s['name']}\n\n{s['count']} documents ({s['source']}){refs}.\n\n"
                     f"{table(results, s['name'])}")
        scores = score_table(results, s["name"])
        if scores:
            parts.append("Critic scores, mean over the items that reached the critic (n):\n\n" + scores)
        parts.append("Top reject reasons (first failing critic):\n" + "\n".join(
            f"- {r['name']}: " + (", ".join(f"{k} {v}" for k, v in list(r["metrics"][s["name"]]["reject_reasons"]
                                                                       .items())[:5]) or "none")
            for r in results["models"]))
    parts.append(LEGEND)
    human = sheet.human_table(results)
    if human:
        parts.append(f"## Human judgment\n\n{human}")
    return "\n\n".join(parts) + "\n"


def report(results: dict[str, Any]) -> str:
    """What ``distill eval`` prints."""
    cached = [r["name"] for r in results["models"] if r["cached"]]
    tables = "\n\n".join(f"{s['name']} ({s['count']} documents)\n{table(results, s['name'])}"
                         for s in results["inputs"]["sets"])
    return (f"\n{tables}\n\n{results['inputs']['count']} documents, {results['seconds']} s"
            + (f" (reused: {', '.join(cached)})" if cached else "")
            + f"; results.json, results.md and generations/ in {results['output_dir']}")
