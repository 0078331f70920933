"""Bad input gives a clear error (``distill generate`` exits 2 with a message naming the
problem, no traceback) and leaves nothing half-done behind: no shard data without its
marker, no temporary files, no half-written JSON. Errors raised mid-run (an unreachable
teacher endpoint, a full disk) keep finished shards, and a rerun resumes."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import distill.generator.backends as backends
from distill import cli
from distill.generator.backends.base import Backend, Completion, Result

try:
    from fault_server import FaultServer
except ImportError:  # tests/ is a package
    from tests.fault_server import FaultServer


def run_cli(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distill.cli", "generate", *args, "--no-progress"],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


def assert_clean_error(p: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 2, one ``distill: error:`` message holding every word, no traceback."""
    assert p.returncode == 2, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr[-3000:]}"
    err = p.stderr
    assert "distill: error:" in err and "Traceback" not in err, err
    msg = err[err.index("distill: error:"):]
    for w in words:
        assert w in msg, f"{w!r} not in the error message:\n{msg}"
    return msg


def assert_no_garbage(out: Path) -> None:
    """Nothing a rerun (or a reader) could mistake for finished work."""
    if not out.exists():
        return
    names = [p.name for p in out.rglob("*")]
    assert not [n for n in names if ".tmp-" in n], f"temporary files left: {names}"
    shards = out / "shards"
    if shards.is_dir():
        for data in shards.glob("shard-*.jsonl"):
            assert data.with_name(data.name.replace(".jsonl", ".done.json")).is_file(), \
                f"{data.name} has no completion marker"
    for j in out.rglob("*.json"):
        json.loads(j.read_text())  # never half-written


def files_in(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) if out.exists() else []


# ---- config ------------------------------------------------------------------------

@pytest.mark.parametrize("text, key", [
    ("teacher:\n  batch_size: 8\n  bogus: 1\n", "teacher.bogus"),
    ("task:\n  name: paraphrase_pairs\n  num_context: 3\n", "task.num_context"),
    ("outptu_dir: x\n", "outptu_dir"),
])
def test_unknown_key_names_the_key_and_the_file(tmp_path, text, key):
    cfg = tmp_path / "my-run.yaml"
    cfg.write_text(text)
    out = tmp_path / "out"
    assert_clean_error(run_cli(tmp_path, str(cfg), "-o", str(out)), key, "unknown key", str(cfg))
    assert not out.exists()


def test_unknown_key_from_set_is_named(tmp_path):
    out = tmp_path / "out"
    assert_clean_error(run_cli(tmp_path, "--set", "teacher.batchsize=4", "-o", str(out)),
                       "teacher.batchsize", "unknown key", "--set")
    assert not out.exists()


