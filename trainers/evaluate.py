"""``distill eval``: run models and baselines on held-out inputs, score them reference-free.

Sits at the end of the pipe (seeds -> teacher -> critics -> corpus -> student -> **eval**)
and touches nothing upstream: it reads ``cfg.eval`` (and ``filter.critics`` /
``filter.dedup.encoder`` for its defaults) and writes under ``<eval out>/``:

- ``results.json``, ``results.md`` (one table, one row per model, with a legend),
  ``metrics.png`` (grouped bars), ``generations/<name>.jsonl`` (every input, output and
  per-item score);
- ``models/<name>-<fingerprint>.json``: one model's finished result. The fingerprint
  covers the model (path and its weight files' size/mtime), the prompt, sampling, inputs,
  critics and encoder, so a rerun, or the next round of ``distill run``, reuses it and
  never loads a model whose result is already there;
- ``cache.sqlite``: the request cache of the project's Teacher (a crash mid-generation
  pays nothing twice), ``embeddings.sqlite``: the encoder's;
- ``sheet/``: a blind human-judgment sheet and, once scored, the human rates that
  results.json and results.md then carry (:mod:`distill.trainers.sheet`).

"accepted" is the share every critic of the chain keeps (``eval.critics``, else
``filter.critics``; the table header says which); with ``eval.meaning_critics`` a second
chain judges every output on its own ("meaning-accepted").

Two phases: every model that needs it generates first, one at a time, released before
the next; then one encoder and one critic chain score all new outputs.
Metric definitions: :mod:`distill.trainers.metrics`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from distill.config import EvalModelSpec, ParaphraseInstructTask, RunConfig
from distill.critics.base import Critic
from distill.errors import ConfigError
from distill.rundir import RunFolder
from distill.shards import atomic_write, atomic_write_json
from distill.trainers import metrics as M
from distill.trainers import sheet

RESULT_VERSION = 1  # bump when a metric's definition changes: invalidates every cached result
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")



def eval_dir(cfg: RunConfig) -> Path:
    return Path(cfg.eval.output_dir or Path(cfg.output_dir) / "eval")


def load_inputs(cfg: RunConfig) -> tuple[list[str], str]:
    """(inputs, a description of their source)."""
    if cfg.eval.inputs is None:
        from distill.data.heldout import load_heldout

        return load_heldout("lee", cfg.eval.limit), "lee_background.cor held-out sample (distill.data.heldout)"
    from distill.generator.seeds import read_rows

    rows = read_rows(cfg.eval.inputs, cfg.eval.field)[: cfg.eval.limit]
    return [r[cfg.eval.field].strip() for r in rows], str(cfg.eval.inputs)


def _model_identity(spec: EvalModelSpec) -> Any:
    """What identifies the weights without loading them: a file's or folder's weight files'
    name, size and mtime; the default model's GGUF; else the hub id / API model name."""
    if spec.kind == "copy":
        return None
    if spec.model is None:
        from distill.generator.models import DEFAULT_MODEL, find_default_gguf

        path = find_default_gguf()
        return {"default": DEFAULT_MODEL, "file": path.name, "size": path.stat().st_size}
    p = Path(spec.model).expanduser()
    if not p.exists():
        return {"id": spec.model}
    files = [p] if p.is_file() else sorted(f for f in p.iterdir() if f.suffix in WEIGHT_SUFFIXES)
    return {"path": str(p.resolve()), "weights": [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]}


def _prompt_settings(spec: EvalModelSpec) -> tuple[str, list[tuple[str, str]]]:
    from distill.data.heldout import load_few_shot

    shots = load_few_shot()
    if spec.few_shot > len(shots):
        raise ConfigError(f"eval.models ({spec.name}): few_shot={spec.few_shot}, but only {len(shots)} examples ship")
    return spec.instruction or ParaphraseInstructTask.model_fields["instruction"].default, shots[: spec.few_shot]


def backend_identity(spec: EvalModelSpec, cfg: RunConfig) -> dict[str, Any]:
    """What decides a model's outputs besides its prompt and sampling: the weights, the
    backend and the run's teacher settings that apply to it."""
    t = cfg.teacher
    return {"model": _model_identity(spec), "backend": spec.backend, "seed": cfg.seed, "device": t.device,
            "dtype": t.dtype, "options": (t.vllm if spec.backend == "vllm" else t.openai).model_dump()
            if spec.backend != "transformers" else None}


