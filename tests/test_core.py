"""Record, config, cache, shards and the cached/budgeted teacher: fast plumbing tests."""

from __future__ import annotations

import json

import pytest

from distill.generator.cache import RequestCache
from distill.config import RunConfig, load_config
from distill.errors import BudgetExhausted, ConfigError, DistillError
from distill.generator.backends.base import Request, SamplingParams, apply_stop, sample_seed
from distill.generator.seeds import read_rows
from distill.generator.tasks.paraphrase import split_sentences
from distill.generator.teacher import Budget, Teacher
from distill.record import Record
from distill.shards import ShardStore
from fake_backend import FakeBackend

P = SamplingParams(max_tokens=8, temperature=0.7, top_p=0.9, seed=3)


def test_record_roundtrip_and_rejects_unknown_fields():
    r = Record(id="a", task="paraphrase", input="x", output="y", scores={"nli": 0.9}, metadata={"c": 1})
    assert Record.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    with pytest.raises(ValueError, match="unknown field"):
        Record.from_dict({**r.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="missing"):
        Record.from_dict({"id": "a"})


def test_config_yaml_overrides_and_errors(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("seed: 7\nteacher:\n  batch_size: 4\ntask:\n  num_contexts: 3\n")
    cfg = load_config(f, ["teacher.batch_size=9", "task.k=5", "budget.max_completion_tokens=100"])
    assert (cfg.seed, cfg.teacher.batch_size, cfg.task.k, cfg.task.num_contexts) == (7, 9, 5, 3)
    assert cfg.budget.max_completion_tokens == 100
    f.write_text("teacher:\n  batch_sise: 4\n")
    with pytest.raises(ConfigError, match=r"run\.yaml[\s\S]*teacher\.batch_sise: unknown key"):
        load_config(f)
    f.write_text("teacher:\n  batch_size: many\n")
    with pytest.raises(ConfigError, match=r"teacher\.batch_size: Input should be a valid integer"):
        load_config(f)
    with pytest.raises(ConfigError, match="greater than 0"):
        load_config(None, ["budget.max_completion_tokens=0"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["teacher.batch_size"])
    f.write_text("task: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)
    assert isinstance(load_config(None), RunConfig)


def test_apply_stop_and_seeds():
    assert apply_stop("He left. Then", (". ", "\n"), include_stop=True) == ("He left. ", True)
    assert apply_stop("He left. Then", (". ", "\n"), include_stop=False) == ("He left", True)
    assert apply_stop("no stop here", (". ",), include_stop=True) == ("no stop here", False)
    assert sample_seed("p", P, 0) == sample_seed("p", P, 0) != sample_seed("p", P, 1)
    assert split_sentences("Paris (AFP) -- It rained. Then it stopped! Really? yes") == [
        "Paris (AFP) -- It rained.", "Then it stopped!", "Really? yes"]


def test_read_rows_names_the_bad_line(tmp_path):
    f = tmp_path / "in.jsonl"
    f.write_text('{"text": "fine"}\n\n{"text": "ok"\n')
    with pytest.raises(DistillError, match=r"line 3: invalid JSON"):
        read_rows(f, "text")
    f.write_text('{"text": "fine"}\n{"body": "x"}\n')
    with pytest.raises(DistillError, match=r"line 2: no field 'text' \(fields: body\)"):
        read_rows(f, "text")
    f.write_text("")
    with pytest.raises(DistillError, match="no inputs"):
        read_rows(f, "text")
    t = tmp_path / "in.txt"
    t.write_text("one\n\n two \n")
    assert [r["text"] for r in read_rows(t, "text")] == ["one", "two"]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_shards_roundtrip_and_markers(tmp_path, fmt):
    store = ShardStore(tmp_path, fmt)
    recs = [Record(id=f"r{i}", task="t", input="x", output="y", metadata={"k": [i]}) for i in range(3)]
    assert not store.is_done(0)
    store.write(0, recs, {"counts": {"pairs": 3}})
    store.write(2, [], {})
    assert store.done_indices() == [0, 2] and store.is_done(0) and not store.is_done(1)
    assert store.read(0) == recs and list(store.iter_records()) == recs
    assert store.marker(0)["records"] == 3
    assert not list(tmp_path.glob(".*tmp*"))
    # a data file without its marker is not a finished shard
    store.data_path(1).write_text("")
    assert not store.is_done(1) and store.done_indices() == [0, 2]


def test_teacher_caches_every_sample_and_resumes_partial(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    fake = FakeBackend(chunk_size=2)
    t = Teacher(fake, cache)
    first = t.generate(["a", "b", "c"], 3, P)
    assert [len(x) for x in first] == [3, 3, 3] and len(fake.calls) == 2  # chunks of 2 requests
    assert t.usage.samples == 9 and t.usage.completion_tokens == 54 and len(cache) == 9
    # a new process: everything comes from the cache, the backend is not called
    fake2 = FakeBackend()
    t2 = Teacher(fake2, RequestCache(tmp_path / "c.sqlite"))
    assert t2.generate(["a", "b", "c"], 3, P) == first and fake2.calls == [] and t2.cached_samples == 9
    # asking for more samples pays only for the missing indices
    more = t2.generate(["a"], 5, P)
    assert more[0][:3] == first[0] and [r.indices for r in fake2.calls[0]] == [(3, 4)]
    assert t2.ledger == (4, 66)  # prompts billed once per request (3 + 1 follow-up); 11 samples x 6 tokens


def test_budget_stops_before_overspending_and_keeps_paid_work(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    t = Teacher(FakeBackend(chunk_size=1), cache, Budget(max_completion_tokens=20))
    with pytest.raises(BudgetExhausted, match="max_completion_tokens=20"):
        t.generate(["a", "b", "c", "d", "e"], 2, P)
    assert len(cache) == 4  # two requests x 2 samples x 6 tokens = 24 >= 20: stopped, both kept
    cost = Budget(max_cost=0.001, price_completion=100.0)
    assert cost.cost(0, 10) == pytest.approx(0.001)
    with pytest.raises(BudgetExhausted, match="max_cost"):
        cost.check(0, 10)


def test_request_needs_indices():
    with pytest.raises(ValueError):
        Request("p", P, ())
    assert Request("p", P, (4,)).n == 5


def test_partial_sections_keep_their_own_defaults(tmp_path):
    cfg = load_config(None, ["task.continuation.max_tokens=24", "teacher.vllm.max_num_seqs=3"])
    assert (cfg.task.continuation.max_tokens, cfg.task.continuation.temperature, cfg.task.continuation.top_p) == (24, 0.7, 0.9)
    assert cfg.task.context.temperature == 1.0 and cfg.teacher.vllm.gpu_memory_utilization == 0.9
    f = tmp_path / "t.yaml"
    f.write_text("task:\n  name: template\n  inputs: in.txt\n  prompt: 'Summarize: {text}'\n  sampling:\n    max_tokens: 9\n")
    t = load_config(f).task
    assert t.name == "template" and t.sampling.max_tokens == 9


def test_importing_the_package_stays_light():
    import subprocess
    import sys

    code = ("import sys, distill, distill.config, distill.runner, distill.cli, distill.generator.backends, "
            "distill.generator.tasks, distill.generator.teacher, distill.critics, distill.trainers; "
            "heavy = [m for m in ('torch', 'transformers', 'vllm', 'openai', 'datasets') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    import subprocess
    import sys

    from distill.shards import remove_stale_temps

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".shard-00001.done.json.tmp-{int(dead.stdout)}"
    live = tmp_path / f".shard-00002.jsonl.tmp-{__import__('os').getpid()}"
    stale.write_text("{")
    live.write_text("{")
    assert remove_stale_temps(tmp_path, tmp_path / "missing") == 1
    assert not stale.exists() and live.exists()
