"""`distill generate` end to end on the CPU default model: the Impossible-Distillation
pair generator, instruction mode and user templates, through the real runner."""

from __future__ import annotations

import json
from itertools import groupby

import pytest

from conftest import require_vllm

from distill.config import load_config
from distill.runner import run_generate
from distill.shards import ShardStore

TINY = ["task.num_contexts=3", "task.k=6", "task.context.max_tokens=48", "task.continuation.max_tokens=32",
        "shards.items_per_shard=2", "teacher.batch_size=12"]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_paraphrase_pairs_end_to_end(tmp_path, fmt):
    cfg = load_config(None, TINY + [f"output_dir={tmp_path}", f"shards.format={fmt}"])
    s = run_generate(cfg, progress=False)
    assert s.status == "complete" and s.shards_done == s.shards_total == 2
    recs = list(ShardStore(tmp_path / "shards", fmt).iter_records())
    assert len(recs) == s.records == s.counts["pairs"] and len({r.id for r in recs}) == len(recs)
    assert s.counts["contexts"] == 3 and s.counts["continuations"] == 3 * 6 - 6 * s.counts.get(
        "contexts_dropped_too_few_sentences", 0)
    by_ctx = {k: list(g) for k, g in groupby(recs, key=lambda r: r.metadata["context_id"])}
    kept = 0
    for ctx, rs in by_ctx.items():
        sents = {r.input for r in rs}
        kept += len(sents)
        assert len(rs) == len(sents) * (len(sents) - 1)  # all ordered pairs of distinct continuations
        for r in rs:
            assert r.input != r.output and r.input.endswith((".", "?", "!")) and r.output.endswith((".", "?", "!"))
            assert r.task == "paraphrase" and r.teacher.startswith("transformers:")
            assert r.metadata["context"].startswith(r.metadata["dateline"])
    # every kept continuation is in a pair, except in a context that kept only one
    assert kept <= s.counts["continuations_kept"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["resolved_task"]["k"] == 6
    assert manifest["versions"]["torch"] and s.completion_tokens_paid > 0
    # a rerun has nothing to do and pays nothing
    again = run_generate(cfg, progress=False)
    assert again.shards_written_now == 0 and again.completion_tokens_paid == s.completion_tokens_paid


@pytest.mark.slow
def test_instruction_and_template_tasks(tmp_path):
    seeds = tmp_path / "in.jsonl"
    seeds.write_text('{"text": "The museum will stay open late on Fridays.", "topic": "culture"}\n'
                     '{"text": "Heavy rain postponed the concert.", "topic": "weather"}\n')
    cfg = load_config(None, [f"output_dir={tmp_path / 'instr'}", "task.name=paraphrase_instruct",
                             f"task.inputs={seeds}", "task.k=2", "task.sampling.max_tokens=32",
                             'task.few_shot=[["It is cold today.", "Today the weather is cold."]]'])
    s = run_generate(cfg, progress=False)
    recs = list(ShardStore(tmp_path / "instr" / "shards").iter_records())
    assert s.status == "complete" and len(recs) == 4 - s.counts.get("samples_dropped_empty", 0)
    assert {r.input for r in recs} <= {"The museum will stay open late on Fridays.", "Heavy rain postponed the concert."}
    cfg = load_config(None, [f"output_dir={tmp_path / 'tmpl'}", "task.name=template", f"task.inputs={seeds}",
                             "task.prompt=Write a short headline about {topic}: {text}", "task.task_name=headline",
                             "task.sampling.max_tokens=16"])
    run_generate(cfg, progress=False)
    recs = list(ShardStore(tmp_path / "tmpl" / "shards").iter_records())
    assert recs and all(r.task == "headline" and "about culture" in r.metadata["prompt"] or "about weather"
                        in r.metadata["prompt"] for r in recs)


def test_rerun_with_a_different_config_is_refused(tmp_path):
    from distill.errors import ConfigError
    from fake_backend import FakeBackend

    cfg = load_config(None, [f"output_dir={tmp_path}", "task.num_contexts=2", "task.k=3"])
    run_generate(cfg, backend=FakeBackend(), progress=False)
    with pytest.raises(ConfigError, match="different config.*task"):
        run_generate(load_config(None, [f"output_dir={tmp_path}", "task.num_contexts=2", "task.k=4"]),
                     backend=FakeBackend(), progress=False)
    # budget and batch size are not part of what is generated: changing them is fine
    run_generate(load_config(None, [f"output_dir={tmp_path}", "task.num_contexts=2", "task.k=3",
                                    "teacher.batch_size=3", "budget.max_completion_tokens=10000"]),
                 backend=FakeBackend(), progress=False)


@pytest.mark.slow
@pytest.mark.vllm
def test_generate_with_the_vllm_backend_cli(tmp_path):
    """The real vLLM engine (CPU build here) through `distill generate`, in its own process
    as a user runs it."""
    import os
    import subprocess
    import sys

    require_vllm()
    args = [sys.executable, "-m", "distill.cli", "generate", "-o", str(tmp_path), "--no-progress",
            "-s", "task.num_contexts=2", "-s", "task.k=4", "-s", "task.continuation.max_tokens=32",
            "-s", "teacher.backend=vllm", "-s", "teacher.vllm.enforce_eager=true",
            "-s", "teacher.vllm.max_model_len=1024", "-s", "teacher.vllm.max_num_seqs=8"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    stats = json.loads((tmp_path / "generate_stats.json").read_text())
    assert stats["status"] == "complete" and stats["counts"]["continuations"] > 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["teacher_model_id"].startswith("vllm:") and manifest["versions"].get("vllm")
    recs = list(ShardStore(tmp_path / "shards").iter_records())
    assert len(recs) == stats["counts"]["pairs"] and all(r.teacher.startswith("vllm:") for r in recs)