def fingerprint(spec: EvalModelSpec, cfg: RunConfig, inputs: list[str], critic_specs: list, encoder: str | None,
                meaning_specs: list = ()) -> str:
    t = cfg.teacher
    gen = None
    if spec.kind == "model":
        instruction, shots = _prompt_settings(spec)
        gen = {**backend_identity(spec, cfg), "instruction": instruction, "shots": shots,
               "sampling": spec.sampling.model_dump()}
    # an LM-judge critic asks the run's teacher, so then the teacher is part of the critics
    judge = t.model_dump() if any(c.type == "lm_judge" for c in [*critic_specs, *meaning_specs]) else None
    payload = {"v": RESULT_VERSION, "kind": spec.kind, "gen": gen, "inputs": hashlib.sha256(
        json.dumps(inputs).encode()).hexdigest(), "critics": [c.model_dump() for c in critic_specs],
        "judge_teacher": judge, "encoder": encoder}
    if meaning_specs:  # only when set, so results cached before meaning critics existed stay valid
        payload["meaning_critics"] = [c.model_dump() for c in meaning_specs]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def generate(spec: EvalModelSpec, cfg: RunConfig, inputs: list[str], out: Path, progress: bool = True,
             backend_factory: Callable[[EvalModelSpec], Any] | None = None) -> list[str]:
    """One output per input (greedy by default), through the cached Teacher; the model is
    loaded here and released before returning."""
    if spec.kind == "copy":
        return list(inputs)
    from distill.generator.backends import SamplingParams
    from distill.generator.tasks.paraphrase import ParaphraseInstruct, clean_answer

    instruction, shots = _prompt_settings(spec)
    # the very prompt ParaphraseInstruct sends (how a student is trained and later used)
    task = ParaphraseInstruct(ParaphraseInstructTask(inputs="<eval>", instruction=instruction, few_shot=shots), cfg.seed)
    s = spec.sampling
    params = SamplingParams(max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                            seed=cfg.seed)
    texts = complete(spec, cfg, [task.messages(x) for x in inputs], params, out, progress, backend_factory)
    return [clean_answer(t) for t in texts]


def complete(spec: EvalModelSpec, cfg: RunConfig, prompts: list, params, out: Path, progress: bool = True,
             backend_factory: Callable[[EvalModelSpec], Any] | None = None) -> list[str]:
    """One completion text per prompt from ``spec``'s model, through the cached Teacher; the
    model is loaded here and released before returning."""
    from distill.generator.backends import make_backend
    from distill.generator.cache import RequestCache
    from distill.generator.teacher import Teacher

    backend = (backend_factory(spec) if backend_factory is not None
               else make_backend(cfg.teacher.model_copy(update={"model": spec.model, "backend": spec.backend})))
    backend = _WeightsKeyed(backend, _model_identity(spec))
    cache = RequestCache(out / "cache.sqlite")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(prompts), unit="input", desc=f"eval {spec.name}", dynamic_ncols=True)
    try:
        backend.refuse_json_schema(params)
        comps = Teacher(backend, cache, progress=bar).generate(prompts, 1, params)
    finally:
        if bar is not None:
            bar.close()
        cache.close()
        backend.close()  # releases the weights (distill.devices.release_model) before the next model loads
    return [c[0].text for c in comps]


class _WeightsKeyed:
    """A backend whose model_id also names the weights' version, so the request cache never
    serves a retrained student (same folder, new weights) its predecessor's outputs."""

    def __init__(self, inner, identity: Any) -> None:
        self.inner, self.chunk_size = inner, inner.chunk_size
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]
        self.model_id = f"{inner.model_id}@{digest}"

    def generate_requests(self, requests, **stream):  # deliver= / gate= when the inner backend streams
        return self.inner.generate_requests(requests, **stream)

    def __getattr__(self, name: str) -> Any:  # everything else (refuse_constraints, ...) is the inner backend's
        return getattr(self.inner, name)

    def close(self) -> None:
        self.inner.close()


