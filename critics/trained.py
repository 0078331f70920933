"""Trained critic: a scikit-learn classifier over features of a pair (x, y), as the
"trained critic classifiers" of Symbolic Knowledge Distillation.

``distill critic train LABELS.jsonl`` (:func:`cli_train`, :func:`train_critic`) fits it on
hand-labelled pairs, picks the probability threshold that reaches a target precision (or
recall) on cross-validated predictions, measures it on the held-out split and saves an
artifact folder; :class:`TrainedCritic` loads that folder as a filter stage.

Features of a pair, in :class:`FeatureSpec` order: sentence embeddings u (of x) and v (of
y), |u-v|, u*v, cos(u, v), len(y)/len(x) in characters, ROUGE-L F1, then any upstream
critic scores read from ``record.scores``. The spec is saved with the model; a change to
how features are computed bumps :data:`FEATURE_VERSION`, so an old artifact is refused
instead of silently scoring garbage.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from distill.critics.base import Critic, Verdict, below
from distill.critics.embed import DEFAULT_ENCODER, Encoder, resolve_encoder
from distill.critics.labels import LabelRow, fit_rows, read_labels  # noqa: F401 (read_labels: re-exported)
from distill.errors import DistillError
from distill.record import Record

FEATURE_VERSION = 1
ARTIFACT_FORMAT = "distill-trained-critic"
ARTIFACT_VERSION = 1
#: blocks of the feature vector; the first four are ``dim`` wide, the rest one number each
EMBED_BLOCKS = ("u", "v", "abs_diff", "prod")
SCALARS = ("cosine", "len_ratio", "rouge_l")
DEFAULT_FEATURES = EMBED_BLOCKS + SCALARS
MODELS = ("logreg", "gbm")


@dataclass(frozen=True)
class FeatureSpec:
    """What the model was fitted on. ``names`` picks blocks of :data:`DEFAULT_FEATURES`;
    ``upstream`` names ``record.scores`` keys appended after them, in that order."""

    names: tuple[str, ...] = DEFAULT_FEATURES
    encoder: str = DEFAULT_ENCODER
    upstream: tuple[str, ...] = ()
    version: int = FEATURE_VERSION
    dim: int | None = None

    def __post_init__(self) -> None:
        unknown = [n for n in self.names if n not in DEFAULT_FEATURES]
        if unknown:
            raise DistillError(f"feature spec: unknown feature(s) {unknown}; known: {list(DEFAULT_FEATURES)}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["names"], d["upstream"] = list(self.names), list(self.upstream)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureSpec":
        return cls(names=tuple(d["names"]), encoder=d["encoder"], upstream=tuple(d.get("upstream", ())),
                   version=int(d["version"]), dim=d.get("dim"))

    def columns(self) -> list[str]:
        cols: list[str] = []
        for n in self.names:
            cols += [f"{n}[{i}]" for i in range(self.dim or 0)] if n in EMBED_BLOCKS else [n]
        return cols + [f"score:{s}" for s in self.upstream]


def rouge_l(pairs: list[tuple[str, str]]) -> np.ndarray:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return np.array([scorer.score(x, y)["rougeL"].fmeasure for x, y in pairs], dtype=np.float32)


def featurize(spec: FeatureSpec, encoder: Encoder, pairs: list[tuple[str, str]],
              scores: list[dict[str, float]] | None = None, where: list[str] | None = None) -> np.ndarray:
    """``(len(pairs), n_features)`` float32. ``scores[i]`` must hold every upstream score
    of the spec; ``where[i]`` names row i in the error when one is missing."""
    if not pairs:
        return np.zeros((0, len(spec.columns())), dtype=np.float32)
    texts = list(dict.fromkeys(t for p in pairs for t in p))
    emb = encoder.encode(texts)
    row = {t: i for i, t in enumerate(texts)}
    u = emb[[row[x] for x, _ in pairs]]
    v = emb[[row[y] for _, y in pairs]]
    blocks = {"u": u, "v": v, "abs_diff": np.abs(u - v), "prod": u * v}
    cols: list[np.ndarray] = []
    for n in spec.names:
        if n in blocks:
            cols.append(blocks[n])
        elif n == "cosine":
            cols.append(np.clip((u * v).sum(1), -1.0, 1.0)[:, None])
        elif n == "len_ratio":
            cols.append(np.array([[len(y.strip()) / max(len(x.strip()), 1)] for x, y in pairs]))
        elif n == "rouge_l":
            cols.append(rouge_l(pairs)[:, None])
    if spec.upstream:
        up = np.zeros((len(pairs), len(spec.upstream)), dtype=np.float32)
        for i in range(len(pairs)):
            s = scores[i] if scores is not None else {}
            for j, name in enumerate(spec.upstream):
                if name not in s:
                    who = where[i] if where else f"pair {i}"
                    raise DistillError(f"{who} has no score {name!r}, which this trained critic uses as a feature "
                                       f"(upstream scores: {list(spec.upstream)}); run the critic that writes "
                                       f"{name!r} before it")
                up[i, j] = float(s[name])
        cols.append(up)
    return np.concatenate([np.asarray(c, dtype=np.float32) for c in cols], axis=1)


# ---- training -------------------------------------------------------------------------

def single_threaded():
    """Context: OpenMP/BLAS pools at one thread for the classifier (not the encoder).

    subtle: labelled sets are a few hundred rows, so the gradient-boosting grower's
    per-node parallel regions cost more than they save, and on a shared 2-core machine
    their barriers made one training run take 190 s instead of 7 s."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _weigh_columns(a: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return a * weights


