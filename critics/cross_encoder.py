"""Fine-tuned cross-encoder critic: one transformer reads x and y together and gives
P(keep), so it can see what an embedding of each side alone cannot (a swapped role, a
changed time, a dropped clause).

``distill critic train LABELS --model cross-encoder`` (:func:`train_cross_encoder`) fine-
tunes a sentence-transformers ``CrossEncoder`` (a fresh one-logit head on all-MiniLM-L6-v2
by default, or any hub id / folder with ``--base``) with binary cross-entropy on the fit
rows (train + dev), optionally with synthetic rejects (:mod:`distill.critics.synthetic`)
added to every training set. As for the scikit-learn critics (:mod:`distill.critics.
trained`, whose threshold rule and metrics this reuses), the threshold comes from k-fold
out-of-fold predictions on the real fit rows (a fresh model per fold), and the test split is
only ever predicted, once, by the final model. ``--model lm-classifier`` does the same with
a causal LM (the CPU default teacher, SmolLM2-135M) under a fresh classification head.

The artifact folder holds ``spec.json`` (threshold, target, metrics, settings) and
``model/`` (the fine-tuned model); :class:`CrossEncoderCritic` (type ``cross_encoder``)
loads it as a filter stage.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distill.critics.base import Critic, Verdict, below
from distill.critics.labels import LETTERS, LabelRow, fit_rows, read_labels
from distill.critics.synthetic import TRANSFORMS, Synth, synthesize
from distill.critics.trained import (_check_out, accept_rate_by_kind, binary_metrics, choose_threshold,
                                     format_report, read_spec, save_artifact, threshold_target)
from distill.errors import DistillError
from distill.record import Record

ARTIFACT_FORMAT = "distill-cross-encoder-critic"
ARTIFACT_VERSION = 1
MODELS = ("cross-encoder", "lm-classifier")
#: parameters of the fresh head: BERT's classifier (and pooler), a causal LM's score layer
HEAD = r"\b(classifier|pooler|score)\."


@dataclass(frozen=True)
class FitConfig:
    """How one model is fine-tuned. ``freeze_embeddings`` keeps the token embedding matrix
    fixed: most of MiniLM's weights, and the part a few hundred pairs overfit first.
    ``head_lr`` is the new head's (and BERT's pooler's) learning rate: at the body's rate
    a fresh head on a few hundred pairs stayed near chance (train loss 0.67 after 3 epochs)."""

    epochs: float = 3.0
    batch_size: int = 16
    lr: float = 1e-4
    head_lr: float = 1e-3
    max_length: int = 128
    warmup_ratio: float = 0.1
    freeze_embeddings: bool = True


def resolve_base(model: str, base: str | None) -> str:
    if model == "lm-classifier":
        from distill.generator.models import resolve_model

        return resolve_model(base)
    from distill.critics.embed import resolve_encoder

    return resolve_encoder(base)


def load_model(path: str, max_length: int | None = None, device: str | None = None, fresh_head: bool = False):
    """A ``CrossEncoder`` with one output (sigmoid -> P(keep)). ``fresh_head`` puts a new
    sequence-classification head on a causal LM (sentence-transformers would otherwise make
    it a yes/no-token reranker); its pad token is set, which that head needs to find the
    last token."""
    from sentence_transformers.cross_encoder import CrossEncoder

    if fresh_head:
        from sentence_transformers.base.modules import Transformer

        body = Transformer(path, transformer_task="sequence-classification", config_kwargs={"num_labels": 1},
                           max_seq_length=max_length)
        m = CrossEncoder(modules=[body], device=device)
    else:
        m = CrossEncoder(path, num_labels=1, max_length=max_length, device=device,
                         local_files_only=os.path.isdir(path))
    if m.tokenizer.pad_token is None:
        m.tokenizer.pad_token = m.tokenizer.eos_token
    if getattr(m.model.config, "pad_token_id", None) is None:
        m.model.config.pad_token_id = m.tokenizer.pad_token_id
    return m


def fit(base: str, rows: list[LabelRow], cfg: FitConfig, seed: int = 0, device: str | None = None,
        fresh_head: bool = False):
    """Fine-tune a fresh model from ``base`` on ``rows`` (x, y, label) with
    sentence-transformers' ``CrossEncoderTrainer`` and ``BinaryCrossEntropyLoss``."""
    import transformers
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    transformers.set_seed(seed)  # the new head's initial weights
    model = load_model(base, cfg.max_length, device, fresh_head)
    if cfg.freeze_embeddings:
        model.model.get_input_embeddings().weight.requires_grad_(False)
    ds = Dataset.from_dict({"x": [r.x for r in rows], "y": [r.y for r in rows],
                            "label": [float(r.label) for r in rows]})
    # transformers 5 takes the warmup share as a float warmup_steps (warmup_ratio is deprecated)
    v5 = int(transformers.__version__.split(".")[0]) >= 5
    warmup = {"warmup_steps": cfg.warmup_ratio} if v5 else {"warmup_ratio": cfg.warmup_ratio}
    with tempfile.TemporaryDirectory(prefix="distill-ce-") as tmp:
        args = CrossEncoderTrainingArguments(
            output_dir=tmp, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
            learning_rate=cfg.lr, learning_rate_mapping={HEAD: cfg.head_lr}, **warmup, save_strategy="no", report_to="none",
            logging_strategy="no", seed=seed, data_seed=seed, disable_tqdm=True,
            use_cpu=device == "cpu")
        CrossEncoderTrainer(model=model, args=args, train_dataset=ds, loss=BinaryCrossEntropyLoss(model)).train()
    return model