class Scorer:
    """The encoder and the critic chain, loaded once, scoring any number of output lists."""

    def __init__(self, cfg: RunConfig, critic_specs: list, encoder: str | None, out: Path,
                 meaning_specs: list = ()) -> None:
        from distill.critics.embed import Encoder

        self.encoder = Encoder(encoder, cache_path=out / "embeddings.sqlite")
        # a critic both chains name (the filter's entities and likelihood, say) is built once,
        # and a pair it has judged for one chain is not judged again for the other
        shared = dict.fromkeys({_spec_key(c) for c in critic_specs} & {_spec_key(c) for c in meaning_specs})
        self.critics = build_critics(cfg, critic_specs, "eval.critics", encoder, shared)
        self.meaning = build_critics(cfg, meaning_specs, "eval.meaning_critics", encoder, shared)
        self._x_tokens: dict[str, Any] = {}

    def score(self, inputs: list[str], outputs: list[str]) -> list[dict[str, Any]]:
        new = [x for x in dict.fromkeys(inputs) if x not in self._x_tokens]
        self._x_tokens.update(zip(new, M.token_embeddings(self.encoder.model, new)))
        y_tokens = M.token_embeddings(self.encoder.model, outputs)
        cos = (self.encoder.encode(inputs) * self.encoder.encode(outputs)).sum(axis=1)
        kept, reasons = self._judge(self.critics, inputs, outputs)
        if self.meaning:
            m_kept, m_reasons = self._judge(self.meaning, inputs, outputs)
        items = []
        for i, (x, y) in enumerate(zip(inputs, outputs)):
            p, r, f = M.bertscore(self._x_tokens[x], y_tokens[i])
            b = min(M.bleu(x, y), 1.0)
            items.append({"i": i, "input": x, "output": y, "bert_ibleu": M.bert_ibleu(f, b), "bertscore_p": p,
                          "bertscore_r": r, "bertscore_f1": f, "cosine": float(cos[i]), "bleu": b,
                          "rouge_l": M.rouge_l(x, y), "length_ratio": M.length_ratio(x, y),
                          "accepted": str(i) in kept, "reject_reason": reasons.get(str(i)),
                          "copy": M.is_copy(x, y), "near_copy": M.is_near_copy(x, y),
                          "degenerate": M.degenerate(x, y), "empty": not y.strip()})
            if self.meaning:
                items[-1].update(meaning_accepted=str(i) in m_kept, meaning_reject_reason=m_reasons.get(str(i)))
        return items

    @staticmethod
    def _judge(critics: list, inputs: list[str], outputs: list[str]) -> tuple[set[str], dict[str, str]]:
        from distill.record import Record

        return judge_records(critics, [Record(id=str(i), task="paraphrase", input=x, output=y)
                                       for i, (x, y) in enumerate(zip(inputs, outputs))])

    def close(self) -> None:
        close_critics(list({id(c): c for c in self.critics + self.meaning}.values()))
        self.encoder.close()


def _spec_key(spec) -> str:
    return json.dumps(spec.model_dump(), sort_keys=True, default=str)


def build_critics(cfg: RunConfig, specs: list, where: str, encoder: str | None,
                  shared: dict[str, Any] | None = None) -> list:
    """The critics of ``specs``. A spec whose key (:func:`_spec_key`) is in ``shared`` is built
    once, wrapped in :class:`SharedCritic` and stored there, so chains naming it use one."""
    from distill.critics.registry import build_critic

    shared = {} if shared is None else shared
    out = []
    for n, c in enumerate(specs):
        key = _spec_key(c)
        if shared.get(key) is not None:
            out.append(shared[key])
            continue
        critic = build_critic(c.type, c.kwargs(), where=f"{where}[{n}]", teacher=cfg.teacher, encoder=encoder)
        if key in shared:
            critic = shared[key] = SharedCritic(critic)
        out.append(critic)
    return out


class SharedCritic(Critic):
    """A critic used by more than one chain: each distinct (input, output) pair is judged by
    the wrapped critic once and its verdict reused (critics judge a pair on the pair alone)."""

    def __init__(self, inner: Critic) -> None:
        super().__init__(keep_rejects=True)
        self.inner = inner
        self.name, self.batch_size, self.score_names = inner.name, inner.batch_size, inner.score_names
        self.verdicts: dict[tuple[str, str], Any] = {}

    def judge_batch(self, records: list) -> list:
        todo = list({(r.input, r.output): r for r in records if (r.input, r.output) not in self.verdicts}.values())
        if todo:
            self.verdicts.update(zip(((r.input, r.output) for r in todo), self.inner.judge_batch(todo)))
        return [self.verdicts[(r.input, r.output)] for r in records]

    def thresholds(self) -> list:
        return self.inner.thresholds()

    def close(self) -> None:
        if hasattr(self.inner, "close"):
            self.inner.close()


def judge_records(critics: list, records: list) -> tuple[set[str], dict[str, str]]:
    """Ids of the records the chain keeps, and the first failing critic's reason for the rest."""
    from distill.stage import run_pipeline

    kept = {r.id for r in run_pipeline(critics, records)}
    reasons = {r.id: f"{c.name}:{why}" if not why.startswith(c.name) else why
               for c in critics for r, why in c.drain_rejects()}
    return kept, reasons


