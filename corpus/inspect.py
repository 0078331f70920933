"""``distill inspect PATH``: a corpus at a glance from the terminal."""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

from distill.corpus.dataset import load_corpus

from distill.errors import DistillError


def _short(text: str, width: int = 100) -> str:
    return textwrap.shorten(" ".join(text.split()), width=width, placeholder=" ...")


def inspect_corpus(path: str | Path, examples: int = 3) -> str:
    """Splits and sizes, the funnel (from corpus_stats.json when present), and ``examples``
    random rows per split (the same ones each time)."""
    p = Path(path)
    if not p.exists():
        raise DistillError(f"no such corpus folder: {p}")
    dd = load_corpus(p)
    stats = {}
    if (p / "corpus_stats.json").is_file():
        stats = json.loads((p / "corpus_stats.json").read_text())
    lines = [f"corpus {p}"]
    any_split = next(iter(dd.values()), None)
    if any_split is not None:
        lines.append("columns: " + ", ".join(f"{k}" for k in any_split.features))
    lines += ["", f"{'split':<14}{'rows':>8}{'groups':>8}"]
    for s, ds in dd.items():
        groups = stats.get("splits", {}).get(s, {}).get("groups")
        if groups is None:
            groups = len(set(ds["group"])) if "group" in ds.column_names else "?"
        lines.append(f"{s:<14}{len(ds):>8}{groups:>8}")
    if stats.get("funnel"):
        first = stats["funnel"][0]["count"] or 1
        lines += ["", f"{'stage':<28}{'records':>9}{'%':>8}  dropped"]
        for row in stats["funnel"]:
            dropped = ", ".join(f"{k}={v}" for k, v in row.get("dropped", {}).items() if v)
            lines.append(f"{row['stage']:<28}{row['count']:>9}{100 * row['count'] / first:>7.1f}%  {dropped}")
    for s, ds in dd.items():
        if not len(ds) or examples <= 0:
            continue
        lines += ["", f"-- {s}: {min(examples, len(ds))} of {len(ds)} --"]
        for row in ds.select(sorted(random.Random(s).sample(range(len(ds)), min(examples, len(ds))))):
            lines += [f"[{row['id']}]", f"  x: {_short(row['input'])}", f"  y: {_short(row['output'])}"]
    return "\n".join(lines)