def predict(model, pairs: list[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
    if not pairs:
        return np.zeros(0, dtype=np.float32)
    p = model.predict(pairs, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)
    return np.asarray(p, dtype=np.float64).reshape(-1)


def accept_rate_by_m_kind(rows: list[LabelRow], p: np.ndarray, threshold: float) -> dict[str, dict[str, Any]]:
    """Acceptance per kind of meaning change; an ``M`` row counts under each of its kinds."""
    out: dict[str, dict[str, Any]] = {}
    for kind in sorted({k for r in rows if r.letter == "M" for k in r.kinds}):
        idx = [i for i, r in enumerate(rows) if r.letter == "M" and kind in r.kinds]
        acc = int((p[idx] >= threshold).sum())
        out[kind] = {"n": len(idx), "accepted": acc, "accept_rate": round(acc / len(idx), 4)}
    return out


def _save(out: Path, model, spec_json: dict[str, Any], overwrite: bool) -> None:
    """model/ + spec.json, swapped into place at once (trained.save_artifact)."""
    save_artifact(out, lambda folder: model.save_pretrained(str(folder / "model")), spec_json, overwrite)


def train_cross_encoder(labels_path: str | Path, out_dir: str | Path, model: str = "cross-encoder",
                        base: str | None = None, target_precision: float | None = 0.9,
                        target_recall: float | None = None, cv: int = 3, seed: int = 0,
                        synthetic: float = 0.0, transforms: tuple[str, ...] = tuple(TRANSFORMS),
                        fit_config: FitConfig = FitConfig(), device: str | None = None,
                        overwrite: bool = False) -> dict[str, Any]:
    """Fine-tune on the fit rows, choose the threshold from ``cv``-fold predictions on
    them, evaluate on the test split, save the artifact; returns spec.json's dict.
    ``synthetic`` > 0 adds that many synthetic rejects per positive to each training set
    (made from that set's own positives only)."""
    from sklearn.model_selection import StratifiedGroupKFold

    if model not in MODELS:
        raise DistillError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    target = threshold_target(target_precision, target_recall)
    if synthetic < 0:
        raise DistillError(f"synthetic must be >= 0 (variants per positive), got {synthetic}")
    _check_out(Path(out_dir), overwrite)
    rows = read_labels(labels_path)
    train, test = fit_rows(rows), [r for r in rows if r.split == "test"]
    ytr = np.array([r.label for r in train])
    if min(ytr.sum(), len(ytr) - ytr.sum()) < cv:
        raise DistillError(f"{labels_path}: the train+dev splits need at least {cv} rows of each label "
                           f"(have {int(ytr.sum())} keeps, {int(len(ytr) - ytr.sum())} rejects)")
    if not test:
        raise DistillError(f"{labels_path}: no rows with split 'test'; hold some out to measure the critic")
    path, lm = resolve_base(model, base), model == "lm-classifier"
    synth = Synth(per_positive=synthetic, seed=seed, transforms=tuple(transforms))

    def with_synthetic(rs: list[LabelRow]) -> list[LabelRow]:
        return rs + (synthesize(rs, synth) if synthetic > 0 else [])

    p_cv = np.zeros(len(train))
    folds = StratifiedGroupKFold(n_splits=cv, shuffle=True, random_state=seed)
    for k, (tr, va) in enumerate(folds.split(np.zeros(len(train)), ytr, groups=[r.group for r in train])):
        m = fit(path, with_synthetic([train[i] for i in tr]), fit_config, seed + k, device, lm)
        p_cv[va] = predict(m, [(train[i].x, train[i].y) for i in va])
        del m
    final_rows = with_synthetic(train)
    final = fit(path, final_rows, fit_config, seed, device, lm)
    p_te = predict(final, [(r.x, r.y) for r in test])
    threshold, reached = choose_threshold(ytr, p_cv, target_precision=target.get("precision"),
                                          target_recall=target.get("recall"))
    yte = np.array([r.label for r in test])
    metrics = {"cv": {**binary_metrics(ytr, p_cv, threshold), "folds": cv},
               "test": {**binary_metrics(yte, p_te, threshold), "by_kind": accept_rate_by_kind(test, p_te, threshold),
                        "by_m_kind": accept_rate_by_m_kind(test, p_te, threshold)},
               "cv_by_kind": accept_rate_by_kind(train, p_cv, threshold)}
    spec_json = {"format": ARTIFACT_FORMAT, "artifact_version": ARTIFACT_VERSION, "model": model,
                 "base": base or ("default teacher" if model == "lm-classifier" else "all-MiniLM-L6-v2"),
                 "threshold": threshold, "target": target, "target_reached_in_cv": reached, "metrics": metrics,
                 "seed": seed, "fit": asdict(fit_config),
                 "synthetic": {"per_positive": synthetic, "transforms": list(transforms),
                               "n_final": len(final_rows) - len(train)},
                 "labels": {"path": str(labels_path), "n_train": len(train), "n_test": len(test)}}
    _save(Path(out_dir), final, spec_json, overwrite)
    return spec_json


def load_artifact(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    sj = p / "spec.json"
    meta = read_spec(p, "cross-encoder critic", "--model cross-encoder ")
    if meta.get("format") != ARTIFACT_FORMAT or meta.get("artifact_version") != ARTIFACT_VERSION:
        raise DistillError(f"{sj}: artifact format {meta.get('format')!r} v{meta.get('artifact_version')} is not "
                           f"{ARTIFACT_FORMAT!r} v{ARTIFACT_VERSION} (a scikit-learn artifact is critic type "
                           f"'trained'); retrain with `distill critic train --model cross-encoder`")
    if not (p / "model").is_dir():
        raise DistillError(f"{p}: the model/ folder is missing")
    return meta


class CrossEncoderCritic(Critic):
    """Keeps a pair when the artifact's model gives P(keep) >= threshold (the artifact's,
    unless overridden); writes P to ``record.scores[name]``."""

    name = "cross_encoder"
    score_names = ("cross_encoder",)

    def __init__(self, path: str, threshold: float | None = None, name: str | None = None,
                 device: str | None = None, batch_size: int = 32, keep_rejects: bool = True) -> None:
        super().__init__(keep_rejects)
        self.meta = load_artifact(path)
        self.path = str(path)
        if threshold is not None and not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.threshold = float(self.meta["threshold"] if threshold is None else threshold)
        if name:
            self.name, self.score_names = name, (name,)
        self.batch_size = batch_size
        self.model = load_model(str(Path(path) / "model"), self.meta.get("fit", {}).get("max_length"), device)

    def thresholds(self) -> list[tuple[str, str, float]]:
        return [(self.name, ">=", self.threshold)]

    def judge_batch(self, records: list[Record]) -> list[Verdict]:
        p = predict(self.model, [(r.input, r.output) for r in records], self.batch_size)
        out: list[Verdict] = []
        for r, pi in zip(records, p):
            r.scores[self.name] = float(pi)
            out.append(True if pi >= self.threshold else (False, below(self.name, self.threshold)))
        return out


def cli_train(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="distill critic train --model cross-encoder",
                                 description="Fine-tune a cross-encoder critic on a labels JSONL file.")
    ap.add_argument("labels", help=f"JSONL rows: id, x, y, label ({'/'.join(LETTERS)} or 0/1), split, ...")
    ap.add_argument("--model", choices=MODELS, default="cross-encoder")
    ap.add_argument("--out", help="artifact folder (default: critics-artifacts/<model>)")
    ap.add_argument("--base", help="hub id or folder to start from (default: all-MiniLM-L6-v2; "
                                   "lm-classifier: the default teacher)")
    tg = ap.add_mutually_exclusive_group()
    tg.add_argument("--target-precision", type=float, help="threshold reaching this CV precision (default 0.9)")
    tg.add_argument("--target-recall", type=float, help="threshold keeping this CV recall instead")
    ap.add_argument("--cv", type=int, default=3, help="cross-validation folds (each trains a model)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synthetic", type=float, default=0.0, metavar="N",
                    help="synthetic rejects per positive added to training (0.5: one for every other positive)")
    ap.add_argument("--transforms", default=",".join(TRANSFORMS), help="comma-separated synthetic transforms")
    ap.add_argument("--epochs", type=float, default=FitConfig.epochs)
    ap.add_argument("--batch-size", type=int, default=FitConfig.batch_size)
    ap.add_argument("--lr", type=float, default=FitConfig.lr)
    ap.add_argument("--head-lr", type=float, default=FitConfig.head_lr, help="learning rate of the new head")
    ap.add_argument("--max-length", type=int, default=FitConfig.max_length)
    ap.add_argument("--device", help="torch device (default: CUDA when there is one)")
    ap.add_argument("--force", action="store_true", help="replace an existing artifact folder")
    a = ap.parse_args(argv)
    if a.cv < 2:
        ap.error("--cv must be at least 2")
    transforms = tuple(t for t in a.transforms.split(",") if t)
    unknown = [t for t in transforms if t not in TRANSFORMS]
    if unknown:
        ap.error(f"unknown transform(s) {unknown}; known: {', '.join(TRANSFORMS)}")
    out = a.out or f"critics-artifacts/{a.model}"
    meta = train_cross_encoder(a.labels, out, model=a.model, base=a.base,
                               target_precision=a.target_precision if a.target_precision is not None else 0.9,
                               target_recall=a.target_recall, cv=a.cv, seed=a.seed, synthetic=a.synthetic,
                               transforms=transforms, device=a.device, overwrite=a.force,
                               fit_config=FitConfig(a.epochs, a.batch_size, a.lr, a.head_lr, a.max_length))
    print(format_report(meta))
    print(f"synthetic rejects in the final training set: {meta['synthetic']['n_final']}")
    print(f"artifact saved to {out} (use it with: filter.critics: [{{type: cross_encoder, path: {out}}}])")
    return 0