def close_critics(critics: list) -> None:
    for c in critics:
        if hasattr(c, "close"):
            c.close()


def summarize(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Means of the per-item values (rates for the booleans) and reason counts."""
    n = len(items)
    mean = lambda key, f=float: sum(f(it[key]) for it in items) / n if n else 0.0  # noqa: E731
    out: dict[str, Any] = {"n": n}
    for k in ("bert_ibleu", "bertscore_f1", "bertscore_p", "bertscore_r", "cosine", "bleu", "rouge_l",
              "length_ratio", "accepted", "copy", "near_copy", "empty"):
        out[k] = mean(k)
    out["one_minus_bleu"] = 1.0 - out["bleu"]
    out["degenerate"] = mean("degenerate", lambda v: v is not None)
    out["degenerate_reasons"] = dict(Counter(it["degenerate"] for it in items if it["degenerate"]).most_common())
    out["reject_reasons"] = dict(Counter(it["reject_reason"] for it in items if it["reject_reason"]).most_common())
    if items and "meaning_accepted" in items[0]:
        out["meaning_accepted"] = mean("meaning_accepted")
        # what a comparison trusts: kept by the chain (no copy, well formed) and on meaning
        out["accepted_and_meaning"] = sum(it["accepted"] and it["meaning_accepted"] for it in items) / n
        out["meaning_reject_reasons"] = dict(Counter(it["meaning_reject_reason"] for it in items
                                                     if it["meaning_reject_reason"]).most_common())
    return out


def split_cached(specs: list[EvalModelSpec], out: Path, fingerprint_of: Callable[[EvalModelSpec], str]
                 ) -> tuple[dict[str, dict[str, Any]], list[tuple[EvalModelSpec, RunFolder]]]:
    """({name: stored row} for the models whose result is stored under their fingerprint, [(spec, its
    run folder)] for the others); a row file ``models/<name>-<fingerprint>.json`` is record and result."""
    rows: dict[str, dict[str, Any]] = {}
    todo: list[tuple[EvalModelSpec, RunFolder]] = []
    for spec in specs:
        h = fingerprint_of(spec)
        folder = RunFolder(out / "models", h, record=f"{spec.name}-{h}.json")
        done = folder.finished()
        if done is not None:
            rows[spec.name] = {**done, "cached": True}
        else:
            todo.append((spec, folder))
    return rows, todo


def model_specs(given: list) -> list[EvalModelSpec]:
    """``eval.models`` (or the models ``distill run`` passes) as specs, names unique."""
    specs = [m if isinstance(m, EvalModelSpec) else EvalModelSpec.model_validate(m) for m in given]
    if len({s.name for s in specs}) != len(specs):
        raise ConfigError("eval models: names must be unique")
    return specs


def run_models(cfg: RunConfig, specs: list[EvalModelSpec], out: Path, critic_specs: list, encoder: str | None,
               fingerprint_of: Callable[[EvalModelSpec], str], generate_one: Callable[[EvalModelSpec], Any],
               score_one: Callable[[list, Any], tuple[Any, list[dict]]], role_of: Callable[[EvalModelSpec], str]
               ) -> dict[str, dict[str, Any]]:
    """A task evaluation's two phases: every model without a stored result generates (one in memory
    at a time), then one critic chain scores every new output list (``score_one(critics, outputs)
    -> (metrics, items)``); each row is stored under its fingerprint. Returns {name: row}."""
    rows, todo = split_cached(specs, out, fingerprint_of)
    generated = generate_each(todo, generate_one)
    if todo:
        critics = build_critics(cfg, critic_specs, "eval.critics", encoder)
        try:
            for spec, folder in todo:
                s0 = time.perf_counter()
                outputs, gen_s = generated[spec.name]
                metrics, items = score_one(critics, outputs)
                row = {"name": spec.name, "spec": spec.model_dump(), "role": role_of(spec),
                       "fingerprint": folder.fingerprint, "generate_seconds": round(gen_s, 2),
                       "score_seconds": round(time.perf_counter() - s0, 2), "metrics": metrics, "items": items}
                folder.finish(row)
                rows[spec.name] = {**row, "cached": False}
        finally:
            close_critics(critics)
    return rows


def finish_results(results: dict[str, Any], rows: dict[str, dict[str, Any]], specs: list[EvalModelSpec],
                   out: Path) -> dict[str, Any]:
    """Write each model's items to ``generations/<name>.jsonl``, put the rows (in spec order) into
    ``results["models"]``, attach a scored sheet, write results.json / results.md."""
    for spec in specs:
        items = rows[spec.name].pop("items")
        atomic_write(out / "generations" / f"{spec.name}.jsonl",
                     lambda f, items=items: f.write("".join(json.dumps(it, ensure_ascii=False) + "\n"
                                                            for it in items).encode()))
    results["models"] = [rows[s.name] for s in specs]
    sheet.attach(results, out)
    write_results(results, out)
    results["output_dir"] = str(out)
    return results


def generate_each(todo: list[tuple[EvalModelSpec, RunFolder]], generate_one: Callable[[EvalModelSpec], Any]
                  ) -> dict[str, tuple[Any, float]]:
    """Phase 1 of an evaluation: each model's outputs and seconds, one model in memory at a time."""
    generated = {}
    for spec, _ in todo:
        g0 = time.perf_counter()
        generated[spec.name] = (generate_one(spec), time.perf_counter() - g0)
    return generated


