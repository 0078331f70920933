"""Dedup: exact, semantic, and the Impossible-Distillation diversity filter.

Each keeps one record per cluster by one stated rule: the highest ``rank_by`` score (the
minimum of the named ``record.scores`` keys; a missing score ranks lowest), then the
lowest id (string order; the teacher's ids are zero-padded). A survivor is never dropped,
so both sides of a duplicate pair never go.

Dedup is global across shards, so every step has two phases:

1. ``fit(records)``, called once per shard (any iterable, streamed): collects what the
   decision needs -- hashes of normalised text, or embeddings (cached on disk by the
   :class:`~distill.critics.embed.Encoder` given ``cache_path``, so a rerun never encodes
   twice) -- plus ids and scores.
2. ``decide() -> {dropped id: survivor id}``: one JSON-serialisable dict over everything
   fitted. Survivors are not keys. The runner writes it atomically and, on a rerun, hands
   it back with ``set_decision``; then ``apply(shard)`` filters each shard by it.

``apply`` and ``run`` go through the :class:`~distill.critics.base.Critic` machinery: a
dropped record gets the reason (``exact_dup``, ``semantic_dup``, ``diversity_dup``) and its
survivor in ``record.metadata["dup_of"]``, and is counted and kept in ``rejected``.
``run(records)`` = fit + decide + apply, for small in-memory use.
"""

from __future__ import annotations

import hashlib
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from distill.critics.base import Critic, Verdict, batched
from distill.critics.neighbors import (SearchParams, components, id_ranks, neighbor_pairs, pick_survivors,
                                       resolve_method)
from distill.errors import ConfigError, DistillError
from distill.record import Record

FIELDS = ("input", "output", "pair")


def normalize(text: str) -> str:
    """NFKC, casefolded, whitespace runs collapsed to one space, punctuation and spaces
    stripped at both ends: ``"  Hello,   WORLD!! "`` -> ``"hello, world"``."""
    t = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    i, j = 0, len(t)
    while i < j and (t[i] == " " or unicodedata.category(t[i])[0] == "P"):
        i += 1
    while j > i and (t[j - 1] == " " or unicodedata.category(t[j - 1])[0] == "P"):
        j -= 1
    return t[i:j]


def field_text(record: Record, field: str) -> str:
    if field == "input":
        return record.input
    if field == "output":
        return record.output
    return f"{record.input}\n{record.output}"


def _as_keys(rank_by: str | Sequence[str] | None) -> tuple[str, ...]:
    if rank_by is None:
        return ()
    return (rank_by,) if isinstance(rank_by, str) else tuple(rank_by)


def _check_fields(fields: Iterable[str], what: str) -> None:
    for f in fields:
        if f not in FIELDS:
            raise ConfigError(f"{what}: field must be one of {', '.join(FIELDS)}, not {f!r}")


