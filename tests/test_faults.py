"""Never pay twice, never lose paid work: ``distill generate`` against a loopback
OpenAI-compatible server that fails at random and keeps a ledger of every answer it wrote.

The fault-injection test kills the run with SIGKILL at random moments, resumes it, and
checks two things: the records are those of an uninterrupted run, and no answer that reached
the client before a kill was paid for again (only answers still on the wire at a kill may be).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from distill.generator.cache import RequestCache
from distill.errors import BudgetExhausted, TeacherError
from distill.generator.backends.base import Request, SamplingParams
from distill.generator.backends.openai_backend import OpenAIBackend
from distill.generator.teacher import Budget, Teacher

try:
    from fault_server import FaultServer, Paid
except ImportError:  # tests/ is a package
    from tests.fault_server import FaultServer, Paid

P = SamplingParams(max_tokens=16, temperature=0.7, top_p=0.9)
#: answers written this long before a kill count as having reached the client: the client
#: stores an answer within milliseconds of reading it; this leaves room for a loaded machine
REACHED_S = 0.5


def seeds_file(tmp: Path, n: int) -> Path:
    path = tmp / "seeds.txt"
    path.write_text("".join(f"Sentence number {i} says that the council met on day {i}.\n" for i in range(n)))
    return path


def generate_cmd(seeds: Path, out: Path, url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "distill.cli", "generate", "--no-progress",
            "--set", "task.name=paraphrase_instruct", "--set", f"task.inputs={seeds}", "--set", "task.k=4",
            "--set", "shards.items_per_shard=8", "--set", "teacher.backend=openai", "--set", "teacher.model=fake",
            "--set", f"teacher.openai.base_url={url}", "--set", "teacher.openai.concurrency=4",
            "--set", "teacher.openai.mode=chat", "--set", "teacher.openai.timeout=1",
            "--set", "teacher.openai.max_retries=10", *extra, "-o", str(out)]


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").glob("shard-*"))
            if p.name.endswith(".jsonl")}


def faulty(server: FaultServer) -> FaultServer:
    server.mix = {"500": 0.08, "429": 0.08, "drop": 0.04, "drop_mid_body": 0.03, "hang": 0.03}
    server.delay, server.jitter, server.hang_s = 0.3, True, 1.5
    return server


def test_sigkill_under_faults_repays_only_what_was_in_flight(tmp_path):
    seeds = seeds_file(tmp_path, 96)  # 12 shards of 8 inputs, one n=4 request each
    ref = tmp_path / "ref"
    with FaultServer() as clean:
        p = subprocess.run(generate_cmd(seeds, ref, clean.url), capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-3000:]
    want = shard_bytes(ref)
    assert len(want) == 12 and all(want.values())

    out, rng = tmp_path / "out", random.Random(7)
    kills: list[tuple[float, float]] = []  # (when killed, when the next process started)
    with faulty(FaultServer()) as server:
        started = time.time()
        for attempt in range(6):
            before = len([e for e in server.ledger if not e.late])
            wait_for = rng.randint(5, 14)  # answers this process should get before the kill
            log = open(tmp_path / f"run{attempt}.log", "w")
            t_start = time.time()
            if kills:
                kills[-1] = (kills[-1][0], t_start)
            proc = subprocess.Popen(generate_cmd(seeds, out, server.url), stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 90
            while len([e for e in server.ledger if not e.late]) < before + wait_for and proc.poll() is None:
                assert time.monotonic() < deadline, "no progress under faults"
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.5))  # a random moment, often with requests on the wire
            if proc.poll() is not None:
                log.close()
                break
            kills.append((time.time(), float("inf")))
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
            log.close()
        assert len(kills) >= 5, f"only {len(kills)} kills: the run finished too early to test anything"
        kills[-1] = (kills[-1][0], time.time())
        p = subprocess.run(generate_cmd(seeds, out, server.url), capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        ledger = list(server.ledger)
        faults_seen = server.count - len(ledger)
    assert faults_seen > 5, "the server injected almost no faults"

    assert shard_bytes(out) == want  # identical records: nothing lost, nothing duplicated
    stats = json.loads((out / "generate_stats.json").read_text())
    assert stats["status"] == "complete" and stats["records"] == json.loads((ref / "generate_stats.json").read_text())["records"]
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"

    by_key: dict[tuple, list[Paid]] = defaultdict(list)
    for e in ledger:
        if not e.late:
            by_key[e.key].append(e)
    assert len(by_key) == 96  # every input was answered
    repaid = []
    for key, paid in by_key.items():
        paid.sort(key=lambda e: e.t)
        for e in paid[:-1]:  # paid again later: it must have been on the wire at a kill
            in_flight = any(k - REACHED_S <= e.t <= restart for k, restart in kills)
            assert in_flight, (f"an answer written {e.t - started:.2f} s into the test was paid again, although "
                               f"it reached the client before any kill (kills at "
                               f"{[round(k - started, 2) for k, _ in kills]})")
            repaid.append(e)
    assert len(repaid) <= 4 * len(kills)  # at most the requests in flight (concurrency 4) per kill
    # the ledger and the run's own accounts agree: every answer paid once was stored once
    db = sqlite3.connect(out / "cache.sqlite")
    try:
        rows = db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
    finally:
        db.close()
    assert rows == 96 * 4


def test_retries_running_out_keep_every_answer_received(tmp_path):
    """40% of requests fail with 500 and max_retries=1: the run gives up, but every answer the
    server wrote is in the cache, and a rerun against a healthy server pays only for the rest."""
    prompts = [f"Prompt number {i}" for i in range(40)]
    with FaultServer(delay=0.05) as server:
        server.mix = {"500": 0.4}
        cache = RequestCache(tmp_path / "cache.sqlite")
        backend = OpenAIBackend("fake", base_url=server.url, concurrency=4, max_retries=1, backoff_base=0.01)
        teacher = Teacher(backend, cache)
        with pytest.raises(TeacherError, match="failed 2 times") as err:
            teacher.generate(prompts, 3, P)
        assert "answered is kept" in str(err.value)
        served = len(server.ledger)
        assert 0 < served < 40
        assert len(cache) == 3 * served, f"the server answered {served} requests, the cache holds {len(cache)} samples"
        assert cache.totals() == (sum(e.prompt_tokens for e in server.ledger),
                                  sum(e.completion_tokens for e in server.ledger))
        server.mix = {}
        teacher = Teacher(backend, cache)
        got = teacher.generate(prompts, 3, P)
        assert len(server.ledger) == 40  # only the unanswered ones were asked again
        assert len({e.key for e in server.ledger}) == 40
        assert teacher.cached_samples == 3 * served and all(len(g) == 3 for g in got)
        backend.close()
        cache.close()


def test_answers_arrive_in_the_cache_while_a_slow_request_retries(tmp_path):
    """One request keeps failing while the others are answered: their samples are stored as
    they come, not when the whole chunk is done."""
    with FaultServer(delay=0.02) as server:
        server.script("500", "500", "500", "500", "500", "500")  # the first request retries for a while
        cache = RequestCache(tmp_path / "cache.sqlite")
        backend = OpenAIBackend("fake", base_url=server.url, concurrency=2, max_retries=6,
                                backoff_base=0.2, backoff_max=0.4)
        seen: list[int] = []
        real_put = cache.put_many

        def put_many(rows):
            real_put(rows)
            seen.append(len(server.ledger))

        cache.put_many = put_many
        Teacher(backend, cache).generate([f"p{i}" for i in range(6)], 2, P)
        backend.close()
    # one commit per answer (concurrency 2: at most two answers written by then), not one at the end
    assert len(seen) == 6 and seen == sorted(seen) and seen[0] <= 2 and seen[2] <= 4
    assert len(cache) == 12
    cache.close()


def test_refused_n_counts_the_prompt_once_per_request(tmp_path):
    with FaultServer() as server:
        server.refuse_n = True
        cache = RequestCache(tmp_path / "cache.sqlite")
        backend = OpenAIBackend("fake", base_url=server.url)
        teacher = Teacher(backend, cache)
        teacher.generate([f"A prompt of six words {i}" for i in range(10)], 4, P)
        billed = [e for e in server.ledger]
        assert len(billed) == 40 and all(e.n == 1 for e in billed)
        assert teacher.usage.prompt_tokens == sum(e.prompt_tokens for e in billed) == 40 * 6
        assert cache.totals()[0] == 40 * 6
        backend.close()
        cache.close()


def test_moving_to_another_replica_does_not_repay(tmp_path):
    prompts = [f"Prompt {i}" for i in range(5)]
    cache = RequestCache(tmp_path / "cache.sqlite")
    with FaultServer() as a, FaultServer() as b:
        ba, bb = OpenAIBackend("fake", base_url=a.url), OpenAIBackend("fake", base_url=b.url)
        first = Teacher(ba, cache).generate(prompts, 2, P)
        second = Teacher(bb, cache).generate(prompts, 2, P)
        assert (a.count, b.count) == (5, 0) and first == second
        assert ba.model_id == bb.model_id == "openai:fake"
        ba.close()
        bb.close()
    cache.close()


def test_entries_cached_under_the_old_url_keyed_id_are_still_used(tmp_path):
    from distill.generator.cache import cache_key

    cache = RequestCache(tmp_path / "cache.sqlite")
    with FaultServer() as server:
        backend = OpenAIBackend("fake", base_url=server.url)
        Teacher(backend, cache).generate(["Old prompt"], 2, P)
        # rewrite the rows as a cache made before the id left out the URL
        old = [cache_key(f"openai:{server.url}:fake", "Old prompt", P, i) for i in range(2)]
        new = [cache_key("openai:fake", "Old prompt", P, i) for i in range(2)]
        with cache.db:
            for o, n in zip(old, new):
                cache.db.execute("UPDATE completions SET key=? WHERE key=?", (o, n))
        t = Teacher(backend, cache)
        t.generate(["Old prompt"], 2, P)
        assert server.count == 1 and t.cached_samples == 2
        backend.close()
    cache.close()


def test_budget_cap_holds_within_one_request(tmp_path):
    """Concurrency 8 and a cap of 300 completion tokens: what is paid stays under the cap plus
    one request's max_tokens x n, and every answer received is kept."""
    with FaultServer(delay=0.05) as server:
        cache = RequestCache(tmp_path / "cache.sqlite")
        backend = OpenAIBackend("fake", base_url=server.url, concurrency=8)
        teacher = Teacher(backend, cache, Budget(max_completion_tokens=300))
        with pytest.raises(BudgetExhausted):
            teacher.generate([f"Budget prompt {i}" for i in range(100)], 4, P)
        paid = sum(e.completion_tokens for e in server.ledger)
        assert 300 <= paid <= 300 + 4 * P.max_tokens
        assert cache.totals()[1] == paid
        backend.close()
        cache.close()


