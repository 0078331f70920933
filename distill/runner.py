"""Sharded, resumable execution of the teacher stage (``distill generate``).

The seed items are cut into fixed shards; each unfinished shard is generated and
written atomically with a completion marker, so a rerun after a crash or ``kill -9``
skips finished shards, and the request cache makes it skip finished completions inside
the shard that was cut off too.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from distill import __version__
from distill.generator.cache import RequestCache, merge_shard_caches
from distill.config import RunConfig, dump_config
from distill.errors import BudgetExhausted, ConfigError, ensure_dir
from distill.rundir import RunFolder, update_json
from distill.shards import ShardStore, atomic_write, atomic_write_json, remove_stale_temps

#: config fields that decide what is generated; a rerun into the same output folder
#: must agree on them (batch size, device, budget and the like may change).
FINGERPRINT_FIELDS = ("seed", "task", "shards", "teacher.backend", "teacher.model")


def _get(d: dict, dotted: str) -> Any:
    for k in dotted.split("."):
        d = d[k]
    return d


def fingerprint(cfg: RunConfig) -> dict[str, Any]:
    d = cfg.model_dump(mode="json")
    return {f: _get(d, f) for f in FINGERPRINT_FIELDS}


def versions() -> dict[str, str]:
    v = {"python": platform.python_version(), "distill": __version__, "platform": platform.platform()}
    for mod in ("torch", "transformers", "vllm", "openai", "datasets"):
        if mod in sys.modules:
            v[mod] = getattr(sys.modules[mod], "__version__", "?")
    try:
        v["git"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                  cwd=Path(__file__).parent).stdout.strip() or "none"
    except (OSError, subprocess.SubprocessError):
        v["git"] = "none"
    return v


@dataclass
class GenerateSummary:
    output_dir: str
    status: str  # complete | budget_exhausted | incomplete (another rank's shards are missing)
    shards_total: int
    shards_done: int
    shards_written_now: int
    records: int
    prompt_tokens_paid: int
    completion_tokens_paid: int
    cost: float
    cached_samples_now: int
    seconds: float
    tokens_per_second_now: float
    counts: dict[str, int] = field(default_factory=dict)
    message: str = ""
    executor: dict[str, Any] = field(default_factory=lambda: {"type": "local"})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_resume(out: Path, cfg: RunConfig) -> RunFolder:
    """The run folder of ``cfg`` (manifest.json records its fingerprint); ConfigError when
    ``out`` holds a run with another fingerprint."""
    folder = RunFolder(out, fingerprint(cfg))
    folder.check()
    return folder


def _budget(b, teacher=None):
    """The teacher's Budget from the config's budget section (batch prices for a batch teacher)."""
    from distill.generator.teacher import Budget

    if b.max_cost is not None and not (b.price_per_million_prompt_tokens or b.price_per_million_completion_tokens):
        raise ConfigError("budget.max_cost needs budget.price_per_million_prompt_tokens and/or "
                          "budget.price_per_million_completion_tokens")
    factor = b.batch_price_factor if teacher is not None and teacher.backend == "openai" and teacher.openai.batch else 1.0
    return Budget(b.max_completion_tokens, b.max_cost, b.price_per_million_prompt_tokens * factor,
                  b.price_per_million_completion_tokens * factor)


def run_generate(cfg: RunConfig, backend=None, progress: bool = True, rank: int = 0, world_size: int = 1) -> GenerateSummary:
    """Generate every unfinished shard of ``cfg``'s run. ``backend`` may be passed in
    (tests, or a caller reusing a loaded model); otherwise it is built from the config
    and closed at the end."""
    from distill.generator.backends import make_backend
    from distill.generator.tasks import build_task

    if cfg.executor.type == "ray" and backend is None:  # a passed-in backend lives in this process
        from distill.executor import ray_generate

        return ray_generate(cfg, progress)
    t0 = time.perf_counter()
    out = Path(cfg.output_dir)
    folder = _check_resume(out, cfg)
    budget = _budget(cfg.budget, cfg.teacher)
    task = build_task(cfg.task.model_copy(deep=True), cfg.seed)
    seeds = task.seeds()  # seed files are read and checked before any model is loaded
    per = cfg.shards.items_per_shard
    n_shards = math.ceil(len(seeds) / per)
    store = ShardStore(out / "shards", cfg.shards.format)
    todo = [i for i in range(n_shards) if i % world_size == rank and not store.is_done(i)]
    status, message, written, teacher = "complete", "", 0, None
    if todo:
        ensure_dir(out, "output_dir")  # a file in the way or a read-only disk fails here, before a model loads
        own_backend = backend is None
        backend = backend or make_backend(cfg.teacher)  # a missing model fails here, before anything is written
        try:
            out.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(out, store.dir)
            if getattr(backend, "batch", False):  # batch jobs are recorded (and resumed) under the run
                backend.state_dir = out
                remove_stale_temps(out / "batches")
            task.resolve_defaults(backend)
            folder.claim(status="running", config=cfg.model_dump(mode="json"),
                         resolved_task=task.cfg.model_dump(mode="json"), teacher_model_id=backend.model_id,
                         versions=versions(), shards_total=n_shards, command=sys.argv)
            try:
                atomic_write(out / "config.yaml", lambda f: f.write(dump_config(cfg).encode()))
                merge_shard_caches(out)  # completions a killed cluster run stored per shard are not paid again
                cache = RequestCache(out / "cache.sqlite")
                try:
                    teacher = _make_teacher(backend, cache, budget, task, seeds, per, todo, progress)
                    try:
                        written, stopped = _generate_shards(task, teacher, seeds, per, todo, store, cfg.round)
                        if stopped:
                            status = "budget_exhausted"
                            message = (f"stopped by the budget: {stopped}. Finished shards and every paid sample are "
                                       f"kept; raise the budget and rerun to continue.")
                    finally:
                        if teacher.progress is not None:
                            teacher.progress.close()
                finally:
                    cache.close()
            except BaseException as e:  # the manifest must not go on saying "running"
                _mark_stopped(out / "manifest.json", "interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                              str(e) or type(e).__name__)
                raise
        finally:
            if own_backend:
                backend.close()
    return _summarize(out, store, n_shards, budget, status, message, written, teacher, todo, world_size, t0)


def _mark_stopped(mpath: Path, status: str, error: str) -> None:
    """Record in the manifest why the run stopped (best effort: the disk may be what failed)."""
    try:
        update_json(mpath, status=status, error=error)
    except Exception:  # noqa: BLE001 - the original error is the one to report
        pass


def _make_teacher(backend, cache, budget, task, seeds, per, todo, progress):
    """The cached, budgeted teacher, with a progress bar over the samples still to make."""
    from distill.generator.teacher import Teacher

    bar = None
    if progress:
        from tqdm import tqdm

        per_seed = task.samples_per_seed()
        bar = tqdm(total=sum(min(per, len(seeds) - i * per) for i in todo) * per_seed, unit="sample",
                   desc=f"generate {len(todo)} shard(s)", dynamic_ncols=True)
    return Teacher(backend, cache, budget, progress=bar)


def _generate_shards(task, teacher, seeds, per, todo, store: ShardStore, round_: int) -> tuple[int, str | None]:
    """Generate and write each shard in ``todo``. Returns (shards written, why the
    budget stopped the run or None)."""
    written = 0
    for i in todo:
        try:
            generate_shard(task, teacher, seeds, per, i, store, round_)
        except BudgetExhausted as e:
            return written, str(e)
        written += 1
    return written, None


def generate_shard(task, teacher, seeds, per: int, i: int, store: ShardStore, round_: int) -> dict[str, Any]:
    """Generate shard ``i`` and write it with its marker (whose info this returns); the same
    code runs in this process and in a cluster's teacher replica. Raises BudgetExhausted."""
    from distill.generator.stage import TeacherStage

    task.counts.clear()
    before = teacher.usage.completion_tokens, teacher.usage.prompt_tokens
    records = list(TeacherStage(task, teacher).run(seeds[i * per : (i + 1) * per]))
    for r in records:
        r.round = round_
    info = {
        "counts": dict(task.counts),
        "completion_tokens_paid": teacher.usage.completion_tokens - before[0],
        "prompt_tokens_paid": teacher.usage.prompt_tokens - before[1],
        "seeds": [seeds[i * per].id, seeds[min((i + 1) * per, len(seeds)) - 1].id],
    }
    store.write(i, records, info)
    return {"shard": i, "records": len(records), **info}


