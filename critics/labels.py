"""Hand-labelled pairs for training and measuring critics (``distill critic train``).

Two row formats are read, one JSON object per line:

- the graded format of ``data/paraphrase/real_labels.jsonl``: ``label`` one of ``P`` (same
  meaning, visibly reworded: the only keep), ``C`` (copy or trivial edit), ``M`` (meaning
  changed; ``kinds`` lists how: ``added``, ``dropped``, ``fact``, ``role``, ``number``,
  ``time``, ``negation``, ``attribution``) or ``D`` (degenerate or off task);
- the binary format of ``data/paraphrase/labels.jsonl``: ``label`` 0 or 1 and one ``kind``.

Both need ``id``, ``x``, ``y``, ``label`` and ``split`` (``train``, ``dev`` or ``test``);
``group`` (rows sharing one never straddle cross-validation folds; default: x) and
``scores`` (upstream critic scores) are optional. A bad row raises naming file and line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from distill.errors import DistillError
from distill.jsonl import read_objects

LETTERS = ("P", "C", "M", "D")
#: the kinds of a meaning change (``M``) the labelling guide names; others are accepted as given
M_KINDS = ("added", "dropped", "fact", "role", "number", "time", "negation", "attribution")
SPLITS = ("train", "dev", "test")
#: how new labels are split, by a hash of the source sentence (x): every pair of one x lands in one split
SPLIT_FRACTIONS = (("train", 0.5), ("dev", 0.2), ("test", 0.3))


def split_of(x: str) -> str:
    """The split of a labelled pair with source sentence ``x`` (stable: a hash of x)."""
    h = int(hashlib.sha1(x.strip().lower().encode()).hexdigest()[:8], 16) / 16**8
    acc = 0.0
    for name, frac in SPLIT_FRACTIONS:
        acc += frac
        if h < acc:
            return name
    return SPLIT_FRACTIONS[-1][0]


@dataclass
class LabelRow:
    """One labelled pair. ``label`` is 1 (keep) or 0 (reject) in both formats; ``letter``
    is the graded label (``None`` for binary rows); ``kind`` is the binary row's kind or the
    letter; ``kinds`` the ``M`` row's kinds (or a binary row's one kind)."""

    line: int
    id: str
    x: str
    y: str
    label: int
    split: str
    kind: str = "unlabelled"
    group: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    letter: str | None = None
    kinds: tuple[str, ...] = ()


def _row(d: dict, n: int, p: Path, upstream: tuple[str, ...]) -> LabelRow:
    def bad(msg: str) -> DistillError:
        return DistillError(f"{p} line {n}: {msg}")

    missing = [k for k in ("id", "x", "y", "label", "split") if k not in d]
    if missing:
        raise bad(f"missing field(s) {missing}")
    for k in ("x", "y"):
        if not isinstance(d[k], str) or not d[k].strip():
            raise bad(f"{k!r} must be a non-empty string")
    if d["split"] not in SPLITS:
        raise bad(f"split must be one of {', '.join(SPLITS)}, got {d['split']!r}")
    lab, letter, kinds = d["label"], None, d.get("kinds", [])
    if isinstance(lab, str):
        if lab not in LETTERS:
            raise bad(f"label must be one of {', '.join(LETTERS)} (or 0/1), got {lab!r}")
        letter, label = lab, int(lab == "P")
    elif not isinstance(lab, bool) and lab in (0, 1):
        label = int(lab)
    else:
        raise bad(f"label must be one of {', '.join(LETTERS)} or 0/1, got {lab!r}")
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise bad("'kinds' must be a list of strings")
    scores = d.get("scores") or {}
    if not isinstance(scores, dict):
        raise bad("'scores' must be an object of name -> number")
    for s in upstream:
        if not isinstance(scores.get(s), (int, float)) or isinstance(scores.get(s), bool):
            raise bad(f"no numeric score {s!r} in 'scores' (asked for as an upstream feature)")
    kind = letter or str(d.get("kind", "unlabelled"))
    return LabelRow(line=n, id=str(d["id"]), x=d["x"], y=d["y"], label=label, split=d["split"], kind=kind,
                    group=str(d.get("group") or d["x"]), scores={k: float(v) for k, v in scores.items()},
                    letter=letter, kinds=tuple(kinds) if letter else ((kind,) if "kind" in d else ()))


def read_labels(path: str | Path, upstream: tuple[str, ...] = ()) -> list[LabelRow]:
    """Every row of a labels JSONL file (either format, mixed if need be); raises
    :class:`DistillError` naming the file and line of the first bad one."""
    p = Path(path)
    if not p.is_file():
        raise DistillError(f"labels file not found: {p}")
    rows: list[LabelRow] = []
    seen: dict[str, int] = {}
    for n, d in read_objects(p):
        row = _row(d, n, p, upstream)
        if row.id in seen:
            raise DistillError(f"{p} line {n}: duplicate id {row.id!r} (first on line {seen[row.id]})")
        seen[row.id] = n
        rows.append(row)
    if not rows:
        raise DistillError(f"{p}: no labelled rows (empty file)")
    return rows


def fit_rows(rows: list[LabelRow]) -> list[LabelRow]:
    """Rows a critic may learn from and pick its threshold on: train and dev (a threshold
    chosen by cross-validation needs no separate dev split). Test rows never are."""
    return [r for r in rows if r.split in ("train", "dev")]