#: tasks with an evaluation of their own (results.json's "task"): a module with ``run`` (run_eval's
#: arguments), ``markdown(results)`` (results.md) and ``report(results)`` (what the CLI prints)
TASK_EVALUATIONS = {"commonsense": "distill.trainers.eval_commonsense",
                    "summarization": "distill.trainers.eval_summarize"}


def task_evaluation(task: str | None):
    """The module evaluating ``task`` its own way, or None (paraphrase: this module)."""
    import importlib

    return importlib.import_module(TASK_EVALUATIONS[task]) if task in TASK_EVALUATIONS else None


def run_eval(cfg: RunConfig, progress: bool = True, models: list | None = None,
             backend_factory: Callable[[EvalModelSpec], Any] | None = None) -> dict[str, Any]:
    """Evaluate ``models`` (EvalModelSpec or dicts; None: ``cfg.eval.models``), reusing
    every cached per-model result; write the outputs listed in the module docstring and
    return what results.json holds. ``backend_factory`` (tests) replaces make_backend.
    The commonsense and summarization tasks have their own evaluations
    (:mod:`distill.trainers.eval_commonsense`, :mod:`distill.trainers.eval_summarize`)."""
    own = task_evaluation("summarization" if cfg.task.name.startswith("summarize") else cfg.task.name)
    if own is not None:
        return own.run(cfg, progress, models, backend_factory)
    t0 = time.perf_counter()
    specs = model_specs(cfg.eval.models if models is None else models)
    out = eval_dir(cfg)
    inputs, source = load_inputs(cfg)
    critic_specs = cfg.eval.critics if cfg.eval.critics is not None else cfg.filter.critics
    meaning_specs = cfg.eval.meaning_critics
    encoder = cfg.eval.encoder or cfg.filter.dedup.encoder
    rows, todo = split_cached(specs, out, lambda spec: fingerprint(spec, cfg, inputs, critic_specs, encoder,
                                                                   meaning_specs))
    generated = generate_each(todo, lambda spec: generate(spec, cfg, inputs, out, progress, backend_factory))
    if todo:  # phase 2: one encoder and one critic chain for every new output list
        scorer = Scorer(cfg, critic_specs, encoder, out, meaning_specs)
        try:
            for spec, folder in todo:
                s0 = time.perf_counter()
                outputs, gen_s = generated[spec.name]
                items = scorer.score(inputs, outputs)
                row = {"name": spec.name, "spec": spec.model_dump(), "fingerprint": folder.fingerprint,
                       "generate_seconds": round(gen_s, 2), "score_seconds": round(time.perf_counter() - s0, 2),
                       "metrics": summarize(items), "items": items}
                folder.finish(row)
                rows[spec.name] = {**row, "cached": False}
        finally:
            scorer.close()
    for spec in specs:
        items = rows[spec.name].pop("items")
        atomic_write(out / "generations" / f"{spec.name}.jsonl",
                     lambda f, items=items: f.write("".join(json.dumps(it, ensure_ascii=False) + "\n"
                                                            for it in items).encode()))
    results = {"inputs": {"source": source, "count": len(inputs), "limit": cfg.eval.limit},
               "critics": [c.model_dump() for c in critic_specs],
               "critics_source": "eval.critics" if cfg.eval.critics is not None else "filter.critics",
               "meaning_critics": [c.model_dump() for c in meaning_specs], "encoder": encoder or "all-MiniLM-L6-v2",
               "beta": M.BETA, "models": [rows[s.name] for s in specs], "seconds": round(time.perf_counter() - t0, 2)}
    sheet.attach(results, out)
    write_results(results, out)
    plot(results, out / "metrics.png")
    results["output_dir"] = str(out)
    return results


