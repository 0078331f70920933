"""``distill corpus``: a filter run's kept records -> a Hugging Face dataset with a card.

Reads ``<filter output>/kept`` and ``stats.json``; writes ``<corpus output>/``:
``dataset/`` (save_to_disk), ``data/*.parquet`` (Hub layout), ``README.md`` (the card),
``plots/*.png``, ``config.yaml``, ``decontaminated.jsonl`` (when decontaminating) and
``corpus_stats.json`` last, which proves the folder finished. Everything is built in a
temporary folder beside it and moved in, so a crash leaves the previous corpus (or
nothing) and never half of one. A rerun whose fingerprint (corpus config, seed, eval
sets, the filter's stats.json) matches the stored one does nothing but the upload.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from distill.corpus import dataset as D

from distill.config import RunConfig, dump_config
from distill.errors import DistillError, ensure_dir, os_error_message
from distill.record import Record
from distill.rundir import RunFolder
from distill.shards import ShardStore, atomic_write, remove_stale_temps

FORMAT = 1  # bump when the layout changes, so old corpora are rebuilt
MOVED = ("dataset", "data", "plots", "README.md", "config.yaml", "decontaminated.jsonl")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _eval_signature(path: str) -> str:
    if path.startswith("builtin:"):
        from distill.data.pools import load_pool

        return _sha("\n".join(load_pool(path)).encode())
    p = Path(path).expanduser()
    if p.is_file():
        return _sha(p.read_bytes())
    if p.is_dir():
        return _sha(json.dumps(sorted((str(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns)
                                      for f in p.rglob("*") if f.is_file())).encode())
    return "missing"


def _clear_dead_builds(out: Path) -> None:
    for d in out.glob(".build-*"):
        pid = d.name.rsplit("-", 1)[1]
        try:
            os.kill(int(pid), 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass


def command_line() -> str:
    prog = Path(sys.argv[0]).name if sys.argv else ""
    if prog in ("distill", "cli.py", "__main__.py"):
        return shlex.join(["distill", *sys.argv[1:]])
    return "distill corpus config.yaml"


class CorpusBuild:
    def __init__(self, cfg: RunConfig, progress: bool = True) -> None:
        self.cfg, self.cc, self.progress = cfg, cfg.corpus, progress
        self.in_dir = Path(self.cc.input_dir or Path(cfg.output_dir) / "filtered")
        self.out = Path(self.cc.output_dir or Path(cfg.output_dir) / "corpus")
        path = self.in_dir / "stats.json"
        if not path.is_file():
            raise DistillError(f"no filter output in {self.in_dir} (no stats.json); run `distill filter` first, "
                               f"or set corpus.input_dir to a `distill filter` output folder")
        self.stats_bytes = path.read_bytes()
        self.filter_stats = json.loads(self.stats_bytes)

    def fingerprint(self) -> dict[str, Any]:
        dc = self.cc.decontaminate
        return {"format": FORMAT, "seed": self.cfg.seed, "filter_stats_sha256": _sha(self.stats_bytes),
                "corpus": self.cc.model_dump(mode="json", exclude={"hub", "input_dir", "output_dir"}),
                "eval_sets": {p: _eval_signature(p) for p in (dc.eval_sets if dc else [])}}

    def folder(self) -> RunFolder:
        """corpus_stats.json, written last, holds the fingerprint and proves the folder finished."""
        return RunFolder(self.out, self.fingerprint(), record="corpus_stats.json", needs=("dataset",))

    def stored(self) -> dict[str, Any] | None:
        """The stored stats when the folder holds this very corpus (another one is rebuilt, not refused)."""
        return self.folder().finished()

    # -- inputs ------------------------------------------------------------------------
    def gen_dir(self) -> Path | None:
        d = self.filter_stats.get("input_dir")
        if not d and (self.in_dir / "manifest.json").is_file():
            d = json.loads((self.in_dir / "manifest.json").read_text()).get("input_dir")
        return Path(d) if d else None

    def _gen_json(self, name: str) -> dict[str, Any]:
        g = self.gen_dir()
        return json.loads((g / name).read_text()) if g and (g / name).is_file() else {}

    def kept_records(self) -> list[Record]:
        for fmt in ("jsonl", "parquet"):
            store = ShardStore(self.in_dir / "kept", fmt)
            if store.done_indices():
                return list(store.iter_records())
        raise DistillError(f"no kept shards in {self.in_dir / 'kept'}; the filter run did not finish: rerun "
                           f"`distill filter` with the same config to complete it")

    # -- the build -----------------------------------------------------------------------
    def build(self) -> dict[str, Any]:
        ensure_dir(self.out, "corpus.output_dir")  # before the encoder or the dataset is built
        records = self.kept_records()
        if not records:
            raise DistillError(f"no kept records in {self.in_dir}: every generated record was dropped "
                               f"(see the funnel in {self.in_dir / 'stats.json'}); loosen the critics or generate more")
        funnel = [dict(r) for r in self.filter_stats["funnel"]]
        decon, dropped = None, []
        dc = self.cc.decontaminate
        if dc is not None and dc.eval_sets:
            from distill.corpus.decontam import Decontaminator

            dz = Decontaminator(dc, encoder=self.cfg.filter.dedup.encoder, cache_path=self.out / "embeddings.sqlite")
            records, dropped = dz.split(records)
            counts = {"exact": sum(d["reason"] == "exact" for d in dropped), "near": sum(d["reason"] == "near" for d in dropped)}
            funnel.append({"stage": "decontaminate", "count": len(records), "dropped": counts})
            decon = {"eval_sets": list(dc.eval_sets), "eval_items": len(dz.items), "threshold": dc.threshold,
                     "exact": dc.exact, "encoder": dz.encoder_name if dc.threshold is not None else None,
                     "dropped": counts}
            if not records:
                raise DistillError(f"decontamination dropped every record ({counts}); check "
                                   f"corpus.decontaminate.eval_sets and its threshold")
        score_keys = sorted({k for r in records for k in r.scores})
        groups = [D.group_of(r) for r in records]
        assignment = D.assign_splits(groups, self.cc.splits, self.cfg.seed)
        split_names = list(self.cc.splits)
        dd = D.build_dataset_dict(records, split_names, assignment, score_keys)
        splits = {s: {"rows": len(dd[s]), "groups": len({g for g, n in assignment.items() if n == s})}
                  for s in split_names}
        funnel.append({"stage": "corpus", "count": sum(v["rows"] for v in splits.values()),
                       "splits": {s: v["rows"] for s, v in splits.items()}})

        _clear_dead_builds(self.out)
        remove_stale_temps(self.out)  # a corpus_stats.json write cut off by a kill
        tmp = self.out / f".build-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            try:
                stats = self._write(tmp, dd, records, dropped, funnel, splits, decon, score_keys)
            except OSError as e:  # a write() that fails (PIL saving a plot on a full disk) names no file
                raise DistillError(os_error_message(e, self.out)) from None
            self._move_in(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.folder().finish(stats)
        return stats

    def _write(self, tmp: Path, dd, records, dropped, funnel, splits, decon, score_keys) -> dict[str, Any]:
        import datasets
        from distill.corpus import card, plots

        tmp.mkdir(parents=True)
        quiet = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()  # one bar per split and file is noise, not progress
        try:
            # subtle: datasets writes no Arrow file for an empty split unless told one shard, then cannot load it
            dd.save_to_disk(str(tmp / "dataset"), num_shards={s: 1 for s, ds in dd.items() if not len(ds)})
            parquet = D.write_parquet(dd, tmp, self.cc.rows_per_parquet_shard)
        finally:
            if quiet:
                datasets.enable_progress_bars()
        config_yaml = dump_config(self.cfg)
        (tmp / "config.yaml").write_text(config_yaml)
        if dropped:
            (tmp / "decontaminated.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in dropped))
        drawn = []
        if self.cc.plots:
            (tmp / "plots").mkdir()
            plots.funnel(funnel, tmp / "plots" / "funnel.png")
            plots.lengths(dd, tmp / "plots" / "lengths.png")
            drawn = ["funnel", "lengths"]
            if plots.scores(self.filter_stats, tmp / "plots" / "scores.png"):
                drawn.append("scores")
        manifest = self._gen_json("manifest.json")
        teacher = manifest.get("teacher_model_id") or (records[0].teacher if records else "") or "teacher"
        task = records[0].task if records else "distilled"
        pretty = self.cc.pretty_name or f"{task.capitalize()} pairs distilled from {Path(teacher).name.split('.')[0]}"
        feats = card.feature_yaml(D.features(score_keys))
        stats = {"fingerprint": self.fingerprint(), "input_dir": str(self.in_dir), "output_dir": str(self.out),
                 "generate_dir": str(self.gen_dir() or ""), "funnel": funnel, "splits": splits,
                 "decontamination": decon, "score_keys": score_keys, "features": feats, "parquet": parquet,
                 "plots": drawn, "command": command_line(), "rows": sum(v["rows"] for v in splits.values())}
        info = {"cfg": self.cfg, "filter_stats": self.filter_stats, "manifest": manifest, "stats": stats,
                "generate_stats": self._gen_json("generate_stats.json"), "features": feats, "plots": drawn,
                "pretty_name": pretty, "command": stats["command"], "config_yaml": config_yaml}
        head = card.header(self.cc, splits, feats, pretty)
        old = self.out / "README.md"
        text = card.merge_card(old.read_text(encoding="utf-8") if old.is_file() else None, head, card.body(info, dd))
        atomic_write(tmp / "README.md", lambda f: f.write(text.encode()))
        return stats

    def _move_in(self, tmp: Path) -> None:
        """Swap the new parts in; corpus_stats.json goes first, so an interrupted swap is rebuilt."""
        (self.out / "corpus_stats.json").unlink(missing_ok=True)
        old = tmp / ".old"
        old.mkdir()
        for name in MOVED:
            if (self.out / name).exists():
                os.replace(self.out / name, old / name)
            if (tmp / name).exists():
                os.replace(tmp / name, self.out / name)


def run_corpus(cfg: RunConfig, progress: bool = True, push_to_hub: str | None = None) -> dict[str, Any]:
    """Build (or reuse) the corpus, then upload it when a repo is given here or in corpus.hub.repo."""
    b = CorpusBuild(cfg, progress)
    stats = b.stored()
    if stats is not None:
        stats = {**stats, "skipped": True}
    else:
        stats = b.build()
    repo = push_to_hub or cfg.corpus.hub.repo
    if repo:
        from distill.corpus.hub import push

        stats["hub"] = {"repo": repo, "url": push(b.out, repo, cfg.corpus.hub)}
    return stats


def load_corpus(path: str | Path):
    return D.load_corpus(path)


def cli_corpus(cfg: RunConfig, push_to_hub: str | None = None, progress: bool = True) -> int:
    stats = run_corpus(cfg, progress=progress, push_to_hub=push_to_hub)
    out = stats["output_dir"]
    first = stats["funnel"][0]["count"] or 1
    if stats.get("skipped"):
        print(f"corpus in {out} is up to date (same config and filter output); nothing rebuilt")
    print(", ".join(f"{s}: {v['rows']} rows / {v['groups']} groups" for s, v in stats["splits"].items()))
    for row in stats["funnel"][-3:]:
        print(f"  {row['stage']:<16}{row['count']:>8}  ({100 * row['count'] / first:.1f}% of generated)")
    print(f"dataset in {out}/dataset, Parquet in {out}/data, card {out}/README.md"
          + (f", plots in {out}/plots" if stats["plots"] else ""))
    if "hub" in stats:
        print(f"uploaded to {stats['hub']['url']}")
    return 0
