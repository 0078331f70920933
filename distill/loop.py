"""``distill run``: the whole pipeline, round after round (self-distillation).

Round 1 runs the configured task with the configured teacher, then critics and dedup,
the corpus, the student, and the evaluation. Round k+1 uses round k's student as the
teacher in instruction mode: the inputs x are sentences the *original* teacher wrote in
round 1 (its samples), the outputs y are the student's paraphrases (``loop.k`` samples
each); the same critics filter them, a new corpus is built, and the student is trained
again (from round k's student, or from the base model with ``loop.train_from: base``).
For summarization the inputs are round 1's documents and the student summarises them.

Layout under ``output_dir``::

    round-1/            generate output (shards/, cache.sqlite, manifest.json, ...)
      filtered/         distill filter
      corpus/           distill corpus
      student/          distill train (model/ is the round's student)
      round.done.json   written last: a finished round is never redone
    round-2/inputs.jsonl  the x's given to round 1's student
    eval/               distill eval over baselines and every round's student
    results.md, run_summary.json

Every stage resumes on its own (shards and markers, fingerprints); the round marker
only saves re-checking a finished round.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

from distill.config import ParaphraseInstructTask, RunConfig, SummarizeInstructTask, dump_config
from distill.errors import BudgetExhausted, ConfigError, DistillError
from distill.shards import atomic_write, atomic_write_json


def round_dir(cfg: RunConfig, k: int) -> Path:
    return Path(cfg.output_dir) / f"round-{k}"


def round_config(cfg: RunConfig, k: int, student_of_previous: str | None) -> RunConfig:
    """The config of round ``k``: every stage's folders inside ``round-k/``; from round 2
    on, the previous student paraphrases (summarises) round 1's inputs in instruction mode."""
    d = cfg.model_dump()
    rdir = round_dir(cfg, k)
    d.update(output_dir=str(rdir), round=k)
    d["filter"].update(input_dir=None, output_dir=None)
    d["corpus"].update(input_dir=None, output_dir=None)
    d["train"].update(corpus_dir=None, output_dir=None)
    if k > 1:
        assert student_of_previous is not None
        if cfg.task.name.startswith("summarize"):  # the student summarises round 1's documents
            d["task"] = SummarizeInstructTask(
                inputs=str(rdir / "inputs.jsonl"), field="text", k=cfg.loop.k, sampling=cfg.loop.sampling,
                instruction=cfg.train.instruction, sentences=getattr(cfg.task, "sentences", 1),
            ).model_dump()
        else:
            d["task"] = ParaphraseInstructTask(
                inputs=str(rdir / "inputs.jsonl"), field="text", k=cfg.loop.k, sampling=cfg.loop.sampling,
                instruction=cfg.train.instruction,  # the prompt the student was trained on
                constraints=getattr(cfg.task, "constraints", None),  # round 1's lexical constraints, if any
            ).model_dump()
        d["teacher"]["model"] = student_of_previous
        if cfg.loop.train_from == "previous":
            d["train"]["model"] = student_of_previous
    return RunConfig.model_validate(d)


def round1_inputs(cfg: RunConfig) -> list[dict[str, str]]:
    """Round 1's inputs x, each once, in a seeded order, capped at ``loop.inputs_per_round``:
    the seed sentences of an instruction-mode round 1, or with ``paraphrase_pairs`` the
    teacher's own sampled sentences."""
    from distill.critics.pipeline import detect_store

    store = detect_store(round_dir(cfg, 1) / "shards")
    seen: dict[str, dict[str, str]] = {}
    for r in store.iter_records():  # with paraphrase_pairs every kept sample is some record's input
        text = r.input.strip()
        if text and text not in seen:
            seen[text] = {"text": text, "context_id": str(r.metadata.get("context_id") or r.metadata.get("source_id") or "")}
    rows = sorted(seen.values(), key=lambda x: x["text"])
    random.Random(cfg.seed).shuffle(rows)
    if not rows:
        raise DistillError(f"round 1 under {round_dir(cfg, 1)} generated no samples to use as round-2 inputs")
    return rows[: cfg.loop.inputs_per_round]


def write_inputs(path: Path, rows: list[dict[str, str]]) -> None:
    if path.is_file():  # written once: a resumed round must see the very same inputs
        return
    atomic_write(path, lambda f: f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()))


def run_round(cfg: RunConfig, k: int, rcfg: RunConfig, progress: bool) -> dict[str, Any]:
    """Generate, filter, build the corpus and train for one round; returns its summary."""
    from distill.corpus.build import run_corpus
    from distill.critics.pipeline import run_filter
    from distill.runner import run_generate
    from distill.trainers.train import run_train

    times: dict[str, float] = {}

    def timed(name, fn, *a, **kw):
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        times[name] = round(time.perf_counter() - t0, 1)
        return out

    gen = timed("generate", run_generate, rcfg, progress=progress)
    if gen.status == "budget_exhausted":
        raise BudgetExhausted(f"round {k}: {gen.message}")
    if gen.status != "complete":
        raise DistillError(f"round {k}: generation stopped ({gen.status}): {gen.message}")
    fstats = timed("filter", run_filter, rcfg, progress=progress)
    cstats = timed("corpus", run_corpus, rcfg, progress=progress)
    tstats = timed("train", run_train, rcfg, progress=progress)
    return {"round": k, "teacher": rcfg.teacher.model or "default", "generated": fstats["funnel"][0]["count"],
            "kept": fstats["funnel"][-1]["count"], "funnel": fstats["funnel"],
            "corpus": _split_sizes(cstats), "train": _train_summary(tstats),
            "student": tstats["model_dir"],
            "tokens": {"prompt": gen.prompt_tokens_paid, "completion": gen.completion_tokens_paid},
            "seconds": times}


