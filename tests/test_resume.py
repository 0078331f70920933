"""``distill generate`` killed with SIGKILL (or stopped by its budget) and rerun gives exactly
the records of an uninterrupted run, on the real default teacher (SmolLM2-135M on CPU).

The transformers backend samples each (prompt, params, sample index) from its own seed, so
the resumed run must reproduce every sample; finished shards are skipped and completions
stored in the request cache before the kill are not paid for again.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

N_SHARDS = 6
TINY = [
    "--set", f"task.num_contexts={N_SHARDS}", "--set", "task.k=4", "--set", "shards.items_per_shard=1",
    "--set", "teacher.batch_size=8", "--set", "task.context.max_tokens=40",
    "--set", "task.continuation.max_tokens=24", "--no-progress",
]
RUN_TIMEOUT = 480  # one tiny run takes ~25 s on 2 idle CPU cores; much longer when another torch job shares them


def cli(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "distill.cli", "generate", *TINY, *extra, "-o", str(out)]


def run(out: Path, *extra: str, code: int = 0) -> subprocess.CompletedProcess:
    p = subprocess.run(cli(out, *extra), capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=out.parent)
    assert p.returncode == code, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr[-3000:]}"
    return p


def markers(out: Path) -> list[int]:
    return sorted(int(m.name.split("-")[1].split(".")[0]) for m in (out / "shards").glob("shard-*.done.json"))


def cache_rows(out: Path) -> int:
    """Completions committed to the run's request cache (0 while it does not exist yet)."""
    path = out / "cache.sqlite"
    if not path.is_file():
        return 0
    try:
        db = sqlite3.connect(path, timeout=1)
        try:
            return db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
        finally:
            db.close()
    except sqlite3.OperationalError:  # table not created yet, or a transient lock
        return 0


def cache_contents(out: Path) -> set[tuple]:
    db = sqlite3.connect(out / "cache.sqlite")
    try:
        return set(db.execute("SELECT key, text, completion_tokens, finish_reason FROM completions"))
    finally:
        db.close()


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def records(out: Path) -> list[tuple]:
    """(id, task, input, output, teacher, metadata) of every record, in shard order."""
    rows = []
    for i in range(N_SHARDS):
        for line in (out / "shards" / f"shard-{i:05d}.jsonl").read_text().splitlines():
            r = json.loads(line)
            rows.append((r["id"], r["task"], r["input"], r["output"], r["teacher"],
                         json.dumps(r["metadata"], sort_keys=True)))
    return rows


def assert_complete_and_equal(out: Path, ref: Path) -> None:
    """``out`` is a finished run holding exactly the records of the reference run ``ref``."""
    shards = out / "shards"
    for i in range(N_SHARDS):
        data, marker = shards / f"shard-{i:05d}.jsonl", shards / f"shard-{i:05d}.done.json"
        assert data.is_file() and marker.is_file(), f"shard {i} unfinished"
        m, mref = read_json(marker), read_json(ref / "shards" / marker.name)
        assert m["records"] == len(data.read_text().splitlines())
        assert (m["records"], m["counts"], m["seeds"]) == (mref["records"], mref["counts"], mref["seeds"])
    assert not [p.name for p in out.rglob("*") if ".tmp-" in p.name], "temporary files left behind"
    got, want = records(out), records(ref)
    ids = [r[0] for r in got]
    assert len(ids) == len(set(ids)), "duplicate record ids across shards"
    assert got == want
    # every sample ever drawn (kept or dropped by the task) is the same, and none was paid twice
    assert cache_contents(out) == cache_contents(ref)
    stats, ref_stats = read_json(out / "generate_stats.json"), read_json(ref / "generate_stats.json")
    assert stats["status"] == "complete" and stats["shards_done"] == N_SHARDS
    assert stats["records"] == ref_stats["records"] == len(want)
    assert stats["counts"] == ref_stats["counts"]
    assert stats["completion_tokens_paid"] == ref_stats["completion_tokens_paid"]
    manifest = read_json(out / "manifest.json")
    assert manifest["status"] == "complete" and manifest["summary"]["records"] == len(want)


def samples_of(ref: Path, shard_ids: list[int]) -> int:
    """How many cache rows (contexts + continuations) the given shards drew in the reference run."""
    n = 0
    for i in shard_ids:
        c = read_json(ref / "shards" / f"shard-{i:05d}.done.json")["counts"]
        n += c.get("contexts", 0) + c.get("continuations", 0)
    return n


