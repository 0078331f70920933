"""``distill filter``: critics per shard, then global dedup, then kept shards and a funnel.

Three resumable phases under ``<filter output>/``:

1. ``critics/``: each generated shard goes through the critic chain; kept records are
   written as a shard with a marker holding each critic's counts; rejects, with the
   critic and reason, go to ``rejects/critics-NNNNN.jsonl``.
2. ``dedup/<step>.json``: each dedup step (exact, semantic, diversity) decides once over
   all critic-kept records (global across shards) which records go and who survives
   them; the decision is written atomically and reused on a rerun.
3. ``kept/``: each shard minus the dedup drops (rejects to ``rejects/dedup-NNNNN.jsonl``).

``stats.json`` is the funnel: generated -> after each critic -> after each dedup step ->
kept, with counts, reasons and score distributions, and each critic's thresholds as the
critic states them (:meth:`Critic.thresholds`), which the dataset card and plots read.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from distill.config import RunConfig
from distill.critics.base import threshold_dicts
from distill.errors import ConfigError, DistillError, ensure_dir
from distill.record import Record
from distill.rundir import RunFolder
from distill.shards import ShardStore, atomic_write, atomic_write_json, merge_sqlite, remove_stale_temps
from distill.stage import run_pipeline


def detect_store(directory: Path) -> ShardStore:
    for fmt in ("jsonl", "parquet"):
        store = ShardStore(directory, fmt)
        if store.done_indices():
            return store
    raise DistillError(f"no finished shards in {directory}; run `distill generate` first (or set filter.input_dir)")


def _write_rejects(path: Path, rejects: list[tuple[Record, str, str]]) -> None:
    def w(f) -> None:
        for r, stage, reason in rejects:
            f.write(json.dumps({"stage": stage, "reason": reason, "record": r.to_dict()}, ensure_ascii=False).encode()
                    + b"\n")
    atomic_write(path, w)


def score_summary(values: list[float], bins: int = 20) -> dict[str, Any]:
    a = np.asarray(values, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    counts, edges = np.histogram(a, bins=bins, range=(lo, hi if hi > lo else lo + 1e-9))
    q = np.quantile(a, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {"count": int(a.size), "mean": round(float(a.mean()), 6), "min": lo, "max": hi,
            "quantiles": {k: round(float(v), 6) for k, v in zip(("p05", "p25", "p50", "p75", "p95"), q)},
            "histogram": {"edges": [round(float(e), 6) for e in edges], "counts": counts.tolist()}}


class FilterRun:
    def __init__(self, cfg: RunConfig, progress: bool = True) -> None:
        fc = cfg.filter
        self.cfg = cfg
        self.fc = fc
        self.in_dir = Path(fc.input_dir or cfg.output_dir)
        self.out = Path(fc.output_dir or self.in_dir / "filtered")
        self.progress = progress
        self.source = detect_store(self.in_dir / "shards")
        self.shards = self.source.done_indices()
        self.stage1 = ShardStore(self.out / "critics", "jsonl")
        self.kept = ShardStore(self.out / "kept", self.source.fmt)
        self._critics: list | None = None

    # -- phase 1 ---------------------------------------------------------------------
    def critics(self) -> list:
        if self._critics is None:
            from distill.critics.registry import build_critic

            self._critics = [build_critic(spec.type, spec.kwargs(), where=f"filter.critics[{n}]",
                                          teacher=self.cfg.teacher, encoder=self.fc.dedup.encoder)
                             for n, spec in enumerate(self.fc.critics)]
            names = [c.name for c in self._critics]
            if len(set(names)) != len(names):
                raise ConfigError(f"filter.critics: two critics share a name ({', '.join(names)}); "
                                  f"give one a different `name`")
        return self._critics

    def run_critics(self) -> None:
        todo = [i for i in self.shards if not self.stage1.is_done(i)]
        if not todo:
            return
        from distill.critics.embed import CREATE

        # dedup embeddings a killed cluster run stored per shard
        merge_sqlite(self.out / "embeddings.sqlite", self.out / "embeddings", "emb", CREATE)
        if self.cfg.executor.type == "ray":  # the same critic_shard, on a pool of cluster workers
            from distill.executor import ray_critics

            ray_critics(self, todo)
            return
        critics = self.critics()
        encoder = self.dedup_encoder(self.out / "embeddings.sqlite")
        self.claim_output()
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), unit="shard", desc="critics", dynamic_ncols=True)
        try:
            for i in todo:
                self.critic_shard(i, critics, encoder)
                if bar is not None:
                    bar.update(1)
        finally:
            if encoder is not None:
                encoder.close()
            if bar is not None:
                bar.close()

    def dedup_encoder(self, cache_path: Path | None):
        """The encoder the dedup steps use, to embed each shard's survivors as it is judged
        (None when no dedup step embeds)."""
        dc = self.fc.dedup
        if dc.semantic is None and dc.diversity is None:
            return None
        from distill.critics.embed import Encoder

        return Encoder(dc.encoder, cache_path=cache_path)

    def dedup_texts(self, records: list[Record]) -> list[str]:
        """The texts the dedup steps will embed for ``records``."""
        from distill.critics.dedup import field_text

        dc = self.fc.dedup
        texts: list[str] = []
        if dc.semantic is not None:
            texts += [field_text(r, dc.semantic.field) for r in records]
        if dc.diversity is not None:
            texts += [t for r in records for t in (r.input, r.output)]
        return texts

    def critic_shard(self, i: int, critics: list, encoder=None) -> None:
        """Judge generated shard ``i``: its survivors' dedup embeddings go into ``encoder``'s
        cache, its rejects to rejects/, then the survivors and the critics' counts as shard ``i``
        of critics/ (written last: the proof the shard is done). Local and cluster runs both
        call this, so their outputs are the same."""
        records = self.source.read(i)
        for c in critics:
            c.counts.clear()
        kept = list(run_pipeline(critics, records))
        rejects = [(r, c.name, reason) for c in critics for r, reason in c.drain_rejects()]
        if encoder is not None:
            encoder.precompute(self.dedup_texts(kept))
        if self.fc.write_rejects:
            _write_rejects(self.out / "rejects" / f"critics-{i:05d}.jsonl", rejects)
        self.stage1.write(i, kept, {"input": len(records), "critics": [
            {**c.stats(), "thresholds": threshold_dicts(c)} for c in critics]})

    # -- phase 2 ---------------------------------------------------------------------
    def dedup_steps(self) -> list[tuple[str, Any]]:
        from distill.critics import dedup as d

        dc = self.fc.dedup
        steps: list[tuple[str, Any]] = []
        if dc.exact is not None:
            steps.append(("exact", d.ExactDedup(fields=dc.exact.fields, rank_by=dc.rank_by)))
        if dc.semantic is not None or dc.diversity is not None:
            from distill.critics.embed import Encoder

            enc = Encoder(dc.encoder, cache_path=self.out / "embeddings.sqlite")
            if dc.semantic is not None:
                steps.append(("semantic", d.SemanticDedup(encoder=enc, field=dc.semantic.field,
                                                           threshold=dc.semantic.threshold,
                                                           method=dc.semantic.method, rank_by=dc.rank_by)))
            if dc.diversity is not None:
                steps.append(("diversity", d.DiversityFilter(encoder=enc, threshold=dc.diversity.threshold,
                                                             score=dc.diversity.score or dc.rank_by)))
        return steps

    def run_dedup(self) -> list[tuple[str, dict[str, str]]]:
        """Each step's decision: {dropped id: survivor id}, computed once and stored."""
        decisions: list[tuple[str, dict[str, str]]] = []
        names = [n for n, on in (("exact", self.fc.dedup.exact), ("semantic", self.fc.dedup.semantic),
                                 ("diversity", self.fc.dedup.diversity)) if on is not None]
        if all((self.out / "dedup" / f"{n}.json").is_file() for n in names):
            return [(n, json.loads((self.out / "dedup" / f"{n}.json").read_text())["dropped"]) for n in names]
        dropped: set[str] = set()
        for name, step in self.dedup_steps():
            path = self.out / "dedup" / f"{name}.json"
            if path.is_file():
                decision = json.loads(path.read_text())["dropped"]
            else:
                # streamed: the dedup step keeps only ids, scores and (cached) embeddings
                decision = step.decide(r for r in self.stage1.iter_records() if r.id not in dropped)
                atomic_write_json(path, {"step": name, "info": step.info, "dropped": decision})
            decisions.append((name, decision))
            dropped |= decision.keys()
        return decisions

    # -- phase 3 ---------------------------------------------------------------------
    def write_kept(self, decisions: list[tuple[str, dict[str, str]]]) -> None:
        for i in self.shards:
            if self.kept.is_done(i):
                continue
            kept, rejects = [], []
            for r in self.stage1.read(i):
                for name, decision in decisions:
                    if r.id in decision:
                        r.metadata["dup_of"] = decision[r.id]
                        rejects.append((r, f"dedup:{name}", f"{name}_dup"))
                        break
                else:
                    kept.append(r)
            if self.fc.write_rejects:
                _write_rejects(self.out / "rejects" / f"dedup-{i:05d}.jsonl", rejects)
            self.kept.write(i, kept, {"input": len(kept) + len(rejects),
                                      "dedup": dict(Counter(stage for _, stage, _ in rejects))})

    # -- stats -----------------------------------------------------------------------
    def stats(self, decisions: list[tuple[str, dict[str, str]]]) -> dict[str, Any]:
        generated = sum(self.source.marker(i)["records"] for i in self.shards)
        funnel = [{"stage": "generated", "count": generated}]
        per_critic: dict[str, Counter] = {}
        limits: dict[str, list[dict[str, Any]]] = {}
        order: list[str] = []
        for i in self.shards:
            for c in self.stage1.marker(i)["critics"]:
                if c["name"] not in per_critic:
                    per_critic[c["name"]] = Counter()
                    order.append(c["name"])
                if "thresholds" in c:  # markers written before critics stated thresholds have none
                    limits.setdefault(c["name"], c["thresholds"])
                per_critic[c["name"]].update({"total": c["total"], "kept": c["kept"],
                                              **{f"dropped_{k}": v for k, v in c["dropped"].items()}})
        count = generated
        for name in order:
            cnt = per_critic[name]
            count = cnt["kept"]
            funnel.append({"stage": f"critic:{name}", "count": count,
                           "dropped": {k[8:]: v for k, v in sorted(cnt.items()) if k.startswith("dropped_")}})
        for name, decision in decisions:
            count -= len(decision)
            funnel.append({"stage": f"dedup:{name}", "count": count, "dropped": {f"{name}_dup": len(decision)}})
        kept = sum(self.kept.marker(i)["records"] for i in self.shards)
        funnel.append({"stage": "kept", "count": kept})
        values: dict[str, list[float]] = {}
        for r in self.stage1.iter_records():
            for k, v in r.scores.items():
                values.setdefault(k, []).append(float(v))
        for i in self.shards:
            p = self.out / "rejects" / f"critics-{i:05d}.jsonl"
            if p.is_file():
                for line in p.read_text(encoding="utf-8").splitlines():
                    for k, v in json.loads(line)["record"]["scores"].items():
                        values.setdefault(k, []).append(float(v))
        gen_stats = self.in_dir / "generate_stats.json"
        return {
            "input_dir": str(self.in_dir), "output_dir": str(self.out),
            "generate_counts": json.loads(gen_stats.read_text()).get("counts", {}) if gen_stats.is_file() else {},
            "funnel": funnel, "critics": [{"name": n, **{k: v for k, v in per_critic[n].items()},
                                           "thresholds": limits.get(n, [])} for n in order],
            "critic_config": [s.model_dump() for s in self.fc.critics],
            "dedup_config": self.fc.dedup.model_dump(),
            "scores": {k: score_summary(v) for k, v in sorted(values.items()) if v},
        }

    def fingerprint(self) -> dict[str, Any]:
        return {"filter": self.fc.model_dump(mode="json", exclude={"write_rejects", "allow_partial"}),
                "shards": self.shards}

    def check_input_finished(self) -> None:
        """Refuse (unless filter.allow_partial) a generate run that stopped before its end: its
        corpus would silently lack the shards it never wrote."""
        path = self.in_dir / "manifest.json"
        try:
            m = json.loads(path.read_text()) if path.is_file() else {}
        except json.JSONDecodeError:
            m = {}
        status, total = m.get("status"), m.get("shards_total")
        done = len(self.shards)
        if status in (None, "complete") and (total is None or done >= total):
            return
        what = f"{self.in_dir} is an unfinished `distill generate` run ({status}, {done}/{total} shards done)"
        if not self.fc.allow_partial:
            raise ConfigError(f"{what}: rerun `distill generate` to finish it, or pass --allow-partial "
                              f"(filter.allow_partial=true) to filter the finished shards only")
        print(f"distill: warning: {what}: filtering the {done} finished shard(s) only (filter.allow_partial)",
              file=sys.stderr)

    def check_resume(self) -> None:
        """A filter output folder belongs to one filter config and one set of input shards."""
        RunFolder(self.out, self.fingerprint(), holds="a filter run with a different filter config or input shards",
                  elsewhere="use another filter.output_dir").check()

    def claim_output(self) -> None:
        """Mark the output folder (manifest.json) as this config's, once the critics have loaded
        (so a config that fails to load, e.g. a wrong model path, leaves nothing to refuse the fixed one)."""
        folder = RunFolder(self.out, self.fingerprint())
        if folder.stored_fingerprint() is None:  # claimed once: a resumed run keeps the first record
            folder.claim(input_dir=str(self.in_dir))

    def close(self) -> None:
        for c in self._critics or []:
            if hasattr(c, "close"):
                c.close()
        self._critics = None

    def run(self) -> dict[str, Any]:
        self.check_input_finished()
        ensure_dir(self.out, "filter.output_dir")  # before any critic loads a model
        self.check_resume()
        remove_stale_temps(*(self.out / d for d in ("", "critics", "dedup", "kept", "rejects")))
        try:
            self.run_critics()
        finally:
            self.close()  # an LM judge holds a model; free it before the dedup's encoder loads
        decisions = self.run_dedup()
        self.write_kept(decisions)
        stats = self.stats(decisions)
        atomic_write_json(self.out / "stats.json", stats)
        return stats


def run_filter(cfg: RunConfig, progress: bool = True) -> dict[str, Any]:
    return FilterRun(cfg, progress).run()
