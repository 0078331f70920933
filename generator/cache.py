"""The request cache: every completion ever paid for in a run, keyed by what produced it.

Key = sha256(model id, prompt, sampling params, sample index). SQLite in WAL mode; the
teacher commits each completion as it arrives (one transaction per API call or per local
batch), so a ``kill -9`` loses only what was in flight and a rerun never pays twice for a
completion that was stored. A commit is durable against a killed process (WAL with
``synchronous=NORMAL`` can only lose commits to a power cut or an OS crash). The cache is
also the run's ledger: the budget is checked against the tokens recorded here.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

from distill.errors import DistillError
from distill.shards import merge_sqlite
from distill.generator.backends.base import Completion, Prompt, SamplingParams, prompt_text


def cache_key(model_id: str, prompt: Prompt, params: SamplingParams, index: int, constraints=None) -> str:
    """``constraints`` (a LexicalConstraint) joins the key when given: constrained and free
    samples of one prompt never share an entry (keys without it are as before)."""
    parts = [model_id, prompt_text(prompt), params.key(), index]
    if constraints is not None:
        parts.append(constraints.key())
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()

CREATE = ("CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
          "completion_tokens INTEGER NOT NULL, finish_reason TEXT NOT NULL, "
          "prompt_tokens INTEGER NOT NULL, created REAL NOT NULL)")


class RequestCache:
    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        """``readonly``: read an existing cache without writing anything (``--estimate``)."""
        self.path = Path(path)
        self._lock = threading.Lock()
        if readonly:
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Written from the thread that drives the teacher, which is not always the one that
        # opened it (an event loop on a helper thread in notebooks); the lock serialises use.
        self.db = sqlite3.connect(self.path, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(CREATE)
        self.db.commit()

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        found: dict[str, Completion] = {}
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            q = f"SELECT key, text, completion_tokens, finish_reason FROM completions WHERE key IN ({','.join('?' * len(part))})"
            for k, text, ct, fr in self.db.execute(q, part):
                found[k] = Completion(text=text, completion_tokens=ct, finish_reason=fr)
        return found

    def put_many(self, rows: list[tuple[str, Completion, int]]) -> None:
        """Store (key, completion, prompt tokens billed with it) rows in one transaction."""
        now = time.time()
        try:
            with self._lock, self.db:
                self.db.executemany(
                    "INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?, ?, ?)",
                    [(k, c.text, c.completion_tokens, c.finish_reason, pt, now) for k, c, pt in rows],
                )
        except sqlite3.OperationalError as e:
            if "full" in str(e):
                raise DistillError(f"disk full while writing the request cache {self.path}. Finished shards and "
                                   f"earlier cached completions are intact; free some space and rerun to resume.") from e
            raise

    def totals(self) -> tuple[int, int]:
        """(prompt tokens, completion tokens) paid for over the whole run so far."""
        p, c = self.db.execute("SELECT COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0) FROM completions").fetchone()
        return int(p), int(c)

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        self.db.close()


class ShardCache(RequestCache):
    """One shard's cache on a cluster worker: completions go into the shard's own file (one
    writer, whatever node runs it), and reads also see the run's main cache, read-only. The
    driver merges the shard files into the main cache (:func:`distill.shards.merge_sqlite`), so a run on a
    cluster leaves the same ``cache.sqlite`` a local run does, and a replica that dies mid-shard
    leaves every completion it received for the retry to find."""

    def __init__(self, path: str | Path, base: str | Path | None = None) -> None:
        super().__init__(path)
        self.base = RequestCache(base, readonly=True) if base is not None and Path(base).is_file() else None

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        found = self.base.get_many(keys) if self.base is not None else {}
        rest = [k for k in keys if k not in found]
        if rest:
            found.update(super().get_many(rest))
        return found

    def totals(self) -> tuple[int, int]:
        p, c = super().totals()
        if self.base is not None:
            bp, bc = self.base.totals()
            p, c = p + bp, c + bc
        return p, c

    def close(self) -> None:
        if self.base is not None:
            self.base.close()
        super().close()


def merge_shard_caches(out: Path) -> int:
    """Merge the shard caches a cluster run left in ``out/cache/`` (all of them when it finished;
    those of a killed run otherwise) into ``out/cache.sqlite``; returns the completions added."""
    return merge_sqlite(Path(out) / "cache.sqlite", Path(out) / "cache", "completions", CREATE)