def make_model(kind: str, spec: FeatureSpec, seed: int):
    """An unfitted sklearn estimator for ``spec``'s feature columns."""
    cols = spec.columns()
    emb = np.array([c.split("[")[0] in EMBED_BLOCKS for c in cols])
    if kind == "logreg":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import FunctionTransformer, StandardScaler

        # subtle: ~1.5k standardised embedding columns against a handful of scalar ones on a
        # few hundred rows: with one L2 strength the embeddings fit the topics of the train
        # pairs (CV AUC 0.75 here). Shrinking them 10x after scaling is a 100x stronger L2
        # on that block (CV AUC 0.98).
        w = np.where(emb, 0.1, 1.0).astype(np.float32)
        return Pipeline([("scale", StandardScaler()),
                         ("weigh", FunctionTransformer(_weigh_columns, kw_args={"weights": w})),
                         ("clf", LogisticRegression(C=1.0, max_iter=5000, random_state=seed))])
    if kind == "gbm":
        from sklearn.compose import ColumnTransformer
        from sklearn.decomposition import PCA
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        gbm = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.05, max_leaf_nodes=15,
                                             min_samples_leaf=10, l2_regularization=1.0,
                                             early_stopping=False, random_state=seed)
        if not emb.any():
            return gbm
        # trees on 1.5k raw embedding columns are slow and no better here; 16 principal
        # components of the embedding blocks keep what varies across pairs
        reduce = ColumnTransformer([("emb", Pipeline([("scale", StandardScaler()),
                                                      ("pca", PCA(16, random_state=seed))]), np.flatnonzero(emb))],
                                   remainder="passthrough")
        return Pipeline([("reduce", reduce), ("clf", gbm)])
    raise DistillError(f"unknown model {kind!r}; choose one of {', '.join(MODELS)}")


