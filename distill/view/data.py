"""What ``distill view`` reads from a run folder, read-only and tolerant of a run in progress.

A run folder is a ``distill generate`` output (``shards/``, ``manifest.json``,
``cache.sqlite``, then ``filtered/`` and ``corpus/``) or a ``distill run`` folder whose
``round-N/`` subfolders are each one. Every reader here copes with what a live or killed run
leaves: a shard without its marker yet, a half-written last line, a locked cache. Such a line
comes back as an ``error`` entry naming the file and line, never an exception.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from distill.critics.labels import split_of
from distill.errors import DistillError


class RunFolder:
    """One run folder: its rounds (``""`` for a plain generate folder) and readers per round."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise DistillError(f"not a folder: {root}")
        rounds = sorted((p.name for p in self.root.glob("round-*") if p.is_dir() and p.name[6:].isdigit()),
                        key=lambda n: int(n[6:]))
        self.rounds = rounds or [""]
        if not rounds and not any((self.root / n).exists() for n in ("shards", "manifest.json", "filtered")):
            raise DistillError(f"{root} is not a run folder: no shards/, manifest.json or round-N/ in it "
                               f"(point distill view at a `distill generate` or `distill run` output folder)")

    def round_dir(self, name: str | None) -> Path:
        name = self.rounds[-1] if name in (None, "") else name
        if name not in self.rounds:
            raise KeyError(f"no round {name!r} (have: {', '.join(r or '(run)' for r in self.rounds)})")
        return self.root / name if name else self.root

    def summary(self) -> dict[str, Any]:
        out = {"root": str(self.root), "rounds": self.rounds, "per_round": {}}
        for r in self.rounds:
            d = self.root / r if r else self.root
            m = read_json(d / "manifest.json") or {}
            out["per_round"][r] = {
                "status": m.get("status"), "teacher": m.get("teacher_model_id"),
                "task": (m.get("resolved_task") or {}).get("name"),
                "shards_total": m.get("shards_total"), "shards_done": count_markers(d / "shards"),
                "filtered": (d / "filtered" / "stats.json").is_file(),
                "corpus": (d / "corpus" / "corpus_stats.json").is_file(),
            }
        out["sheets"] = [str(p.relative_to(self.root)) for p in find_sheets(self.root)]
        return out


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def count_markers(shards: Path) -> int:
    return sum(1 for _ in shards.glob("shard-*.done.json")) if shards.is_dir() else 0


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line as an object; a line that is not one becomes ``{"error": ...}`` naming it."""
    out: list[dict[str, Any]] = []
    try:
        data = path.read_bytes()
    except OSError as e:
        return [{"error": f"{path.name}: cannot read ({e.strerror})"}]
    for n, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            d = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            d = None
        out.append(d if isinstance(d, dict) else {"error": f"{path.name} line {n}: not a JSON object (half-written?)"})
    return out


def read_shard(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        except Exception as e:  # noqa: BLE001 - shown on the page, whatever the reader says
            return [{"error": f"{path.name}: unreadable Parquet ({type(e).__name__})"}]
    return read_jsonl(path)


def shard_files(shards: Path) -> list[Path]:
    return sorted(p for p in shards.glob("shard-*") if p.suffix in (".jsonl", ".parquet")) if shards.is_dir() else []


# ---- live ------------------------------------------------------------------------------

def cache_totals(path: Path, newest: int = 5) -> dict[str, Any]:
    """Samples, tokens and the newest samples in a run's request cache (read-only; a cache
    being written by the run is read as of its last commit)."""
    if not path.is_file():
        return {"samples": 0, "prompt_tokens": 0, "completion_tokens": 0, "newest": []}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            n, p, c = db.execute("SELECT COUNT(*), COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0) "
                                 "FROM completions").fetchone()
            rows = db.execute("SELECT text, created FROM completions ORDER BY created DESC, rowid DESC LIMIT ?",
                              (newest,)).fetchall()
        finally:
            db.close()
    except sqlite3.Error as e:
        return {"samples": 0, "prompt_tokens": 0, "completion_tokens": 0, "newest": [], "cache_error": f"cache: {e}"}
    return {"samples": int(n), "prompt_tokens": int(p), "completion_tokens": int(c),
            "newest": [{"text": t, "created": ts} for t, ts in rows]}


def live_state(d: Path) -> dict[str, Any]:
    """Where a round stands now: shards, cache, budget, funnel."""
    m = read_json(d / "manifest.json") or {}
    budget = ((m.get("config") or {}).get("budget")) or {}
    cache = cache_totals(d / "cache.sqlite")
    for part in sorted((d / "cache").glob("shard-*.sqlite")):  # a cluster run's replicas write one file per shard
        more = cache_totals(part)
        cache.update({k: cache[k] + more[k] for k in ("samples", "prompt_tokens", "completion_tokens")},
                     newest=sorted(cache["newest"] + more["newest"], key=lambda r: -r["created"])[:5])
    pp, pc = budget.get("price_per_million_prompt_tokens") or 0, budget.get("price_per_million_completion_tokens") or 0
    cost = (cache["prompt_tokens"] * pp + cache["completion_tokens"] * pc) / 1e6
    return {"status": m.get("status"), "error": m.get("error"), "shards_total": m.get("shards_total"),
            "shards_done": count_markers(d / "shards"), **cache, "cost": round(cost, 6),
            "budget": {"max_completion_tokens": budget.get("max_completion_tokens"), "max_cost": budget.get("max_cost")},
            "funnel": funnel(d)}


def funnel(d: Path) -> list[dict[str, Any]]:
    """The filter's funnel: from stats.json once it is written, else from the critic markers so far."""
    stats = read_json(d / "filtered" / "stats.json")
    if isinstance(stats, dict) and isinstance(stats.get("funnel"), list):
        return stats["funnel"]
    per: dict[str, Counter] = {}
    order: list[str] = []
    total = 0
    for mk in sorted((d / "filtered" / "critics").glob("shard-*.done.json")):
        info = read_json(mk) or {}
        for c in info.get("critics", []):
            if c.get("name") not in per:
                per[c["name"]] = Counter()
                order.append(c["name"])
            per[c["name"]].update({"total": c.get("total", 0), "kept": c.get("kept", 0)})
            per[c["name"]].update({f"d:{k}": v for k, v in (c.get("dropped") or {}).items()})
        total += (info.get("critics") or [{}])[0].get("total", 0)
    if not order:
        return []
    rows = [{"stage": "generated", "count": total}]
    for name in order:
        cnt = per[name]
        rows.append({"stage": f"critic:{name}", "count": cnt["kept"],
                     "dropped": {k[2:]: v for k, v in cnt.items() if k.startswith("d:")}})
    return rows