class _Dedup(Critic):
    """Shared two-phase machinery. Subclasses collect in ``_fit_batch`` and build the
    graph in ``_edges``; nodes ``0..n-1`` are the fitted records, higher ones are helper
    nodes (texts) that only join records."""

    reason = "dup"
    batch_size = 1024

    def __init__(self, rank_by: str | Sequence[str] | None = None, keep_rejects: bool = True) -> None:
        super().__init__(keep_rejects=keep_rejects)
        self.rank_by = _as_keys(rank_by)
        self.decision: dict[str, str] | None = None
        self.info: dict[str, Any] = {}  # what decide() found, for stats()
        self.reset()

    def reset(self) -> None:
        """Forget everything fitted (and the decision)."""
        self.ids: list[str] = []
        self.scores: list[float] = []
        self.decision = None

    # -- phase 1 -------------------------------------------------------------------
    def fit(self, records: Iterable[Record]) -> "_Dedup":
        for batch in batched(records, self.batch_size):
            self.ids.extend(r.id for r in batch)
            self.scores.extend(self._score(r) for r in batch)
            self._fit_batch(batch)
        return self

    def _score(self, r: Record) -> float:
        if not self.rank_by:
            return float("-inf")
        vals = [r.scores.get(k) for k in self.rank_by]
        return float("-inf") if any(v is None for v in vals) else float(min(vals))

    def _fit_batch(self, batch: list[Record]) -> None:
        raise NotImplementedError

    # -- phase 2 -------------------------------------------------------------------
    def decide(self, records: Iterable[Record] | None = None) -> dict[str, str]:
        """``{dropped id: survivor id}`` over everything fitted (``records``, if given, are
        fitted first)."""
        if records is not None:
            self.fit(records)
        n = len(self.ids)
        if len(set(self.ids)) != n:
            seen: set[str] = set()
            dup = next(i for i in self.ids if i in seen or seen.add(i))
            raise DistillError(f"{self.name}: record id {dup!r} was fitted twice; ids must be unique across shards")
        t0 = time.perf_counter()
        self.info = {}
        n_nodes, rows, cols = self._edges(n)
        _, labels = components(n_nodes, rows, cols)
        labels = labels[:n]
        best = pick_survivors(labels, np.asarray(self.scores, dtype=np.float64), id_ranks(self.ids))
        gone = np.nonzero(best != np.arange(n))[0]
        self.decision = {self.ids[i]: self.ids[best[i]] for i in gone}
        self.info.update(seen=n, clusters=int(len(np.unique(labels))) if n else 0, duplicates=len(self.decision),
                         decide_s=round(time.perf_counter() - t0, 3))
        return self.decision

    def _edges(self, n: int) -> tuple[int, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def set_decision(self, decision: dict[str, str]) -> None:
        """Use a decision made earlier (a rerun reads it back from the runner's JSON)."""
        self.decision = dict(decision)

    # -- phase 3 -------------------------------------------------------------------
    def judge(self, record: Record) -> Verdict:
        if self.decision is None:
            raise DistillError(f"{self.name}: no decision yet; call fit() and decide() (or set_decision) first")
        survivor = self.decision.get(record.id)
        if survivor is None:
            return True
        record.metadata["dup_of"] = survivor
        return (False, self.reason)

    def apply(self, records: Iterable[Record]) -> Iterator[Record]:
        """Filter a shard by the decision (records never fitted are kept)."""
        return Critic.run(self, records)

    def run(self, records: Iterable[Record], rank: int = 0, world_size: int = 1) -> Iterator[Record]:
        """fit + decide + apply over records held in memory (dedup is global: with several
        ranks, fit every shard into one object and decide once instead)."""
        if world_size > 1:
            raise DistillError(f"{self.name} is global across shards: fit all shards, decide once, then apply")
        records = list(records)
        self.reset()
        self.fit(records)
        self.decide()
        yield from self.apply(records)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), **self.info}


class ExactDedup(_Dedup):
    """Records whose normalised text is equal in any of ``fields`` (``input``, ``output``,
    ``pair`` = both together) are duplicates; clusters are closed transitively. Streams
    8-byte hashes, so memory is ~ (id + 8 bytes per field) per record. An empty
    normalised field is nobody's duplicate (the well-formedness critic judges it)."""

    name = "exact_dedup"
    reason = "exact_dup"

    def __init__(self, fields: Sequence[str] = ("pair",), rank_by: str | Sequence[str] | None = None,
                 keep_rejects: bool = True) -> None:
        fields = [fields] if isinstance(fields, str) else list(fields)
        if not fields:
            raise ConfigError("exact dedup: give at least one of input, output, pair")
        _check_fields(fields, "exact dedup")
        self.fields = tuple(dict.fromkeys(fields))
        super().__init__(rank_by, keep_rejects)

    def reset(self) -> None:
        super().reset()
        self.hashes: dict[str, list[int]] = {f: [] for f in self.fields}

    @staticmethod
    def _hash(text: str) -> int:
        # 0 marks an empty field (odd hashes otherwise); two of 10^7 distinct texts collide
        # in 63 bits with odds ~5e-6
        if not text:
            return 0
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") | 1

    def _fit_batch(self, batch: list[Record]) -> None:
        for r in batch:
            x, y = normalize(r.input), normalize(r.output)
            for f in self.fields:
                key = x if f == "input" else y if f == "output" else (f"{x}\0{y}" if x or y else "")
                self.hashes[f].append(self._hash(key))

    def _edges(self, n: int) -> tuple[int, np.ndarray, np.ndarray]:
        rows, cols = [], []
        for f in self.fields:
            h = np.asarray(self.hashes[f], dtype=np.uint64)
            _, first, group = np.unique(h, return_index=True, return_inverse=True)
            head = first[group.ravel()]  # each record -> the first record with its key
            link = (head != np.arange(n)) & (h != 0)
            rows.append(np.nonzero(link)[0])
            cols.append(head[link])
        return n, np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)