def _split_sizes(cstats: dict[str, Any]) -> dict[str, int]:
    return {name: v["rows"] for name, v in cstats.get("splits", {}).items()}


def _train_summary(t: dict[str, Any]) -> dict[str, Any]:
    keys = ("steps", "epochs", "stopped_early", "train_loss_first", "train_loss_last", "eval_loss_first",
            "eval_loss_best", "tokens_per_second", "wall_s")
    return {k: t.get(k) for k in keys}


def run_all(cfg: RunConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) every round of ``cfg``, evaluating after each; returns the summary."""
    if cfg.task.name == "commonsense" and cfg.loop.rounds > 1:
        raise ConfigError("loop.rounds: the commonsense task runs one round (teacher -> critics -> corpus -> student "
                          "-> eval); later rounds paraphrase, which this task does not")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "config.yaml", lambda f: f.write(dump_config(cfg).encode()))
    rounds: list[dict[str, Any]] = []
    student: str | None = None
    eval_result: dict[str, Any] | None = None
    for k in range(1, cfg.loop.rounds + 1):
        rcfg = round_config(cfg, k, student)
        marker = round_dir(cfg, k) / "round.done.json"
        if marker.is_file():
            summary = json.loads(marker.read_text())
        else:
            if k > 1:
                write_inputs(round_dir(cfg, k) / "inputs.jsonl", round1_inputs(cfg))
            summary = run_round(cfg, k, rcfg, progress)
            atomic_write_json(marker, summary)
            if not cfg.loop.keep_checkpoints:  # the round is done: its model/ is all later rounds need
                shutil.rmtree(Path(summary["student"]).parent / "checkpoints", ignore_errors=True)
        rounds.append(summary)
        student = summary["student"]
        if cfg.loop.evaluate:
            eval_result = evaluate(cfg, rounds, progress)
        write_summary(cfg, rounds, eval_result)
    return {"rounds": rounds, "eval": eval_result}


def evaluate(cfg: RunConfig, rounds: list[dict[str, Any]], progress: bool) -> dict[str, Any]:
    """Baselines (``eval.models``) plus every finished round's student, in one table; the
    evaluation caches per model, so a baseline is generated once for the whole run."""
    from distill.trainers.evaluate import run_eval

    ecfg = cfg.model_copy(deep=True)
    ecfg.eval.output_dir = cfg.eval.output_dir or str(Path(cfg.output_dir) / "eval")
    models = [m.model_dump() for m in ecfg.eval.models] + [
        {"name": f"student-round{r['round']}", "kind": "model", "model": r["student"]} for r in rounds]
    return run_eval(ecfg, progress=progress, models=models)


def write_summary(cfg: RunConfig, rounds: list[dict[str, Any]], eval_result: dict[str, Any] | None) -> None:
    out = Path(cfg.output_dir)
    atomic_write_json(out / "run_summary.json", {"rounds": rounds, "eval": eval_result})
    lines = ["# distill run", "", f"Config: `{out / 'config.yaml'}`", "",
             "| round | teacher | generated | kept | train / validation / test | train loss first → last | "
             "best validation loss | "
             "time generate / filter / corpus / train (s) |", "|---|---|---|---|---|---|---|---|"]
    for r in rounds:
        c, t, s = r["corpus"], r["train"], r["seconds"]
        teacher = "the teacher" if r["round"] == 1 else f"student of round {r['round'] - 1}"
        lines.append(f"| {r['round']} | {teacher}"
                     f" | {r['generated']} | {r['kept']} | {c.get('train', 0)} / {c.get('validation', 0)} / "
                     f"{c.get('test', 0)} | {_fmt(t.get('train_loss_first'))} → {_fmt(t.get('train_loss_last'))} | "
                     f"{_fmt(t.get('eval_loss_best'))}"
                     f" | {' / '.join(str(s.get(x, '-')) for x in ('generate', 'filter', 'corpus', 'train'))} |")
    if eval_result:
        from distill.trainers.compare import round_lines

        md = Path(eval_result["output_dir"]) / "results.md"
        verdicts = round_lines(eval_result)
        if verdicts:  # meaning-aware numbers only (human P rate, else meaning critics): see trainers/compare.py
            lines += ["", "## Does round k+1 beat round k?", ""] + [f"- {v}" for v in verdicts]
        lines += ["", "## Evaluation (held-out inputs)", "", md.read_text() if md.is_file() else "(no results.md)"]
    atomic_write(out / "results.md", lambda f: f.write(("\n".join(lines) + "\n").encode()))


def refresh_summary(cfg: RunConfig, eval_result: dict[str, Any]) -> None:
    """Rewrite a finished or partial run's results.md and run_summary.json with a new
    evaluation result (a scored human sheet), if ``cfg`` is a `distill run` folder whose
    evaluation lives where ``eval_result`` came from."""
    path = Path(cfg.output_dir) / "run_summary.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    if not old.get("eval") or Path(old["eval"]["output_dir"]).resolve() != Path(eval_result["output_dir"]).resolve():
        return
    write_summary(cfg, old["rounds"], eval_result)


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else "-"


def cli_run(cfg: RunConfig, progress: bool = True) -> int:
    t0 = time.perf_counter()
    run_all(cfg, progress=progress)
    print((Path(cfg.output_dir) / "results.md").read_text())
    print(f"done in {time.perf_counter() - t0:.0f} s; summary in {Path(cfg.output_dir) / 'run_summary.json'}")
    return 0