def kill_when(out: Path, ready, tmp: Path, timeout: float = RUN_TIMEOUT) -> None:
    """Start a run into ``out`` and SIGKILL it as soon as ``ready()`` holds."""
    log = open(tmp / f"{out.name}.log", "w")
    p = subprocess.Popen(cli(out), stdout=log, stderr=subprocess.STDOUT, cwd=tmp, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert p.poll() is None, f"the run ended (exit {p.returncode}) before it could be killed:\n" + \
                (tmp / f"{out.name}.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "timed out waiting for the moment to kill"
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL)
        assert p.wait(timeout=30) == -signal.SIGKILL
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
        log.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run."""
    out = tmp_path_factory.mktemp("resume") / "reference"
    run(out)
    assert markers(out) == list(range(N_SHARDS))
    s = read_json(out / "generate_stats.json")
    assert s["status"] == "complete" and s["shards_written_now"] == N_SHARDS and s["cached_samples_now"] == 0
    assert s["records"] > 0, "the tiny config produced no records at all; the comparison would be empty"
    return out


def _check_resumed(out: Path, ref: Path, done_at_kill: list[int], rows_at_kill: int, *extra: str) -> dict:
    """Rerun into ``out`` (finished shards ``done_at_kill``, ``rows_at_kill`` cache rows) and check it."""
    p = run(out, *extra)
    stats = read_json(out / "generate_stats.json")
    # finished shards were skipped, and what the killed run had cached for the others was reused
    assert stats["shards_written_now"] == N_SHARDS - len(done_at_kill)
    assert stats["cached_samples_now"] == rows_at_kill - samples_of(ref, done_at_kill)
    assert stats["shards_written_now"] < N_SHARDS or stats["cached_samples_now"] > 0
    assert f"{stats['cached_samples_now']} samples from the cache" in p.stdout
    assert_complete_and_equal(out, ref)
    return stats


def test_kill_after_some_shards_then_resume(reference, tmp_path):
    out = tmp_path / "killed"
    state: dict = {}

    def ready() -> bool:
        # kill once a shard is finished and the next one has started writing to the cache
        done = markers(out)
        if not done:
            return False
        if "rows" not in state:
            state["rows"] = cache_rows(out)
            return False
        return cache_rows(out) > state["rows"] or len(done) > 1

    kill_when(out, ready, tmp_path)
    done, rows = markers(out), cache_rows(out)
    assert 1 <= len(done) < N_SHARDS and done == list(range(len(done)))
    # a killed writer leaves no shard data without its marker that a rerun would trust
    for i in done:
        assert (out / "shards" / f"shard-{i:05d}.jsonl").is_file()
    assert read_json(out / "manifest.json")["status"] == "running"
    _check_resumed(out, reference, done, rows)


def test_kill_during_first_shard_then_resume(reference, tmp_path):
    out = tmp_path / "killed_early"
    kill_when(out, lambda: cache_rows(out) > 0, tmp_path)
    done, rows = markers(out), cache_rows(out)
    # (shard 0 could only have finished in between if its context was dropped: then it has no
    # continuations to draw, and the marker follows the context at once)
    assert rows > 0 and done in ([], [0])
    stats = _check_resumed(out, reference, done, rows)
    if not done:
        assert stats["cached_samples_now"] > 0 and stats["shards_written_now"] == N_SHARDS


def test_budget_stops_after_first_shard_then_rerun_completes(reference, tmp_path):
    out = tmp_path / "budget"
    m0 = read_json(reference / "shards" / "shard-00000.done.json")
    m1 = read_json(reference / "shards" / "shard-00001.done.json")
    # enough for shard 0, exhausted by shard 1's contexts: the check before its continuations
    # (or, when shard 1 kept no context and so needs none, before shard 2) stops the run
    limit = m0["completion_tokens_paid"] + 1
    expect_done = [0] if m1["counts"].get("contexts_kept", 0) else [0, 1]
    p = run(out, "--set", f"budget.max_completion_tokens={limit}", code=3)  # its own exit status
    assert "budget_exhausted" in p.stdout and "budget reached" in p.stdout and "exit 3" in p.stderr
    manifest = read_json(out / "manifest.json")
    assert manifest["status"] == "budget_exhausted"
    assert manifest["summary"]["shards_done"] == len(expect_done)
    assert markers(out) == expect_done
    assert sorted(f.name for f in (out / "shards").iterdir()) == sorted(
        n for i in expect_done for n in (f"shard-{i:05d}.jsonl", f"shard-{i:05d}.done.json"))
    for i in expect_done:  # finished shards are kept as they are
        assert (out / "shards" / f"shard-{i:05d}.jsonl").read_bytes() == \
            (reference / "shards" / f"shard-{i:05d}.jsonl").read_bytes()
    rows = cache_rows(out)
    stats = _check_resumed(out, reference, expect_done, rows, "--set", "budget.max_completion_tokens=1000000")
    if expect_done == [0]:
        assert stats["cached_samples_now"] > 0  # shard 1's context was paid for before the stop

