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
from distill.generator.backends.base import Completion, Prompt, SamplingParams, prompt_text


def cache_key(model_id: str, prompt: Prompt, params: SamplingParams, index: int, constraints=None) -> str:
    """``constraints`` (a LexicalConstraint) joins the key when given: constrained and free
    samples of one prompt never share an entry (keys without it are as before)."""
    parts = [model_id, prompt_text(prompt), params.key(), index]
    if constraints is not None:
        parts.append(constraints.key())
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


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
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
            "completion_tokens INTEGER NOT NULL, finish_reason TEXT NOT NULL, "
            "prompt_tokens INTEGER NOT NULL, created REAL NOT NULL)"
        )
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
