"""NLI entailment critic: an ``AutoModelForSequenceClassification`` NLI model judges whether
the input entails the output (``forward``, x => y: summaries), the output the input
(``backward``), or both (paraphrases: a pair that drops information fails ``backward``).

The decision is a pure function of the logits (:func:`decide`), so it is tested with known
numbers; :class:`NLICritic` only loads the model, batches the pairs and writes the scores
``nli_forward`` / ``nli_backward`` (P(entailment) of each direction judged).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distill.critics.base import Critic, Threshold, Verdict, below
from distill.devices import pick_device, pick_dtype, release_model
from distill.errors import DistillError
from distill.record import Record

DIRECTIONS = ("both", "forward", "backward")
_NEGATED = re.compile(r"(not|non|no)[\s_-]*entail")


def directions_of(direction: str) -> tuple[str, ...]:
    """The score names a ``direction`` setting asks for."""
    if direction not in DIRECTIONS:
        raise DistillError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
    return {"both": ("forward", "backward"), "forward": ("forward",), "backward": ("backward",)}[direction]


def entailment_index(id2label: Mapping[Any, str], label: str | None = None) -> int:
    """The class index of "entailment" in a model's ``config.id2label``.

    Matches names containing "entail" case-insensitively, leaving out negated ones
    ("not_entailment" of two-class RTE models); ``label`` names the class exactly instead.
    """
    labels = {int(i): str(name) for i, name in id2label.items()}
    if label is not None:
        hits = [i for i, name in labels.items() if name.lower() == label.lower()]
    else:
        hits = [i for i, name in labels.items() if "entail" in name.lower() and not _NEGATED.search(name.lower())]
    found = ", ".join(f"{i}: {n!r}" for i, n in sorted(labels.items()))
    if len(hits) == 1:
        return hits[0]
    what = f"label named {label!r}" if label is not None else "entailment label"
    if not hits:
        raise DistillError(f"the NLI model has no {what}: its config.id2label is {{{found}}}. Use an NLI "
                           f"model (e.g. roberta-large-mnli), or name the class with entailment_label.")
    raise DistillError(f"the NLI model has several entailment labels ({{{found}}}); name one with entailment_label")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def threshold_verdict(scores: Mapping[str, float], minimums: Mapping[str, float]) -> Verdict:
    """Keep iff every score reaches its minimum; else drop, naming the first score (in
    ``scores`` order) that fell short, as ``"nli_forward<0.75"``."""
    for name, value in scores.items():
        if value < minimums[name]:
            return (False, below(name, minimums[name]))
    return True


def decide(logits: Mapping[str, np.ndarray], entail_index: int,
           minimums: Mapping[str, float]) -> tuple[dict[str, np.ndarray], list[Verdict]]:
    """From per-direction logits ``{"nli_forward": (n, classes), ...}`` to P(entailment) per
    direction and one verdict per pair. Directions are checked in the order given."""
    probs = {name: softmax(x)[:, entail_index] for name, x in logits.items()}
    n = len(next(iter(probs.values()))) if probs else 0
    verdicts = [threshold_verdict({k: float(p[i]) for k, p in probs.items()}, minimums) for i in range(n)]
    return probs, verdicts



class NLICritic(Critic):
    """Keeps a pair when P(entailment) reaches ``min_forward`` (input => output) and/or
    ``min_backward`` (output => input), as ``direction`` says ("both", "forward", "backward").

    ``model`` is a hub id (read from the local cache only: nothing is downloaded) or a
    folder. ``batch_size`` is pairs per forward pass; ``records_per_call`` records are
    taken at a time and their pairs sorted by length, so a batch pads little.
    """

    name = "nli"
    score_names = ("nli_forward", "nli_backward")

    def __init__(self, model: str, direction: str = "both", min_forward: float = 0.75,
                 min_backward: float = 0.75, batch_size: int = 32, records_per_call: int = 256,
                 max_length: int = 256, device: str = "auto", dtype: str = "auto",
                 entailment_label: str | None = None, trust_remote_code: bool = False,
                 keep_rejects: bool = True) -> None:
        super().__init__(keep_rejects=keep_rejects)
        self.dirs = directions_of(direction)
        self.direction = direction
        self.minimums = {"nli_forward": float(min_forward), "nli_backward": float(min_backward)}
        if batch_size < 1 or records_per_call < 1 or max_length < 2:
            raise DistillError("NLI critic: batch_size >= 1, records_per_call >= 1 and max_length >= 2 are required")
        self.model_batch_size, self.batch_size, self.max_length = batch_size, records_per_call, max_length
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        p = Path(model).expanduser()
        if model.startswith((".", "/", "~")) and not p.exists():
            raise DistillError(f"NLI model folder not found: {p}")
        self.path = str(p) if p.exists() else model
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.device = pick_device(device, "NLI critic")
        # huggingface_hub reads HF_HUB_OFFLINE once, at import: if it was imported before the
        # variable was set, only local_files_only keeps a missing id from minutes of retries.
        offline = os.environ["HF_HUB_OFFLINE"].strip().lower() in ("1", "true", "yes", "on")
        kw = dict(trust_remote_code=trust_remote_code, local_files_only=offline)
        try:
            self.tok = AutoTokenizer.from_pretrained(self.path, **kw)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                self.path, dtype=pick_dtype(dtype, self.device, "NLI critic"), **kw)
        except (OSError, ValueError) as e:
            raise DistillError(f"could not load NLI model {model!r}: {e}\nNothing is downloaded at run time "
                               f"here: pass a local folder or a model already in the Hugging Face cache.") from e
        self.entail_index = entailment_index(self.model.config.id2label, entailment_label)
        self.model.to(self.device).eval()
        self._torch = torch

    def thresholds(self) -> list[Threshold]:
        return [(f"nli_{d}", ">=", self.minimums[f"nli_{d}"]) for d in self.dirs]

    def logits(self, premises: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
        """(n, classes) float32 logits for (premise, hypothesis) pairs, in input order.

        Pairs go longest first (by characters: a cheap stand-in for token counts that
        avoids tokenizing twice), each batch padded to its own longest pair."""
        torch = self._torch
        n = len(premises)
        out = np.empty((n, self.model.config.num_labels), dtype=np.float32)
        order = sorted(range(n), key=lambda i: -(len(premises[i]) + len(hypotheses[i])))
        for b in range(0, n, self.model_batch_size):
            idx = order[b : b + self.model_batch_size]
            enc = self.tok([premises[i] for i in idx], [hypotheses[i] for i in idx], padding=True,
                           truncation=True, max_length=self.max_length, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                out[idx] = self.model(**enc).logits.float().cpu().numpy()
        return out

    def judge_batch(self, records: list[Record]) -> list[Verdict]:
        xs, ys = [r.input for r in records], [r.output for r in records]
        premises: list[str] = []
        hypotheses: list[str] = []
        for d in self.dirs:  # forward: x => y (x is the premise); backward: y => x
            premises += xs if d == "forward" else ys
            hypotheses += ys if d == "forward" else xs
        flat = self.logits(premises, hypotheses)
        n = len(records)
        per_dir = {f"nli_{d}": flat[k * n : (k + 1) * n] for k, d in enumerate(self.dirs)}
        probs, verdicts = decide(per_dir, self.entail_index, self.minimums)
        for i, r in enumerate(records):
            for name, p in probs.items():
                r.scores[name] = float(p[i])
        return verdicts

    def close(self) -> None:
        release_model(self)
