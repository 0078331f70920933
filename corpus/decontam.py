"""Decontamination: drop corpus records whose input or output is an evaluation item.

An evaluation set is a ``.txt`` file (one item per line), ``.jsonl`` (the configured
fields of each object, or the line itself when it is a JSON string), ``.parquet`` (the
configured columns), or a ``datasets`` ``save_to_disk`` folder (every split). A record is
dropped as ``exact`` when its normalised input or output equals a normalised eval item,
else as ``near`` when the cosine of either to any eval item reaches the threshold. The
encoder is loaded only when a threshold is set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from distill.critics.dedup import normalize

from distill.config import DecontamConfig
from distill.errors import DistillError
from distill.record import Record


def _pick(columns: list[str], fields: list[str], where: str) -> list[str]:
    cols = [f for f in fields if f in columns]
    if not cols:
        raise DistillError(f"eval set {where} has none of the columns {fields} (it has {columns}); "
                           f"set corpus.decontaminate.fields")
    return cols


def load_eval_items(path: str, fields: list[str]) -> list[str]:
    if path.startswith("builtin:"):  # a shipped pool, e.g. builtin:lee-heldout (distill.data.pools)
        from distill.data.pools import load_pool

        return load_pool(path)
    p = Path(path).expanduser()
    if not p.exists():
        raise DistillError(f"eval set not found: {p} (corpus.decontaminate.eval_sets takes .txt, .jsonl, .parquet "
                           f"files or a `datasets` save_to_disk folder)")
    try:
        if p.is_dir():
            from datasets import Dataset, load_from_disk

            obj = load_from_disk(str(p))
            parts = [obj] if isinstance(obj, Dataset) else list(obj.values())
            return [str(v) for ds in parts for c in _pick(ds.column_names, fields, str(p)) for v in ds[c]
                    if v is not None]
        if p.suffix == ".txt":
            return [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
        if p.suffix == ".jsonl":
            out: list[str] = []
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                obj = json.loads(line)
                if isinstance(obj, str):
                    out.append(obj)
                elif isinstance(obj, dict):
                    out += [str(obj[c]) for c in _pick(list(obj), fields, f"{p} line {n}") if obj[c] is not None]
                else:
                    raise DistillError(f"{p} line {n}: expected a JSON object or string, got {type(obj).__name__}")
            return out
        if p.suffix == ".parquet":
            import pyarrow.parquet as pq

            t = pq.read_table(p)
            return [str(v) for c in _pick(t.column_names, fields, str(p)) for v in t.column(c).to_pylist()
                    if v is not None]
    except DistillError:
        raise
    except Exception as e:  # a corrupt file: name it and the reason
        raise DistillError(f"could not read eval set {p}: {type(e).__name__}: {e}") from e
    raise DistillError(f"eval set {p}: unsupported type; use .txt, .jsonl, .parquet or a `datasets` folder")


class Decontaminator:
    """``split(records) -> (kept, dropped)``; each dropped entry says why and what it matched."""

    def __init__(self, cfg: DecontamConfig, encoder: str | None = None, cache_path: Path | None = None,
                 block: int = 4096) -> None:
        self.cfg = cfg
        self.items: list[str] = []
        for path in cfg.eval_sets:
            self.items += load_eval_items(path, cfg.fields)
        self.encoder_name = cfg.encoder or encoder
        self.cache_path = cache_path
        self.block = block

    def split(self, records: list[Record]) -> tuple[list[Record], list[dict[str, Any]]]:
        if not self.items or not records:
            return records, []
        hits: dict[str, dict[str, Any]] = {}
        if self.cfg.exact:
            norm = {}
            for t in self.items:
                norm.setdefault(normalize(t), t)
            for r in records:
                for f in ("input", "output"):
                    m = norm.get(normalize(getattr(r, f)))
                    if m is not None:
                        hits[r.id] = {"reason": "exact", "field": f, "eval_item": m}
                        break
        if self.cfg.threshold is not None:
            hits.update(self._near([r for r in records if r.id not in hits]))
        kept = [r for r in records if r.id not in hits]
        dropped = [{"id": r.id, **hits[r.id], "input": r.input, "output": r.output} for r in records if r.id in hits]
        return kept, dropped

    def _near(self, records: list[Record]) -> dict[str, dict[str, Any]]:
        import torch
        from distill.critics.embed import Encoder

        enc = Encoder(self.encoder_name, cache_path=self.cache_path)
        try:
            texts = list(dict.fromkeys([r.input for r in records] + [r.output for r in records]))
            ev = torch.from_numpy(enc.encode(list(dict.fromkeys(self.items))))
            uniq_items = list(dict.fromkeys(self.items))
            vec = enc.encode(texts)
        finally:
            enc.close()
        best = np.empty(len(texts), dtype=np.float32)
        arg = np.empty(len(texts), dtype=np.int64)
        for i in range(0, len(texts), self.block):  # blocks keep the (texts x items) matrix small
            sims = torch.from_numpy(vec[i : i + self.block]) @ ev.T
            m = sims.max(dim=1)
            best[i : i + len(m.values)], arg[i : i + len(m.values)] = m.values.numpy(), m.indices.numpy()
        at = {t: k for k, t in enumerate(texts)}
        out = {}
        for r in records:
            k = max((at[r.input], at[r.output]), key=lambda k: best[k])
            if best[k] >= self.cfg.threshold:
                out[r.id] = {"reason": "near", "field": "input" if texts[k] == r.input else "output",
                             "eval_item": uniq_items[arg[k]], "cos": round(float(best[k]), 4)}
        return out
