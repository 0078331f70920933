"""Reading seed inputs (the things a task generates from) with errors that name the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.errors import DistillError
from distill.jsonl import read_objects


def read_rows(path: str | Path, field: str) -> list[dict[str, Any]]:
    """Rows of a seed file. ``.jsonl``: one JSON object per line, ``field`` required and
    non-empty; ``builtin:<pool>``: a shipped pool (distill.data.pools), its text as ``field``
    and its other keys (``id``, ``references``, ...) kept; anything else: one input per
    non-blank line, exposed as ``field``."""
    if str(path).startswith("builtin:"):
        from distill.data.pools import load_pool_rows

        return [{**{k: v for k, v in row.items() if k != "text"}, field: row["text"], "_line": n}
                for n, row in enumerate(load_pool_rows(str(path)), 1)]
    p = Path(path)
    if not p.is_file():
        raise DistillError(f"seed file not found: {p}")
    rows: list[dict[str, Any]] = []
    if p.suffix in (".jsonl", ".ndjson"):
        for n, obj in read_objects(p):
            if field not in obj:
                raise DistillError(f"{p} line {n}: no field {field!r} (fields: {', '.join(obj) or 'none'})")
            if not isinstance(obj[field], str) or not obj[field].strip():
                raise DistillError(f"{p} line {n}: field {field!r} is empty or not a string")
            obj["_line"] = n
            rows.append(obj)
    else:
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise DistillError(f"{p}: not UTF-8 text ({e})") from e
        rows = [{field: line.strip(), "_line": n} for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not rows:
        raise DistillError(f"{p}: no inputs (the file is empty or blank)")
    return rows
