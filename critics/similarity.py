"""Embedding similarity: a cheap semantic critic on sentence-embedding cosine.

Keeps a pair when ``cos(e(x), e(y)) >= min_cos`` and, if ``max_cos`` is set,
``cos <= max_cos``. Unit vectors make cosine symmetric, so one number checks both
directions. It catches off-topic answers, language switches and much meta-text (low
cosine) and, with ``max_cos``, copies and one-word edits (cosine ~1). It cannot tell a
contradiction or a dropped clause from a paraphrase (all ~0.85 with MiniLM; see
shared/EVAL.md), so it belongs in front of the entailment critics, not instead of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distill.critics.base import Critic, Threshold, Verdict, above, below
from distill.critics.embed import Encoder
from distill.record import Record

#: measured on data/paraphrase/labels.jsonl, train split, MiniLM: keeps 121/122 hand
#: paraphrases (lowest 0.61) and drops 15/16 same-topic unrelated sentences; 0.7 would
#: drop all 16 but also 7% of the paraphrases. No paraphrase there is above 0.97, while
#: every copy is >= 0.99: max_cos=0.98 is a safe near-copy cut.
DEFAULT_MIN_COS = 0.65


class EmbeddingSimilarity(Critic):
    """Writes ``record.scores["embed_cos"]``; drops with ``embed_cos<MIN`` or
    ``embed_cos>MAX``. ``encoder`` is a sentence-transformers id or folder (None: MiniLM
    from its wheel) or a loaded :class:`Encoder` to share; ``cache_path`` keeps
    embeddings in SQLite across runs."""

    name = "embed_similarity"
    score_names = ("embed_cos",)
    batch_size = 256

    def __init__(self, min_cos: float | None = DEFAULT_MIN_COS, max_cos: float | None = None,
                 encoder: str | Encoder | None = None, cache_path: str | Path | None = None,
                 device: str | None = None, batch_size: int = 256, keep_rejects: bool = True) -> None:
        super().__init__(keep_rejects)
        for k, v in (("min_cos", min_cos), ("max_cos", max_cos)):
            if v is not None and not -1 <= v <= 1:
                raise ValueError(f"embed_similarity: {k} must be in [-1, 1], got {v}")
        if min_cos is not None and max_cos is not None and min_cos > max_cos:
            raise ValueError(f"embed_similarity: min_cos {min_cos} > max_cos {max_cos}")
        self.min_cos, self.max_cos = min_cos, max_cos
        self.batch_size = batch_size
        self.encoder = encoder if isinstance(encoder, Encoder) else \
            Encoder(encoder, device=device, cache_path=cache_path)

    def thresholds(self) -> list[Threshold]:
        return [("embed_cos", op, v) for op, v in ((">=", self.min_cos), ("<=", self.max_cos)) if v is not None]

    def cosines(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        # one encode call per batch over the distinct texts (candidate pairs of one context
        # share their sentences, so this is often far fewer than 2 per pair)
        texts = list(dict.fromkeys(t for p in pairs for t in p))
        if not texts:
            return np.zeros(0, dtype=np.float32)
        emb = self.encoder.encode(texts)
        row = {t: i for i, t in enumerate(texts)}
        u = emb[[row[x] for x, _ in pairs]]
        v = emb[[row[y] for _, y in pairs]]
        return np.clip((u * v).sum(1), -1.0, 1.0)

    def judge_batch(self, records: list[Record]) -> list[Verdict]:
        cos = self.cosines([(r.input, r.output) for r in records])
        out: list[Verdict] = []
        for r, c in zip(records, cos):
            c = r.scores["embed_cos"] = round(float(c), 6)
            if self.min_cos is not None and c < self.min_cos:
                out.append((False, below("embed_cos", self.min_cos)))
            elif self.max_cos is not None and c > self.max_cos:
                out.append((False, above("embed_cos", self.max_cos)))
            else:
                out.append(True)
        return out