class _TextVectors:
    """Unique texts -> rows of one embedding matrix, encoded in batches as they arrive."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.row: dict[str, int] = {}
        self.parts: list[np.ndarray] = []

    def rows(self, texts: list[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self.row]
        if new:
            vecs = np.asarray(self.encoder.encode(new), dtype=np.float32)
            if vecs.shape[0] != len(new):
                raise DistillError(f"encoder returned {vecs.shape[0]} vectors for {len(new)} texts")
            base = len(self.row)
            self.row.update((t, base + k) for k, t in enumerate(new))
            self.parts.append(vecs)
        return np.fromiter((self.row[t] for t in texts), dtype=np.int64, count=len(texts))

    def matrix(self) -> np.ndarray:
        if len(self.parts) > 1:
            self.parts = [np.concatenate(self.parts)]
        return self.parts[0] if self.parts else np.zeros((0, 1), dtype=np.float32)


class _Embedded(_Dedup):
    """Owns an encoder (given, or built on first use from ``model``/``cache_path``) and the
    neighbour search settings."""

    def __init__(self, encoder: Any = None, threshold: float = 0.95, method: str = "auto",
                 search: dict[str, Any] | None = None, rank_by: str | Sequence[str] | None = None,
                 model: str | None = None, cache_path: str | None = None, keep_rejects: bool = True) -> None:
        if not 0 < threshold <= 1:
            raise ConfigError(f"{self.name}: threshold must be in (0, 1], not {threshold}")
        self.threshold = float(threshold)
        self.search = SearchParams.from_dict({**(search or {}), "method": method})
        self._encoder, self._model, self._cache_path = encoder, model, cache_path
        super().__init__(rank_by, keep_rejects)

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from distill.critics.embed import Encoder

            self._encoder = Encoder(self._model, cache_path=self._cache_path)
        return self._encoder

    def reset(self) -> None:
        super().reset()
        self.texts: _TextVectors | None = None

    def _vectors(self) -> _TextVectors:
        if self.texts is None:
            self.texts = _TextVectors(self.encoder)
        return self.texts

    def _search(self, node_rows: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Neighbour pairs among the texts ``node_rows`` (positions into it) and their cosines."""
        vecs = self._vectors().matrix()[node_rows]
        method = resolve_method(len(vecs), self.search)
        a, b = neighbor_pairs(vecs, threshold, self.search)
        self.info.setdefault("method", method)
        self.info["pairs"] = self.info.get("pairs", 0) + int(len(a))
        sims = np.einsum("ij,ij->i", vecs[a], vecs[b]) if len(a) else np.zeros(0, np.float32)
        return a, b, sims


class SemanticDedup(_Embedded):
    """Records whose ``field`` texts (``input``, ``output``, or ``pair`` = input and output
    joined by a newline) have cosine >= ``threshold`` are duplicates; clusters are the
    connected components. Each distinct text is encoded and searched once."""

    name = "semantic_dedup"
    reason = "semantic_dup"

    def __init__(self, encoder: Any = None, field: str = "output", threshold: float = 0.95,
                 method: str = "auto", search: dict[str, Any] | None = None,
                 rank_by: str | Sequence[str] | None = None, model: str | None = None,
                 cache_path: str | None = None, keep_rejects: bool = True) -> None:
        _check_fields([field], "semantic dedup")
        self.field = field
        super().__init__(encoder, threshold, method, search, rank_by, model, cache_path, keep_rejects)

    def reset(self) -> None:
        super().reset()
        self.text_of: list[np.ndarray] = []

    def _fit_batch(self, batch: list[Record]) -> None:
        self.text_of.append(self._vectors().rows([field_text(r, self.field) for r in batch]))

    def _edges(self, n: int) -> tuple[int, np.ndarray, np.ndarray]:
        if n == 0:
            return 0, np.zeros(0, np.int64), np.zeros(0, np.int64)
        t = np.concatenate(self.text_of)
        n_texts = len(self._vectors().row)
        a, b, _ = self._search(np.arange(n_texts), self.threshold)
        # nodes: records 0..n-1, then one node per distinct text; a record joins its text
        rows = np.concatenate([np.arange(n), n + a])
        cols = np.concatenate([n + t, n + b])
        return n + n_texts, rows, cols