def choose_threshold(y: np.ndarray, p: np.ndarray, target_precision: float | None = None,
                     target_recall: float | None = None, min_accepts: int = 10) -> tuple[float, bool]:
    """Threshold on P(good) from out-of-fold predictions.

    For a precision target: the lowest threshold from which precision stays at or above
    the target for every stricter threshold (ignoring the noisy top few, where fewer than
    ``min_accepts`` pairs pass), i.e. the most recall at that precision. For a recall
    target: the highest threshold whose recall reaches it. Returns ``(threshold,
    reached)``; an unreachable precision target gives the most precise threshold with at
    least ``min_accepts`` accepts and ``reached=False``.
    """
    from sklearn.metrics import precision_recall_curve

    prec, rec, thr = precision_recall_curve(y, p)
    prec, rec = prec[:-1], rec[:-1]  # the last point has no threshold
    if target_recall is not None:
        ok = np.flatnonzero(rec >= target_recall)
        i, reached = (int(ok.max()), True) if ok.size else (0, False)
    else:
        n_acc = np.searchsorted(np.sort(p), thr, side="left")
        n_acc = len(p) - n_acc  # pairs with P >= thr[i]
        counted = n_acc >= min(min_accepts, int(y.sum()))
        bad = np.flatnonzero((prec < target_precision) & counted)
        i = int(bad.max()) + 1 if bad.size else 0
        reached = i < len(thr) and counted[i]
        if not reached:
            cand = np.flatnonzero(counted)
            i = int(cand[np.argmax(prec[cand])])
    # floor to 4 decimals so the reason reads cleanly and no pair above it is lost
    return math.floor(float(thr[i]) * 1e4 + 1e-6) / 1e4, bool(reached)


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    pred = p >= threshold
    tp, fp = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum())
    fn, tn = int((~pred & (y == 1)).sum()), int((~pred & (y == 0)).sum())
    return {"n": int(len(y)), "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / (tp + fn), 4) if tp + fn else None,
            "accuracy": round((tp + tn) / len(y), 4) if len(y) else None,
            "auc": round(float(roc_auc_score(y, p)), 4) if 0 < y.sum() < len(y) else None,
            "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def accept_rate_by_kind(rows: list[LabelRow], p: np.ndarray, threshold: float) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for kind in sorted({r.kind for r in rows}):
        idx = [i for i, r in enumerate(rows) if r.kind == kind]
        acc = int((p[idx] >= threshold).sum())
        out[kind] = {"n": len(idx), "accepted": acc, "accept_rate": round(acc / len(idx), 4)}
    return out


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise DistillError(f"{out} exists; pass overwrite=True (--force) to replace it")
    if out.exists() and not (out / "spec.json").is_file():
        raise DistillError(f"{out} exists and is not a trained critic artifact; refusing to replace it")


def threshold_target(precision: float | None, recall: float | None) -> dict[str, float]:
    """{"precision": p} or {"recall": r} (recall, when given, wins), checked to be in (0, 1]."""
    target = {"recall": recall} if recall is not None else {"precision": precision}
    name, t = next(iter(target.items()))
    if t is None or not 0 < t <= 1:
        raise DistillError(f"target {name} must be in (0, 1], got {t}")
    return target


def save_artifact(out: Path, write_model: Callable[[Path], None], spec_json: dict[str, Any], overwrite: bool) -> None:
    """``write_model(folder)`` + spec.json into a temp folder beside ``out``, then renamed into
    place: ``out`` never holds half an artifact, whenever the process dies."""
    _check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    try:
        write_model(tmp)
        with open(tmp / "spec.json", "w", encoding="utf-8") as f:
            json.dump(spec_json, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        if out.exists():
            out.rename(old)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _atomic_save(out: Path, model: Any, spec_json: dict[str, Any], overwrite: bool) -> None:
    import joblib

    save_artifact(out, lambda folder: joblib.dump(model, folder / "model.joblib"), spec_json, overwrite)


def _encoder_id(encoder: "str | Encoder | None") -> str:
    """The name saved in the spec: the default's logical name, else the id/folder given."""
    if isinstance(encoder, Encoder):
        try:
            return DEFAULT_ENCODER if encoder.path == resolve_encoder(None) else encoder.path
        except DistillError:
            return encoder.path
    return encoder or DEFAULT_ENCODER


def _as_encoder(encoder: "str | Encoder | None", cache_path: str | Path | None) -> Encoder:
    return encoder if isinstance(encoder, Encoder) else Encoder(encoder, cache_path=cache_path)


def train_critic(labels_path: str | Path, out_dir: str | Path, model: str = "logreg",
                 target_precision: float | None = 0.9, target_recall: float | None = None, cv: int = 5,
                 seed: int = 0, upstream: list[str] | tuple[str, ...] = (), encoder: "str | Encoder | None" = None,
                 encoder_cache: str | Path | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Fit on the train split, choose the threshold from ``cv``-fold predictions on it,
    evaluate on the test split, save the artifact to ``out_dir``; returns spec.json's dict.
    ``target_recall``, when given, replaces ``target_precision``. ``encoder`` is a model
    id/folder (None: the default MiniLM) or a loaded :class:`Encoder` to reuse."""
    from sklearn import __version__ as sklearn_version
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

    if model not in MODELS:
        raise DistillError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    target = threshold_target(target_precision, target_recall)
    _check_out(Path(out_dir), overwrite)  # before any work, and again at the rename
    rows = read_labels(labels_path, tuple(upstream))
    train = fit_rows(rows)  # train + dev: the threshold comes from CV on them
    test = [r for r in rows if r.split == "test"]
    ytr = np.array([r.label for r in train])
    if len(set(ytr.tolist())) < 2 or min(ytr.sum(), len(ytr) - ytr.sum()) < cv:
        raise DistillError(f"{labels_path}: the train split needs at least {cv} rows of each label "
                           f"(has {int(ytr.sum())} accepts, {int(len(ytr) - ytr.sum())} rejects)")
    if not test:
        raise DistillError(f"{labels_path}: no rows with split 'test'; hold some out to measure the critic")
    enc = _as_encoder(encoder, encoder_cache)
    spec = FeatureSpec(encoder=_encoder_id(encoder), upstream=tuple(upstream), dim=enc.dim)

    def feats(rs: list[LabelRow]) -> np.ndarray:
        return featurize(spec, enc, [(r.x, r.y) for r in rs], [r.scores for r in rs],
                         [f"{labels_path} line {r.line}" for r in rs])

    Xtr, Xte = feats(train), feats(test)
    yte = np.array([r.label for r in test])
    est = make_model(model, spec, seed)
    folds = StratifiedGroupKFold(n_splits=cv, shuffle=True, random_state=seed)
    with single_threaded():
        p_cv = cross_val_predict(clone(est), Xtr, ytr, groups=[r.group for r in train], cv=folds,
                                 method="predict_proba")[:, 1]
        est.fit(Xtr, ytr)
        p_te = est.predict_proba(Xte)[:, 1]
    threshold, reached = choose_threshold(ytr, p_cv, target_precision=target.get("precision"),
                                          target_recall=target.get("recall"))
    metrics = {"cv": {**binary_metrics(ytr, p_cv, threshold), "folds": cv},
               "test": {**binary_metrics(yte, p_te, threshold),
                        "by_kind": accept_rate_by_kind(test, p_te, threshold)},
               "cv_by_kind": accept_rate_by_kind(train, p_cv, threshold)}
    spec_json = {"format": ARTIFACT_FORMAT, "artifact_version": ARTIFACT_VERSION, "model": model,
                 "feature_spec": spec.to_dict(), "threshold": threshold, "target": target,
                 "target_reached_in_cv": reached, "metrics": metrics, "seed": seed,
                 "labels": {"path": str(labels_path), "n_train": len(train), "n_test": len(test)},
                 "sklearn_version": sklearn_version}
    _atomic_save(Path(out_dir), est, spec_json, overwrite)
    return spec_json


# ---- the critic stage -----------------------------------------------------------------

def read_spec(p: Path, what: str, make: str) -> dict[str, Any]:
    """An artifact folder's spec.json, or one line saying what is wrong and how to make one."""
    sj = p / "spec.json"
    if not sj.is_file():
        raise DistillError(f"{p} is not a {what} artifact (no spec.json); make one with "
                           f"`distill critic train LABELS.jsonl {make}--out {p}`")
    try:
        return json.loads(sj.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DistillError(f"{sj}: not valid JSON ({e.msg})") from None


def load_artifact(path: str | Path) -> tuple[dict[str, Any], FeatureSpec, Any]:
    p = Path(path)
    sj = p / "spec.json"
    meta = read_spec(p, "trained critic", "")
    if meta.get("format") == "distill-cross-encoder-critic":
        raise DistillError(f"{p} is a cross-encoder artifact: use it as {{type: cross_encoder, path: {p}}}")
    if meta.get("format") != ARTIFACT_FORMAT or meta.get("artifact_version") != ARTIFACT_VERSION:
        raise DistillError(f"{sj}: artifact format {meta.get('format')!r} v{meta.get('artifact_version')} is not "
                           f"{ARTIFACT_FORMAT!r} v{ARTIFACT_VERSION}; retrain with `distill critic train`")
    fs = meta.get("feature_spec") or {}
    if fs.get("version") != FEATURE_VERSION:
        raise DistillError(f"{sj}: feature spec version {fs.get('version')} is incompatible with this code "
                           f"(computes version {FEATURE_VERSION}); retrain with `distill critic train`")
    try:
        spec = FeatureSpec.from_dict(fs)
    except (KeyError, TypeError, ValueError) as e:
        raise DistillError(f"{sj}: bad feature spec ({e})") from None
    from sklearn import __version__ as sklearn_version

    if meta.get("sklearn_version") != sklearn_version:
        warnings.warn(f"{p} was saved with scikit-learn {meta.get('sklearn_version')}, this is {sklearn_version}; "
                      f"retrain if its scores look off", stacklevel=3)
    import joblib

    try:
        model = joblib.load(p / "model.joblib")
    except FileNotFoundError:
        raise DistillError(f"{p}: model.joblib is missing") from None
    n_in = getattr(model, "n_features_in_", None)
    if spec.dim is not None and n_in is not None and n_in != len(spec.columns()):
        raise DistillError(f"{p}: the model takes {n_in} features but its spec describes {len(spec.columns())}")
    return meta, spec, model


class TrainedCritic(Critic):
    """Keeps a pair when the artifact's classifier gives P(good) >= threshold (the
    artifact's, unless overridden); writes P to ``record.scores[name]``.

    The encoder is the one the artifact was trained with; ``embedder`` lets a caller share
    an already loaded :class:`Encoder` (checked against the artifact). ``upstream``, when
    given, is the list of scores the pipeline will provide; it must match the artifact's.
    The model is a joblib pickle: load only artifacts you made or trust.
    """

    name = "trained_critic"
    score_names = ("trained_critic",)

    def __init__(self, path: str, threshold: float | None = None, upstream: list[str] | None = None,
                 name: str | None = None, embedder: Encoder | None = None, cache_path: str | None = None,
                 device: str | None = None, batch_size: int = 64, keep_rejects: bool = True) -> None:
        super().__init__(keep_rejects)
        self.meta, self.spec, self.model = load_artifact(path)
        self.path = str(path)
        if upstream is not None and tuple(upstream) != self.spec.upstream:
            raise DistillError(f"trained critic {path}: trained with upstream scores {list(self.spec.upstream)}, "
                               f"but the config provides {list(upstream)}; retrain or change the critic order")
        if threshold is not None and not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.threshold = float(self.meta["threshold"] if threshold is None else threshold)
        if name:
            self.name, self.score_names = name, (name,)
        self.batch_size = batch_size
        want = resolve_encoder(self.spec.encoder)
        if embedder is not None:
            if embedder.path != want:
                raise DistillError(f"trained critic {path} was trained with encoder {self.spec.encoder!r}, "
                                   f"not {embedder.path!r}")
            self.encoder = embedder
        else:
            self.encoder = Encoder(self.spec.encoder, device=device, batch_size=batch_size, cache_path=cache_path)
        if self.spec.dim is not None and self.encoder.dim != self.spec.dim:
            raise DistillError(f"trained critic {path}: encoder gives {self.encoder.dim}-d embeddings, "
                               f"the artifact expects {self.spec.dim}-d")

    def thresholds(self) -> list[tuple[str, str, float]]:
        return [(self.name, ">=", self.threshold)]

    def judge_batch(self, records: list[Record]) -> list[Verdict]:
        X = featurize(self.spec, self.encoder, [(r.input, r.output) for r in records], [r.scores for r in records],
                      [f"record {r.id!r}" for r in records])
        with single_threaded():
            p = self.model.predict_proba(X)[:, 1]
        out: list[Verdict] = []
        for r, pi in zip(records, p):
            r.scores[self.name] = float(pi)
            out.append(True if pi >= self.threshold else (False, below(self.name, self.threshold)))
        return out


# ---- CLI ------------------------------------------------------------------------------

def _fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def format_report(meta: dict[str, Any]) -> str:
    m = meta["metrics"]
    tgt = ", ".join(f"{k} >= {v}" for k, v in meta["target"].items())
    lines = [f"model {meta['model']}, threshold {meta['threshold']:g} (target {tgt}"
             + ("" if meta["target_reached_in_cv"] else ", NOT reached in CV: most precise threshold used") + ")",
             f"{'':<22}{'n':>6}{'precision':>11}{'recall':>9}{'AUC':>8}{'accuracy':>10}"]
    for label, key in ((f"cross-val ({m['cv']['folds']}-fold)", "cv"), ("held-out test", "test")):
        r = m[key]
        lines.append(f"{label:<22}{r['n']:>6}{_fmt(r['precision']):>11}{_fmt(r['recall']):>9}"
                     f"{_fmt(r['auc']):>8}{_fmt(r['accuracy']):>10}")
    lines.append("held-out acceptance rate by kind:")
    for kind, r in m["test"]["by_kind"].items():
        lines.append(f"  {kind:<20}{r['accepted']:>4}/{r['n']:<4}{r['accept_rate']:>7.2f}")
    return "\n".join(lines)


def cli_train(argv: list[str]) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model")
    if pre.parse_known_args(argv)[0].model in ("cross-encoder", "lm-classifier"):
        from distill.critics.cross_encoder import cli_train as cross_encoder_train

        return cross_encoder_train(argv)
    ap = argparse.ArgumentParser(prog="distill critic train",
                                 description="Fit a trained critic on a labels JSONL file and save its artifact.")
    ap.add_argument("labels", help="JSONL rows: id, x, y, label (P|C|M|D or 0|1), split (train|dev|test), "
                                   "optional kind(s), group, scores")
    ap.add_argument("--out", help="artifact folder (default: critics-artifacts/trained-<model>)")
    ap.add_argument("--model", choices=MODELS + ("cross-encoder", "lm-classifier"), default="logreg",
                    help="cross-encoder / lm-classifier: fine-tuned transformers (see `--model cross-encoder -h`)")
    tg = ap.add_mutually_exclusive_group()
    tg.add_argument("--target-precision", type=float, help="threshold reaching this CV precision (default 0.9)")
    tg.add_argument("--target-recall", type=float, help="threshold keeping this CV recall instead")
    ap.add_argument("--cv", type=int, default=5, help="cross-validation folds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--upstream", action="append", default=[], metavar="SCORE",
                    help="an upstream critic score (from each row's 'scores') to use as a feature (repeatable)")
    ap.add_argument("--encoder", help="sentence-transformers model id or folder (default: all-MiniLM-L6-v2)")
    ap.add_argument("--encoder-cache", help="SQLite embedding cache file")
    ap.add_argument("--force", action="store_true", help="replace an existing artifact folder")
    a = ap.parse_args(argv)
    if a.cv < 2:
        ap.error("--cv must be at least 2")
    out = a.out or f"critics-artifacts/trained-{a.model}"
    meta = train_critic(a.labels, out, model=a.model,
                        target_precision=a.target_precision if a.target_precision is not None else 0.9,
                        target_recall=a.target_recall, cv=a.cv, seed=a.seed, upstream=a.upstream,
                        encoder=a.encoder, encoder_cache=a.encoder_cache, overwrite=a.force)
    print(format_report(meta))
    print(f"artifact saved to {out} (use it with: filter.critics: [{{type: trained, path: {out}}}])")
    return 0
