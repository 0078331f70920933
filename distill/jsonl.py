"""One reader for JSON-lines files (seeds, labels, filled sheets, label tools): each non-blank
line one JSON object; the first bad line stops the read with one line naming the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill.errors import DistillError


def read_objects(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line of ``path``. A byte-order mark
    (spreadsheets save one) is dropped; a line that is not UTF-8, not JSON or not an object
    raises :class:`DistillError` ``"<path> line <n>: ..."``."""
    p = Path(path)
    out: list[tuple[int, dict[str, Any]]] = []
    with p.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError:
                raise DistillError(f"{p} line {n}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DistillError(f"{p} line {n}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise DistillError(f"{p} line {n}: expected a JSON object, got {type(obj).__name__}")
            out.append((n, obj))
    return out