class DiversityFilter(_Embedded):
    """The Impossible-Distillation diversity filter. Nodes are pairs (records); two pairs
    are joined when their sources (x) are near-duplicates (cosine >= ``threshold``) or
    their targets (y) are -- or, given ``entail(premises, hypotheses) -> P(entailment)``,
    when they entail each other both ways (>= ``entail_threshold``; only sentence pairs
    with cosine >= ``candidate_threshold`` are sent to it). With ``cross=True`` a source may
    also match a target (so (a, b) and (b, a) join). One pair per connected component is
    kept: the highest two-way score (the minimum of the ``score`` keys, e.g.
    ``["nli_forward", "nli_backward"]``), then the lowest id."""

    name = "diversity"
    reason = "diversity_dup"

    def __init__(self, encoder: Any = None, threshold: float = 0.9, score: str | Sequence[str] | None = None,
                 method: str = "auto", search: dict[str, Any] | None = None,
                 entail: Callable[[list[str], list[str]], Sequence[float]] | None = None,
                 entail_threshold: float = 0.75, candidate_threshold: float = 0.7, cross: bool = False,
                 model: str | None = None, cache_path: str | None = None, keep_rejects: bool = True) -> None:
        self.entail = entail
        self.entail_threshold = float(entail_threshold)
        self.candidate_threshold = float(candidate_threshold)
        self.cross = cross
        super().__init__(encoder, threshold, method, search, score, model, cache_path, keep_rejects)

    def reset(self) -> None:
        super().reset()
        self.src: list[np.ndarray] = []
        self.tgt: list[np.ndarray] = []

    def _fit_batch(self, batch: list[Record]) -> None:
        v = self._vectors()
        self.src.append(v.rows([r.input for r in batch]))
        self.tgt.append(v.rows([r.output for r in batch]))

    def _sentence_edges(self, used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Edges among the texts ``used`` (positions): near-duplicates, plus candidates
        that entail each other both ways when an entailment scorer is set."""
        lo = min(self.threshold, self.candidate_threshold) if self.entail else self.threshold
        a, b, sims = self._search(used, lo)
        near = sims >= self.threshold
        if self.entail is None or near.all():
            return a[near], b[near]
        ca, cb = a[~near], b[~near]
        texts = list(self._vectors().row)  # insertion order = row order
        ta = [texts[i] for i in used[ca]]
        tb = [texts[i] for i in used[cb]]
        fwd = np.asarray(self.entail(ta, tb), dtype=np.float64)
        bwd = np.asarray(self.entail(tb, ta), dtype=np.float64)
        if fwd.shape != (len(ta),) or bwd.shape != (len(ta),):
            raise DistillError(f"diversity: entail() returned {fwd.shape}/{bwd.shape} scores for {len(ta)} pairs")
        both = np.minimum(fwd, bwd) >= self.entail_threshold
        self.info["entail_checked"] = self.info.get("entail_checked", 0) + len(ta)
        self.info["entail_edges"] = self.info.get("entail_edges", 0) + int(both.sum())
        return np.concatenate([a[near], ca[both]]), np.concatenate([b[near], cb[both]])

    def _edges(self, n: int) -> tuple[int, np.ndarray, np.ndarray]:
        if n == 0:
            return 0, np.zeros(0, np.int64), np.zeros(0, np.int64)
        src, tgt = np.concatenate(self.src), np.concatenate(self.tgt)
        # Helper nodes: one per distinct source text and one per distinct target text (one
        # shared set with cross=True). Sentence edges join only texts that are used in that
        # role, so a chain through a text no pair uses as a source never joins two pairs.
        groups = [np.concatenate([src, tgt])] if self.cross else [src, tgt]
        rows, cols = [], []
        base = n
        pos_src = pos_tgt = None
        for g, texts in enumerate(groups):
            used = np.unique(texts)
            a, b = self._sentence_edges(used)
            rows.append(base + a)
            cols.append(base + b)
            if g == 0:
                pos_src = base + np.searchsorted(used, src)
                pos_tgt = base + np.searchsorted(used, tgt) if self.cross else None
            else:
                pos_tgt = base + np.searchsorted(used, tgt)
            base += len(used)
        rec = np.arange(n)
        rows += [rec, rec]
        cols += [pos_src, pos_tgt]
        return base, np.concatenate(rows), np.concatenate(cols)