def test_wrong_type_names_key_expected_type_and_value(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("teacher:\n  batch_size: many\nshards:\n  format: csv\n")
    out = tmp_path / "out"
    msg = assert_clean_error(run_cli(tmp_path, str(cfg), "-o", str(out)),
                             str(cfg), "teacher.batch_size", "integer", "'many'", "shards.format", "'csv'")
    assert "jsonl" in msg and "parquet" in msg  # says what is allowed
    assert not out.exists()


def test_malformed_yaml_names_the_file_and_the_line(tmp_path):
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("teacher:\n  batch_size: [8\nshards:\n  items_per_shard: 2\n")
    out = tmp_path / "out"
    assert_clean_error(run_cli(tmp_path, str(cfg), "-o", str(out)), str(cfg), "not valid YAML", "line")
    assert not out.exists()


def test_config_that_is_not_a_mapping(tmp_path):
    cfg = tmp_path / "list.yaml"
    cfg.write_text("- teacher\n- shards\n")
    assert_clean_error(run_cli(tmp_path, str(cfg)), str(cfg), "mapping")


def test_missing_config_file(tmp_path):
    out = tmp_path / "out"
    assert_clean_error(run_cli(tmp_path, str(tmp_path / "nope.yaml"), "-o", str(out)),
                       "config file not found", "nope.yaml")
    assert not out.exists()


@pytest.mark.parametrize("override, words", [
    ("budget.max_completion_tokens=0", ["budget.max_completion_tokens", "greater than 0"]),
    ("budget.max_completion_tokens=-5", ["budget.max_completion_tokens", "greater than 0"]),
    ("task.k=1", ["task.k", "greater than 1"]),
    ("shards.items_per_shard=0", ["shards.items_per_shard", "greater than 0"]),
])
def test_out_of_range_values_are_rejected_by_the_config(tmp_path, override, words):
    out = tmp_path / "out"
    assert_clean_error(run_cli(tmp_path, "--set", override, "-o", str(out)), *words)
    assert not out.exists()


def test_teacher_model_missing_path(tmp_path):
    out = tmp_path / "out"
    missing = tmp_path / "models" / "no-such-model"
    assert_clean_error(run_cli(tmp_path, "--set", f"teacher.model={missing}", "-o", str(out)),
                       "teacher.model", str(missing))
    assert_no_garbage(out)
    # nothing but the (empty) request cache: no manifest, no shards
    assert files_in(out) in ([], ["cache.sqlite"])


# ---- seed files --------------------------------------------------------------------

INSTRUCT = ["--set", "task.name=paraphrase_instruct"]


@pytest.mark.parametrize("name, text, words", [
    ("broken.jsonl", '{"text": "The cat sat on the mat."}\n{"text": "oops\n{"text": "fine"}\n',
     ["broken.jsonl", "line 2", "invalid JSON"]),
    ("nofield.jsonl", '{"text": "The cat sat on the mat."}\n\n{"sentence": "x"}\n',
     ["nofield.jsonl", "line 3", "no field 'text'", "sentence"]),
    ("emptyfield.jsonl", '{"text": "A sentence."}\n{"text": "   "}\n', ["emptyfield.jsonl", "line 2", "empty"]),
    ("notobject.jsonl", '["a", "b"]\n', ["notobject.jsonl", "line 1", "JSON object"]),
    ("empty.jsonl", "", ["empty.jsonl", "no inputs"]),
    ("blank.txt", "\n   \n\n", ["blank.txt", "no inputs"]),
])
def test_bad_seed_file_names_the_problem(tmp_path, name, text, words):
    seeds = tmp_path / name
    seeds.write_text(text)
    out = tmp_path / "out"
    assert_clean_error(run_cli(tmp_path, *INSTRUCT, "--set", f"task.inputs={seeds}", "-o", str(out)), *words)
    assert files_in(out) == []  # seeds are read before anything is written


def test_missing_seed_file(tmp_path):
    out = tmp_path / "out"
    assert_clean_error(run_cli(tmp_path, *INSTRUCT, "--set", f"task.inputs={tmp_path / 'gone.jsonl'}", "-o", str(out)),
                       "seed file not found", "gone.jsonl")
    assert files_in(out) == []


def test_seed_file_field_option_is_used_in_the_message(tmp_path):
    seeds = tmp_path / "s.jsonl"
    seeds.write_text('{"sentence": "The cat sat on the mat."}\n')
    out = tmp_path / "out"
    assert_clean_error(run_cli(tmp_path, *INSTRUCT, "--set", f"task.inputs={seeds}", "--set", "task.field=src",
                               "-o", str(out)), "line 1", "no field 'src'")


# ---- the teacher endpoint fails mid-run ---------------------------------------------

def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shard_state(out: Path) -> tuple[list[str], list[str]]:
    shards = out / "shards"
    return (sorted(p.name for p in shards.glob("shard-*.jsonl")) if shards.is_dir() else [],
            sorted(p.name for p in shards.glob("shard-*.done.json")) if shards.is_dir() else [])


def test_unreachable_endpoint_fails_clearly_and_a_rerun_resumes(tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("The council voted to expand the bus network.\nHeavy rain postponed the concert.\n"
                     "Profits rose by twelve percent.\n")
    out = tmp_path / "out"
    dead = f"http://127.0.0.1:{closed_port()}/v1"

    def gen(url: str) -> subprocess.CompletedProcess:
        return run_cli(tmp_path, *INSTRUCT, "--set", f"task.inputs={seeds}", "--set", "task.k=2",
                       "--set", "shards.items_per_shard=2", "--set", "teacher.backend=openai",
                       "--set", "teacher.model=x", "--set", f"teacher.openai.base_url={url}",
                       "--set", "teacher.openai.mode=chat", "--set", "teacher.openai.max_retries=1",
                       "--set", "teacher.openai.timeout=5", "-o", str(out))

    assert_clean_error(gen(dead), dead, "failed 2 times", "connection", "rerun")
    assert shard_state(out) == ([], [])
    assert_no_garbage(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and dead in manifest["error"]

    with FaultServer() as server:
        # the endpoint answers shard 0 (one request per input, n=2), then fails for good
        server.script("ok", "ok")
        server.default_fault = "500"
        assert_clean_error(gen(server.url), server.url, "HTTP 500")
        assert shard_state(out) == (["shard-00000.jsonl"], ["shard-00000.done.json"])
        assert_no_garbage(out)
        shard0 = (out / "shards" / "shard-00000.jsonl").read_bytes()
        served = server.count

        server.default_fault = None
        p = gen(server.url)
        assert p.returncode == 0, p.stderr
        assert server.count == served + 1  # only shard 1's one input was asked for
        assert {path for path, _ in server.requests} == {"/v1/chat/completions"}
    assert shard_state(out) == (["shard-00000.jsonl", "shard-00001.jsonl"],
                                ["shard-00000.done.json", "shard-00001.done.json"])
    assert (out / "shards" / "shard-00000.jsonl").read_bytes() == shard0
    stats = json.loads((out / "generate_stats.json").read_text())
    assert (stats["status"], stats["shards_written_now"], stats["records"]) == ("complete", 1, 6)
    recs = [json.loads(line) for f in sorted((out / "shards").glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert len({r["id"] for r in recs}) == 6
    assert all(r["output"].startswith("chat:") for r in recs)
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    assert_no_garbage(out)


# ---- disk full ---------------------------------------------------------------------

class FakeBackend(Backend):
    """Deterministic text, no model: for plumbing tests."""

    name = "fake"
    chunk_size = 2

    def __init__(self) -> None:
        self.samples = 0

    @property
    def model_id(self) -> str:
        return "fake-teacher"

    def generate_requests(self, requests):
        out = []
        for r in requests:
            x = r.prompt[-1]["content"].splitlines()[-1] if isinstance(r.prompt, list) else r.prompt
            out.append(Result([Completion(f"In other words ({i}): {x}", 7) for i in r.indices], prompt_tokens=11))
            self.samples += len(r.indices)
        return out


@pytest.fixture
def fake_teacher(monkeypatch):
    made: list[FakeBackend] = []

    def make(cfg):
        made.append(FakeBackend())
        return made[-1]

    monkeypatch.setattr(backends, "make_backend", make)
    return made


def generate_inprocess(seeds: Path, out: Path) -> int:
    return cli.main(["generate", *INSTRUCT, "--set", f"task.inputs={seeds}", "--set", "task.k=3",
                     "--set", "shards.items_per_shard=2", "-o", str(out), "--no-progress"])


def enospc_on(monkeypatch, fragment: str) -> None:
    """Every fsync of a file whose name holds ``fragment`` fails with 'No space left on device'."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if fragment in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("target", ["shard-00001.jsonl", "shard-00001.done.json", "manifest.json", "config.yaml"])
def test_disk_full_keeps_finished_shards_and_a_rerun_resumes(tmp_path, monkeypatch, capsys, fake_teacher, target):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("".join(f"Sentence number {i} is here.\n" for i in range(5)))  # 3 shards
    ref = tmp_path / "ref"
    assert generate_inprocess(seeds, ref) == 0

    out = tmp_path / "out"
    with monkeypatch.context() as m:
        enospc_on(m, target)
        assert generate_inprocess(seeds, out) == 2
    err = capsys.readouterr().err
    assert "distill: error: disk full while writing" in err and target in err and "rerun" in err, err
    assert_no_garbage(out)
    data, done = shard_state(out)
    early = target in ("manifest.json", "config.yaml")  # written before any shard
    if early:
        assert (data, done) == ([], []) and not (out / "config.yaml").exists()
    else:
        assert (data, done) == (["shard-00000.jsonl"], ["shard-00000.done.json"])
        assert (out / "shards" / "shard-00000.jsonl").read_bytes() == (ref / "shards" / "shard-00000.jsonl").read_bytes()

    # space is back: the rerun writes only what is missing, reusing shard 1's cached samples
    assert generate_inprocess(seeds, out) == 0
    stats = json.loads((out / "generate_stats.json").read_text())
    assert stats["status"] == "complete" and stats["shards_done"] == 3
    if early:
        assert stats["shards_written_now"] == 3 and fake_teacher[-1].samples == 5 * 3
    else:
        assert stats["shards_written_now"] == 2
        assert stats["cached_samples_now"] == 2 * 3  # shard 1: 2 inputs x k=3, paid for before the failure
        assert fake_teacher[-1].samples == 1 * 3  # only shard 2 was generated
    for i in range(3):
        name = f"shard-{i:05d}.jsonl"
        assert (out / "shards" / name).read_bytes() == (ref / "shards" / name).read_bytes()
    assert_no_garbage(out)