# ---- browse ----------------------------------------------------------------------------

def records(d: Path) -> list[dict[str, Any]]:
    """Every record of a round with its verdict: ``kept`` (in filtered/kept), the stage and
    reason that dropped it (filtered/rejects), or ``unfiltered`` (no filter output yet)."""
    out: list[dict[str, Any]] = []
    kept_dir, rej_dir = d / "filtered" / "kept", d / "filtered" / "rejects"
    if kept_dir.is_dir() or rej_dir.is_dir():
        for f in shard_files(kept_dir):
            out += [_entry(r, "kept", "", "", f) for r in read_shard(f)]
        for f in sorted(rej_dir.glob("*.jsonl")) if rej_dir.is_dir() else []:
            for row in read_jsonl(f):
                if "error" in row:
                    out.append({"error": row["error"]})
                else:
                    out.append(_entry(row.get("record") or {}, "rejected", str(row.get("stage", "")),
                                      str(row.get("reason", "")), f))
    else:
        for f in shard_files(d / "shards"):
            out += [_entry(r, "unfiltered", "", "", f) for r in read_shard(f)]
    return out


def files_signature(d: Path) -> tuple:
    """(name, size, mtime) of every file :func:`records` reads: equal signatures, equal records."""
    out = []
    for sub in ("filtered/kept", "filtered/rejects", "shards"):
        folder = d / sub
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                try:
                    st = p.stat()
                except OSError:
                    continue
                out.append((sub, p.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _entry(r: dict[str, Any], verdict: str, stage: str, reason: str, f: Path) -> dict[str, Any]:
    if "error" in r:
        return {"error": r["error"]}
    return {"id": str(r.get("id", "")), "input": str(r.get("input", "")), "output": str(r.get("output", "")),
            "scores": r.get("scores") or {}, "verdict": verdict, "stage": stage, "reason": reason,
            "teacher": r.get("teacher", ""), "file": f.name}


def query(rows: list[dict[str, Any]], verdict: str = "", stage: str = "", reason: str = "", q: str = "",
          score: str = "", lo: float | None = None, hi: float | None = None, offset: int = 0,
          limit: int = 50) -> dict[str, Any]:
    """One page of ``rows`` matching every filter given, with the counts to filter by."""
    errors = [r["error"] for r in rows if "error" in r]
    good = [r for r in rows if "error" not in r]
    facets = {"verdict": Counter(r["verdict"] for r in good), "stage": Counter(r["stage"] for r in good if r["stage"]),
              "reason": Counter(r["reason"].split(":")[0] for r in good if r["reason"]),
              "scores": sorted({k for r in good for k in r["scores"]})}
    ql = q.lower().strip()

    def match(r: dict[str, Any]) -> bool:
        if verdict and r["verdict"] != verdict:
            return False
        if stage and r["stage"] != stage:
            return False
        if reason and reason not in r["reason"]:
            return False
        if ql and ql not in r["input"].lower() and ql not in r["output"].lower():
            return False
        if score:
            v = r["scores"].get(score)
            if not isinstance(v, (int, float)) or (lo is not None and v < lo) or (hi is not None and v > hi):
                return False
        return True

    hits = [r for r in good if match(r)]
    return {"total": len(hits), "offset": offset, "rows": hits[offset : offset + limit], "errors": errors[:20],
            "error_count": len(errors), "facets": {k: dict(v) if isinstance(v, Counter) else v for k, v in facets.items()}}


def corpus_info(d: Path, root: Path) -> dict[str, Any] | None:
    c = d / "corpus"
    stats = read_json(c / "corpus_stats.json")
    if not isinstance(stats, dict):
        return None
    plots = [str(p.relative_to(root)) for p in sorted((c / "plots").glob("*.png"))] if (c / "plots").is_dir() else []
    return {"splits": stats.get("splits", {}), "funnel": stats.get("funnel", []), "plots": plots,
            "card": str((c / "README.md").relative_to(root)) if (c / "README.md").is_file() else None}


# ---- label -----------------------------------------------------------------------------

def label_pool(rows: list[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """The pairs to label, stratified by the critics' verdict: groups (kept, and each
    stage:reason that dropped records) take turns, each in a seeded random order, so the
    first N labels cover what the critics keep and drop alike."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if "error" in r or not r["input"].strip() or not r["output"].strip():
            continue
        key = r["verdict"] if r["verdict"] != "rejected" else f"{r['stage']}:{r['reason'].split(':')[0]}"
        groups.setdefault(key, []).append(r)
    rng = random.Random(seed)
    order = []
    for key in sorted(groups):
        g = sorted(groups[key], key=lambda r: r["id"])
        rng.shuffle(g)
        order.append(g)
    pool, i = [], 0
    while any(order):
        g = order[i % len(order)]
        if g:
            pool.append(g.pop(0))
        i += 1
    return pool


def label_row(item: dict[str, Any], round_name: str, label: str, kinds: list[str], note: str) -> dict[str, Any]:
    """The labels-file row ``distill critic train`` reads (graded format)."""
    return {"id": f"{round_name}/{item['id']}" if round_name else item["id"], "x": item["input"], "y": item["output"],
            "label": label, "kinds": kinds if label == "M" else [], "note": note, "split": split_of(item["input"]),
            "group": hashlib.sha1(item["input"].strip().lower().encode()).hexdigest()[:10],
            "scores": item["scores"], "verdict": item["verdict"] if item["verdict"] != "rejected"
            else f"{item['stage']}:{item['reason']}", "labeller": "distill view"}


# ---- judge -----------------------------------------------------------------------------

def find_sheets(root: Path) -> list[Path]:
    """Blind sheets of ``distill eval --sheet`` under the run folder."""
    return sorted(p for p in root.glob("**/sheet/sheet.jsonl") if "/." not in str(p))