def test_budget_cost_cap_counts_in_flight_calls(tmp_path):
    with FaultServer(delay=0.05) as server:
        backend = OpenAIBackend("fake", base_url=server.url, concurrency=8)
        budget = Budget(max_cost=0.001, price_prompt=10.0, price_completion=20.0)
        teacher = Teacher(backend, None, budget)
        with pytest.raises(BudgetExhausted, match="max_cost"):
            teacher.generate([f"Cost prompt {i}" for i in range(100)], 4, P)
        spent = budget.cost(sum(e.prompt_tokens for e in server.ledger), sum(e.completion_tokens for e in server.ledger))
        one_call = budget.cost(len("Cost prompt 99") // 3 + 1, 4 * P.max_tokens)
        assert 0.001 <= spent <= 0.001 + one_call
        backend.close()


def test_budget_stop_has_its_own_exit_status_and_says_so(tmp_path):
    seeds = seeds_file(tmp_path, 24)
    out = tmp_path / "out"
    with FaultServer(delay=0.02) as server:
        p = subprocess.run(generate_cmd(seeds, out, server.url, "--set", "budget.max_completion_tokens=300"),
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 3, p.stderr[-3000:]
        assert "stopped by the budget (exit 3)" in p.stderr and "Traceback" not in p.stderr
        assert "budget_exhausted" in p.stdout and "max_completion_tokens=300" in p.stdout
        paid = sum(e.completion_tokens for e in server.ledger)
        assert 300 <= paid <= 300 + 4 * 64  # k=4 samples of at most 64 tokens: one request over at most
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["status"] == "budget_exhausted" and "stopped by the budget" in manifest["summary"]["message"]
        stats = json.loads((out / "generate_stats.json").read_text())
        assert stats["completion_tokens_paid"] == paid  # every paid answer is in the ledger of the run
        p = subprocess.run(generate_cmd(seeds, out, server.url), capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-3000:]
        assert len({e.key for e in server.ledger}) == len(server.ledger) == 24  # nothing paid twice


def test_distill_run_stopped_by_the_budget_exits_3(tmp_path):
    seeds = seeds_file(tmp_path, 24)
    with FaultServer() as server:
        cmd = generate_cmd(seeds, tmp_path / "loop", server.url, "--set", "budget.max_completion_tokens=100")
        cmd[cmd.index("generate")] = "run"
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 3, p.stderr[-3000:]
    assert "round 1: stopped by the budget" in p.stderr and "exit 3" in p.stderr and "Traceback" not in p.stderr