def _summarize(out: Path, store: ShardStore, n_shards: int, budget, status: str, message: str, written: int,
               teacher, todo: list[int], world_size: int, t0: float,
               executor: dict[str, Any] | None = None) -> GenerateSummary:
    """Totals over every finished shard (earlier runs included) and the cache's ledger."""
    done = store.done_indices()
    counts: Counter[str] = Counter()
    records = 0
    for i in done:
        m = store.marker(i)
        counts.update(m.get("counts", {}))
        records += m["records"]
    paid_p = paid_c = 0
    if (out / "cache.sqlite").is_file():
        cache = RequestCache(out / "cache.sqlite")
        paid_p, paid_c = cache.totals()
        cache.close()
    if status == "complete" and len(done) < n_shards and world_size == 1:
        status = "incomplete"
    usage = teacher.usage if teacher else None
    secs = teacher.gen_seconds if teacher else 0.0
    summary = GenerateSummary(
        output_dir=str(out), status=status, shards_total=n_shards, shards_done=len(done), shards_written_now=written,
        records=records, prompt_tokens_paid=paid_p, completion_tokens_paid=paid_c, cost=budget.cost(paid_p, paid_c),
        cached_samples_now=teacher.cached_samples if teacher else 0, seconds=round(time.perf_counter() - t0, 2),
        tokens_per_second_now=round(usage.completion_tokens / secs, 2) if usage and secs else 0.0,
        counts=dict(counts), message=message or ("nothing to do: every shard was already finished" if not todo else ""),
        executor=executor or {"type": "local"},
    )
    if out.is_dir():
        mpath = out / "manifest.json"
        if mpath.is_file():
            manifest = json.loads(mpath.read_text())
            manifest.pop("error", None)
            manifest.update(status=status, summary=summary.as_dict())
            atomic_write_json(mpath, manifest)
        atomic_write_json(out / "generate_stats.json", summary.as_dict())
    return summary
