"""A stage's output folder: whose run it holds, and whether that run finished.

Every stage that writes into a folder (generate, filter, corpus, train, each eval model)
follows the same four steps, so a rerun resumes its own work and never mixes two runs:

1. :meth:`RunFolder.check`: refuse a folder whose record holds another fingerprint (the
   config fields that decide the result);
2. :meth:`RunFolder.claim`: record this run's fingerprint, once the stage's models have
   loaded, so a config that fails to load leaves nothing to refuse the fixed one;
3. :meth:`RunFolder.finished`: this very run's stored result, when it finished;
4. :meth:`RunFolder.finish`: write that result, atomically and last.

The record is a JSON file holding the fingerprint under ``key`` (or being it, ``key=None``);
the result may be a second file or the record itself. Both are written through
:func:`distill.shards.atomic_write_json`, so a killed writer leaves the old file or none.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distill.errors import ConfigError
from distill.shards import atomic_write_json


def _same(a: Any, b: Any) -> bool:
    # compared as stored: key order, tuples vs lists and non-JSON values do not count
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file; None when missing or unreadable (these files are only written
    atomically, so an unreadable one is not ours to trust)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def update_json(path: Path, **fields: Any) -> None:
    """Merge ``fields`` into the JSON object at ``path`` atomically; nothing when there is none."""
    data = read_json(path)
    if data is not None:
        atomic_write_json(path, {**data, **fields})


def _keys(a: dict, b: dict) -> list:
    return [*b, *(k for k in a if k not in b)]


def _walk(a: Any, b: Any, name: str) -> list[str]:
    if _same(a, b):
        return []
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [name]
    # below the top a missing key and a None differ, as the whole values compared before did
    return [n for k in _keys(a, b)
            for n in (_walk(a[k], b[k], f"{name}.{k}") if k in a and k in b else [f"{name}.{k}"])] or [name]


def differing(old: Any, new: Any) -> list[str]:
    """The fingerprint fields on which ``old`` and ``new`` disagree, dotted where a nested
    dict says which part (``task.k``). A top-level field missing on one side counts as
    None, as the stages compared them before sharing this."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if _same(old, new) else ["fingerprint"]
    return [n for k in _keys(old, new) for n in _walk(old.get(k), new.get(k), str(k))]


class RunFolder:
    """The output folder of one run of a stage.

    ``record`` holds the fingerprint (under ``key``, or is it when ``key`` is None);
    ``result`` (default: the record itself) is the file written last, when the run
    finished, and ``needs`` the other paths a finished run must have. ``holds`` and
    ``elsewhere`` word the refusal: "<path> holds <holds> (<fields> differ). Resuming
    would mix the two; <elsewhere>, or delete <path> to start over."
    """

    def __init__(self, path: str | Path, fingerprint: Any, *, record: str = "manifest.json",
                 key: str | None = "fingerprint", result: str | None = None, needs: Sequence[str] = (),
                 holds: str = "a run made with a different config", elsewhere: str = "use another output_dir") -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.record, self.key = record, key
        self.result = result or record
        self.needs = tuple(needs)
        self.holds, self.elsewhere = holds, elsewhere

    def stored_fingerprint(self) -> Any:
        """The fingerprint the record holds ({} when the record has none); None without a record."""
        data = read_json(self.path / self.record)
        if data is None or self.key is None:
            return data
        return data.get(self.key, {})

    def check(self) -> None:
        """Raise ConfigError, naming the fields, when the folder holds a run with another fingerprint."""
        old = self.stored_fingerprint()
        diff = differing(old, self.fingerprint) if old is not None else []
        if diff:
            raise ConfigError(
                f"{self.path} holds {self.holds} ({', '.join(diff)} differ). Resuming would mix the two; "
                f"{self.elsewhere}, or delete {self.path} to start over.")

    def claim(self, **extra: Any) -> None:
        """Record the fingerprint (and ``extra`` fields beside it) atomically. Call it after
        :meth:`check` and once the stage's models have loaded."""
        if self.key is None and extra:
            raise ValueError(f"{self.record} holds the fingerprint alone; it has no room for {', '.join(extra)}")
        record = {self.key: self.fingerprint, **extra} if self.key else self.fingerprint
        atomic_write_json(self.path / self.record, record)

    def update(self, **fields: Any) -> None:
        """Merge ``fields`` into the record (a run's status); nothing when there is no record."""
        update_json(self.path / self.record, **fields)

    def finished(self) -> dict[str, Any] | None:
        """The stored result when the folder holds this very run, finished (its result and
        ``needs`` present); None otherwise, another run's folder included."""
        old = self.stored_fingerprint()
        if old is None or differing(old, self.fingerprint):
            return None
        result = read_json(self.path / self.result)
        if result is None or not all((self.path / p).exists() for p in self.needs):
            return None
        return result

    def finish(self, result: dict[str, Any]) -> None:
        """Write the result atomically: a failed write leaves the previous file (or none).
        A result that is the record must carry the fingerprint under ``key``."""
        atomic_write_json(self.path / self.result, result)
