"""Where the per-shard work of ``distill generate`` and ``distill filter`` runs: in this process
(``executor.type: local``, the default) or on a Ray cluster (``executor.type: ray``).

On Ray, the driver (the process that runs the command) keeps every decision and the run
folder's bookkeeping; the cluster does the shards:

- generate: a pool of ``TeacherReplica`` actors, each holding one engine (transformers or vLLM
  with ``executor.num_gpus`` GPUs, tensor parallel inside a replica; or an OpenAI client), takes
  shards as it frees up (data parallel). Each replica writes the shard and its marker itself,
  and stores every completion the moment it arrives in the shard's own cache file
  (``cache/shard-NNNNN.sqlite``: one writer per file, never one SQLite file written from many
  nodes), reading the run's ``cache.sqlite`` too. The driver merges the shard caches into
  ``cache.sqlite`` before and after the run, so a finished run looks exactly like a local one.
- filter: a pool of ``CriticWorker`` actors (models loaded once per actor) judges shards and
  embeds their survivors for dedup into per-shard files; the driver merges those, makes the
  global dedup decision and writes the kept shards and the funnel.

A replica or node that dies mid-shard is restarted by Ray (``executor.max_restarts``) and its
shard retried (``executor.max_task_retries``); the retry finds every completion the dead replica
stored, so nothing received is paid twice. A budget is one ledger actor that every replica asks
before each call, so the cap holds across the cluster as it does locally. Finished shards are
skipped on rerun, by any executor. The output folder (and any seed file or local model) must be
on storage every node sees at the same path; relative paths are taken from the driver's working
directory.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from distill.config import ExecutorConfig, RunConfig, dump_config
from distill.errors import BudgetExhausted, DistillError, ensure_dir
from distill.shards import ShardStore, atomic_write, merge_sqlite, remove_stale_temps

#: environment variables a worker needs from the driver (API keys are added per teacher)
_ENV_PREFIXES = ("DISTILL_", "HF_", "TRANSFORMERS_", "OMP_NUM_THREADS")


def _ray():
    try:
        import ray
    except ImportError:
        raise DistillError("executor.type=ray needs Ray: pip install 'ray>=2.40' (or pip install -e '.[ray]')") from None
    return ray


def connect(ex: ExecutorConfig) -> None:
    """Join the cluster at ``executor.address`` (else $RAY_ADDRESS, else one ``ray start`` made on this
    machine, else a new local one: Ray's own rule)."""
    ray = _ray()
    if ray.is_initialized():
        return
    address = ex.address or os.environ.get("RAY_ADDRESS") or None
    kw: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if ex.runtime_env:
        kw["runtime_env"] = ex.runtime_env
    if address is None:
        kw["include_dashboard"] = False
    elif address != "auto":  # Ray itself retries an unreachable address for minutes
        host, _, port = address.split("://")[-1].rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=10).close()
        except (OSError, ValueError) as e:
            raise DistillError(f"executor.address: no Ray cluster answers at {address} "
                               f"({e.strerror or e if isinstance(e, OSError) else 'expected host:port'})") from None
    try:
        ray.init(address=address, **kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise DistillError(f"executor.address: could not join a Ray cluster at {address or 'a new local one'}: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def _worker_env(cfg: RunConfig) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}
    key = cfg.teacher.openai.api_key_env
    if cfg.teacher.backend == "openai" and key in os.environ:
        env[key] = os.environ[key]
    return env


def _options(cfg: RunConfig, gpus: float) -> dict[str, Any]:
    ex = cfg.executor
    return {"num_cpus": ex.num_cpus, "num_gpus": gpus, "max_restarts": ex.max_restarts,
            "max_task_retries": ex.max_task_retries, "runtime_env": {"env_vars": _worker_env(cfg)},
            "scheduling_strategy": "SPREAD"}  # one engine per replica: spread them over the nodes


def _enter(cfg_json: dict[str, Any], cwd: str) -> RunConfig:
    """In a worker: the driver's working directory (shared storage: same paths on every node),
    so relative paths in the config mean what they meant to the driver."""
    if Path(cwd).is_dir():
        os.chdir(cwd)
    return RunConfig.model_validate(cfg_json)


def _unwrap(ray, ref, what: str, ex: ExecutorConfig):
    """``ray.get`` with a user error raised as itself (one clear line, no remote traceback) and a
    worker lost for good said plainly."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, DistillError):
            raise e.cause from None
        raise
    except ray.exceptions.RayActorError as e:
        raise DistillError(f"a {what} died and could not be restarted (executor.max_restarts={ex.max_restarts}, "
                           f"max_task_retries={ex.max_task_retries}): {str(e).splitlines()[0]}. Finished shards and "
                           f"every completion stored are kept; rerun the same command to resume.") from None


def run_pool(actors: list, items: Iterable[int], call: Callable[[Any, int], Any], what: str, ex: ExecutorConfig,
             bar=None, stop: Callable[[Any], bool] = lambda _: False) -> tuple[dict[int, Any], Any]:
    """Hand ``items`` to ``actors`` one at a time as each frees up (``call(actor, item)`` returns
    an ObjectRef). Returns ({item: result}, the result that made ``stop`` true or None); after a
    stop or an error no new item starts, and the items in flight are waited for (their work is
    kept) before the first error is raised."""
    ray = _ray()
    pending, idle = deque(items), deque(actors)
    inflight: dict[Any, tuple[Any, int]] = {}
    results: dict[int, Any] = {}
    stopped, error = None, None
    while inflight or (pending and stopped is None and error is None):
        while idle and pending and stopped is None and error is None:
            actor, item = idle.popleft(), pending.popleft()
            inflight[call(actor, item)] = (actor, item)
        done, _ = ray.wait(list(inflight), num_returns=1)
        for ref in done:
            actor, item = inflight.pop(ref)
            try:
                res = _unwrap(ray, ref, what, ex)
            except Exception as e:  # noqa: BLE001 - raised below, once the others are back
                error = error or e
                continue
            results[item] = res
            idle.append(actor)
            if bar is not None:
                bar.update(1)
            if stopped is None and stop(res):
                stopped = res
    if error is not None:
        raise error
    return results, stopped


def _kill(actors: list) -> None:
    ray = _ray()
    for a in actors:
        try:
            ray.kill(a)
        except Exception:  # noqa: BLE001 - already gone
            pass


# ---- generate ----------------------------------------------------------------------------

class BudgetLedger:
    """The run's budget across replicas (a Ray actor): what was delivered and what is in
    flight, with the same admission rule as the local gate (distill.generator.teacher)."""

    def __init__(self, budget, spent: tuple[int, int]) -> None:
        self.budget, self.spent, self.held = budget, list(spent), [0, 0]

    def hold(self, completion_tokens: int, prompt_tokens: int) -> str | None:
        why = self.budget.spent(*self.spent)
        if why:
            return "exhausted:" + why
        if self.budget.spent(self.spent[0] + self.held[0], self.spent[1] + self.held[1]):
            return "full"
        self.held[0] += prompt_tokens
        self.held[1] += completion_tokens
        return None

    def release(self, completion_tokens: int, prompt_tokens: int) -> None:
        self.held[0] -= prompt_tokens
        self.held[1] -= completion_tokens

    def add(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.spent[0] += prompt_tokens
        self.spent[1] += completion_tokens

    def totals(self) -> tuple[int, int]:
        return self.spent[0], self.spent[1]


class _SharedGate:
    """A replica's gate in front of each call, backed by the ledger actor. "Full" with nothing of
    this replica in flight means other replicas hold the room: wait for them to deliver."""

    def __init__(self, ledger) -> None:
        self.ledger, self.local = ledger, 0

    @contextmanager
    def hold(self, completion_tokens: int, prompt_tokens: int):
        from distill.generator.backends.base import GateFull

        ray = _ray()
        while True:
            answer = ray.get(self.ledger.hold.remote(completion_tokens, prompt_tokens))
            if answer is None:
                break
            if answer.startswith("exhausted:"):
                raise BudgetExhausted(answer[len("exhausted:"):])
            if self.local:
                raise GateFull()
            time.sleep(0.2)
        self.local += 1
        try:
            yield
        finally:
            self.local -= 1
            self.ledger.release.remote(completion_tokens, prompt_tokens)  # after this caller's add(): ordered


def _shared_teacher(backend, cache, budget, ledger):
    from distill.generator.teacher import Teacher

    class SharedBudgetTeacher(Teacher):
        """A Teacher whose budget is the cluster's ledger, not this replica's cache."""

        def __init__(self) -> None:
            super().__init__(backend, cache, budget)
            self._gate = _SharedGate(ledger)

        @property
        def ledger(self) -> tuple[int, int]:
            return tuple(_ray().get(ledger.totals.remote()))

        def _store(self, keys, indices, comps, prompt_tokens, have, first) -> None:
            super()._store(keys, indices, comps, prompt_tokens, have, first)
            ledger.add.remote(prompt_tokens, sum(c.completion_tokens for c in comps))

    return SharedBudgetTeacher()


class TeacherReplica:
    """One teacher engine on a cluster worker (a Ray actor); generates whole shards."""

    def __init__(self, cfg_json: dict[str, Any], cwd: str, ledger=None) -> None:
        self.error: DistillError | None = None
        try:
            self._start(cfg_json, cwd, ledger)
        except DistillError as e:  # a user error (a missing model): raised by describe(), as one line
            self.error = e

    def _start(self, cfg_json: dict[str, Any], cwd: str, ledger) -> None:
        from distill.generator.backends import make_backend
        from distill.generator.tasks import build_task
        from distill.runner import _budget

        self.cfg = cfg = _enter(cfg_json, cwd)
        self.out = Path(cfg.output_dir)
        self.task = build_task(cfg.task.model_copy(deep=True), cfg.seed)
        self.seeds = self.task.seeds()
        self.backend = make_backend(cfg.teacher)
        if getattr(self.backend, "batch", False):
            self.backend.state_dir = self.out
        self.task.resolve_defaults(self.backend)
        self.store = ShardStore(self.out / "shards", cfg.shards.format)
        self.budget = _budget(cfg.budget, cfg.teacher)
        self.ledger = ledger

    def describe(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        return {"host": socket.gethostname(), "pid": os.getpid(), "node": _ray().get_runtime_context().get_node_id(),
                "model_id": self.backend.model_id, "resolved_task": self.task.cfg.model_dump(mode="json")}

    def run_shard(self, i: int) -> dict[str, Any]:
        from distill.generator.cache import ShardCache
        from distill.generator.teacher import Teacher
        from distill.runner import generate_shard

        if self.store.is_done(i):  # a retry after the first attempt finished writing
            return {**self.store.marker(i), "usage": None, "cached_samples": 0}
        cache = ShardCache(self.out / "cache" / f"shard-{i:05d}.sqlite", base=self.out / "cache.sqlite")
        try:
            teacher = (_shared_teacher(self.backend, cache, self.budget, self.ledger) if self.ledger is not None
                       else Teacher(self.backend, cache, self.budget))
            try:
                info = generate_shard(self.task, teacher, self.seeds, self.cfg.shards.items_per_shard, i, self.store,
                                      self.cfg.round)
            except BudgetExhausted as e:
                info = {"shard": i, "budget": str(e)}
        finally:
            cache.close()
        return {**info, "usage": teacher.usage.as_dict(), "cached_samples": teacher.cached_samples,
                "pid": os.getpid()}

    def close(self) -> None:
        self.backend.close()


def ray_generate(cfg: RunConfig, progress: bool = True):
    """``run_generate`` on a Ray cluster (see the module docstring); same outputs, same summary."""
    from distill.generator.backends.base import Usage
    from distill.generator.cache import RequestCache, merge_shard_caches
    from distill.generator.tasks import build_task
    from distill.runner import _budget, _check_resume, _mark_stopped, _summarize, versions

    t0 = time.perf_counter()
    ex = cfg.executor
    out = Path(cfg.output_dir)
    folder = _check_resume(out, cfg)
    budget = _budget(cfg.budget, cfg.teacher)
    task = build_task(cfg.task.model_copy(deep=True), cfg.seed)
    seeds = task.seeds()  # seed files are read and checked here, before the cluster
    per = cfg.shards.items_per_shard
    n_shards = math.ceil(len(seeds) / per)
    store = ShardStore(out / "shards", cfg.shards.format)
    todo = [i for i in range(n_shards) if not store.is_done(i)]
    status, message, written, stand_in, info = "complete", "", 0, None, {"type": "ray"}
    if todo:
        ensure_dir(out, "output_dir")
        remove_stale_temps(out, store.dir)
        merge_shard_caches(out)  # what the replicas of a killed run stored
        ray = _ray()
        connect(ex)
        ledger = None
        if cfg.budget.max_completion_tokens is not None or cfg.budget.max_cost is not None:
            spent = (0, 0)
            if (out / "cache.sqlite").is_file():
                c = RequestCache(out / "cache.sqlite")
                spent = c.totals()
                c.close()
            ledger = ray.remote(BudgetLedger).options(num_cpus=0).remote(budget, spent)
        cfg_json, cwd = cfg.model_dump(mode="json"), os.getcwd()
        actor = ray.remote(TeacherReplica).options(**_options(cfg, ex.num_gpus))
        replicas = [actor.remote(cfg_json, cwd, ledger) for _ in range(min(ex.replicas, len(todo)))]
        try:
            # a missing model or a bad seed file fails here, before anything is written
            described = [_unwrap(ray, r.describe.remote(), "teacher replica", ex) for r in replicas]
            folder.claim(status="running", config=cfg_json, resolved_task=described[0]["resolved_task"],
                         teacher_model_id=described[0]["model_id"], versions={**versions(), "ray": ray.__version__},
                         shards_total=n_shards, command=sys.argv)
            atomic_write(out / "config.yaml", lambda f: f.write(dump_config(cfg).encode()))
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=len(todo), unit="shard", desc=f"generate on {len(replicas)} replica(s)",
                           dynamic_ncols=True)
            w0 = time.perf_counter()
            try:
                results, stopped = run_pool(replicas, todo, lambda a, i: a.run_shard.remote(i), "teacher replica",
                                            ex, bar, stop=lambda res: "budget" in res)
            except BaseException as e:
                _mark_stopped(out / "manifest.json", "interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                              str(e) or type(e).__name__)
                raise
            finally:
                if bar is not None:
                    bar.close()
            work = time.perf_counter() - w0
        finally:
            _kill(replicas + ([ledger] if ledger is not None else []))
            merge_shard_caches(out)
        usage, cached = Usage(), 0
        for res in results.values():
            if res.get("usage"):
                usage.add(Usage(**res["usage"]))
            cached += res.get("cached_samples", 0)
        written = sum(1 for res in results.values() if "budget" not in res and res.get("usage") is not None)
        if stopped is not None:
            status = "budget_exhausted"
            message = (f"stopped by the budget: {stopped['budget']}. Finished shards and every paid sample are "
                       f"kept; raise the budget and rerun to continue.")
        stand_in = SimpleNamespace(usage=usage, gen_seconds=work, cached_samples=cached, progress=None)
        info.update(replicas=len(replicas), nodes=len({d["node"] for d in described}),
                    hosts=sorted({d["host"] for d in described}), work_seconds=round(work, 3),
                    shards_by_pid=_count_by(results.values(), "pid"))
    return _summarize(out, store, n_shards, budget, status, message, written, stand_in, todo, 1, t0, executor=info)


def _count_by(results: Iterable[dict[str, Any]], key: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in results:
        if r.get(key) is not None:
            counts[str(r[key])] = counts.get(str(r[key]), 0) + 1
    return counts


# ---- filter ------------------------------------------------------------------------------

class CriticWorker:
    """The filter's critic chain (and the dedup encoder) on a cluster worker (a Ray actor)."""

    def __init__(self, cfg_json: dict[str, Any], cwd: str) -> None:
        from distill.critics.pipeline import FilterRun

        self.error: DistillError | None = None
        try:
            self.run = FilterRun(_enter(cfg_json, cwd), progress=False)
            self.critics = self.run.critics()
            self.encoder = self.run.dedup_encoder(None)
        except DistillError as e:  # a critic that cannot load: raised by ready(), as one line
            self.error = e

    def ready(self) -> str:
        if self.error is not None:
            raise self.error
        return socket.gethostname()

    def run_shard(self, i: int) -> int:
        if self.run.stage1.is_done(i):
            return i
        if self.encoder is not None:
            self.encoder.use_cache(self.run.out / "embeddings" / f"shard-{i:05d}.sqlite")
        try:
            self.run.critic_shard(i, self.critics, self.encoder)
        finally:
            if self.encoder is not None:
                self.encoder.close()
        return i


def ray_critics(run, todo: list[int]) -> None:
    """Phase 1 of ``distill filter`` (critics per shard, dedup embeddings) on a worker pool; the
    driver then merges the embeddings and goes on with the global dedup as a local run does."""
    from distill.critics.embed import CREATE

    ray = _ray()
    cfg, ex = run.cfg, run.cfg.executor
    connect(ex)
    actor = ray.remote(CriticWorker).options(**_options(cfg, 0.0))
    workers = [actor.remote(cfg.model_dump(mode="json"), os.getcwd()) for _ in range(min(ex.filter_workers, len(todo)))]
    try:
        for w in workers:  # a critic that cannot load fails here, before the folder is claimed
            _unwrap(ray, w.ready.remote(), "critic worker", ex)
        run.claim_output()
        bar = None
        if run.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), unit="shard", desc=f"critics on {len(workers)} worker(s)", dynamic_ncols=True)
        try:
            run_pool(workers, todo, lambda w, i: w.run_shard.remote(i), "critic worker", ex, bar)
        finally:
            if bar is not None:
                bar.close()
    finally:
        _kill(workers)
        merge_sqlite(run.out / "embeddings.sqlite", run.out / "embeddings", "emb", CREATE)