def write_results(results: dict[str, Any], out: Path) -> None:
    own = task_evaluation(results.get("task"))
    write_md = own.markdown if own is not None else markdown
    atomic_write_json(out / "results.json", {k: v for k, v in results.items() if k != "output_dir"})
    atomic_write(out / "results.md", lambda f: f.write(write_md(results).encode()))


def _cell(v: float, fmt: str) -> str:
    return f"{100 * v:.1f}%" if fmt == "%" else format(v, fmt)


def columns(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """M.COLUMNS with "accepted" named by its chain, and "meaning-accepted" after it when
    ``eval.meaning_critics`` was set."""
    chain = results.get("critics_source", "filter.critics")
    cols = [(k, f"accepted ({chain})" if k == "accepted" else h, f) for k, h, f in M.COLUMNS]
    if results.get("meaning_critics"):
        at = [k for k, _, _ in cols].index("accepted") + 1
        cols.insert(at, ("meaning_accepted", "meaning-accepted", "%"))
    return cols


def table(results: dict[str, Any]) -> str:
    cols = columns(results)
    head = ["model", "n"] + [c[1] for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in results["models"]:
        m = row["metrics"]
        lines.append("| " + " | ".join([row["name"], str(m["n"])] + [_cell(m[k], f) if k in m else "-"
                                                                      for k, _, f in cols]) + " |")
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    inp, crit = results["inputs"], ", ".join(c["type"] for c in results["critics"]) or "none"
    reasons = [f"- {r['name']}: " + (", ".join(f"{k} {v}" for k, v in r["metrics"]["reject_reasons"].items()) or "none")
               for r in results["models"]]
    meaning = ", ".join(c["type"] for c in results.get("meaning_critics", []))
    text = (f"# Evaluation\n\n{inp['count']} inputs: {inp['source']}. Encoder: {results['encoder']}. "
            f"Critics ({results.get('critics_source', 'filter.critics')}): {crit}."
            + (f" Meaning critics (eval.meaning_critics, judged on every output on their own): {meaning}." if meaning
               else "") + f"\n\n{table(results)}\n\n{M.LEGEND}\n\nCritic rejections (first failing critic):\n"
            + "\n".join(reasons) + "\n")
    human = sheet.human_table(results)
    return text + (f"\n## Human judgment\n\n{human}\n" if human else "")


def plot(results: dict[str, Any], path: Path) -> None:
    """Grouped bars: one group per model, one bar per headline number (all on 0-1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("bert_ibleu", "BERT-iBLEU ↑"), ("accepted", "critic acceptance ↑"), ("copy", "copy rate ↓"),
            ("degenerate", "degenerate rate ↓")]
    names = [r["name"] for r in results["models"]]
    width = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.9 * len(names) + 2), 4.2), dpi=110)
    for j, (k, label) in enumerate(keys):
        vals = [r["metrics"][k] for r in results["models"]]
        xs = [i + (j - (len(keys) - 1) / 2) * width for i in range(len(names))]
        bars = ax.bar(xs, vals, width, label=label, color=f"C{j}")
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in vals], fontsize=8, padding=2)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("mean / share of outputs")
    ax.set_title(f"distill eval: {results['inputs']['count']} held-out inputs")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(keys), frameon=False, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def cli_eval(cfg: RunConfig, progress: bool = True, sheet_n: int | None = None, score_sheet: str | None = None,
             sheet_copy: bool = False) -> int:
    if score_sheet is not None:
        return sheet.cli_score(cfg, Path(score_sheet))
    if sheet_n is not None:
        return sheet.cli_write(cfg, sheet_n, sheet_copy, progress)
    res = run_eval(cfg, progress=progress)
    own = task_evaluation(res.get("task"))
    if own is not None:
        print(own.report(res))
        return 0
    print("\n" + table(res))
    cached = [r["name"] for r in res["models"] if r["cached"]]
    print(f"\n{res['inputs']['count']} inputs, {res['seconds']} s" + (f" (reused: {', '.join(cached)})" if cached else "")
          + f"; results.json, results.md, metrics.png and generations/ in {res['output_dir']}")
    return 0
