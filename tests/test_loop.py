"""`distill run`: round configs, round-2 inputs, and a real two-round run on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.config import load_config
from distill.loop import round1_inputs, round_config, run_all
from distill.record import Record
from distill.shards import ShardStore


def test_round_configs_chain_students(tmp_path):
    cfg = load_config(None, [f"output_dir={tmp_path}", "loop.rounds=3", "loop.k=3", "teacher.batch_size=4"])
    r1 = round_config(cfg, 1, None)
    assert r1.output_dir == str(tmp_path / "round-1") and r1.round == 1
    assert r1.task.name == "paraphrase_pairs" and r1.teacher.model is None and r1.train.model is None
    r2 = round_config(cfg, 2, "/students/r1/model")
    assert r2.output_dir == str(tmp_path / "round-2") and r2.round == 2
    assert r2.task.name == "paraphrase_instruct" and r2.task.k == 3
    assert r2.task.inputs == str(tmp_path / "round-2" / "inputs.jsonl")
    assert r2.task.instruction == cfg.train.instruction  # the student is asked exactly what it was trained on
    assert r2.teacher.model == "/students/r1/model" and r2.teacher.batch_size == 4
    assert r2.train.model == "/students/r1/model"  # train_from: previous
    base = load_config(None, [f"output_dir={tmp_path}", "loop.train_from=base", "train.model=/base"])
    assert round_config(base, 2, "/s1").train.model == "/base"


def test_summarization_rounds_have_the_student_summarise_round_1s_documents(tmp_path):
    cfg = load_config(None, [f"output_dir={tmp_path}", "task.name=summarize_instruct", "task.sentences=2",
                             "loop.rounds=2", "loop.k=2"])
    assert cfg.train.instruction == cfg.task.instruction  # the student learns the task's instruction
    r2 = round_config(cfg, 2, "/students/r1/model")
    assert r2.task.name == "summarize_instruct" and r2.task.k == 2 and r2.task.sentences == 2
    assert r2.task.inputs == str(tmp_path / "round-2" / "inputs.jsonl")
    assert r2.task.instruction == cfg.train.instruction and r2.teacher.model == "/students/r1/model"
    store = ShardStore(tmp_path / "round-1" / "shards")
    store.write(0, [Record(id=f"in{i}-s0", task="summarization", input=f"Document {i}. It says things.",
                           output="A summary.", metadata={"source_id": f"in{i}"}) for i in range(3)])
    assert sorted(r["text"] for r in round1_inputs(cfg)) == [f"Document {i}. It says things." for i in range(3)]


def test_round1_inputs_are_the_teachers_samples_once_each(tmp_path):
    cfg = load_config(None, [f"output_dir={tmp_path}", "loop.inputs_per_round=3"])
    store = ShardStore(tmp_path / "round-1" / "shards", "jsonl")
    samples = {"c0": ["A cat sat on the mat.", "The cat was on the mat.", "A cat rested on a mat."],
               "c1": ["Rain fell all day.", "It rained the whole day."]}
    recs = [Record(id=f"{c}-{i}-{j}", task="paraphrase", input=xs[i], output=xs[j], metadata={"context_id": c})
            for c, xs in samples.items() for i in range(len(xs)) for j in range(len(xs)) if i != j]
    store.write(0, recs[:6], {})
    store.write(1, recs[6:], {})
    rows = round1_inputs(cfg)
    assert len(rows) == 3 and len({r["text"] for r in rows}) == 3
    everything = round1_inputs(load_config(None, [f"output_dir={tmp_path}"]))
    assert sorted(r["text"] for r in everything) == sorted(x for xs in samples.values() for x in xs)
    assert {r["text"]: r["context_id"] for r in everything}["Rain fell all day."] == "c1"
    assert rows == round1_inputs(cfg)  # seeded: the same x's on every call


TINY = [
    "task.num_contexts=2", "task.k=4", "teacher.batch_size=16", "shards.items_per_shard=1",
    # permissive critics: the point here is the plumbing of two rounds, not the corpus quality
    "filter.critics=[{type: wellformed}]", "corpus.splits={train: 0.5, validation: 0.5}",
    "train.max_steps=2", "train.batch_size=4", "train.eval_steps=1", "train.save_steps=1", "train.logging_steps=1",
    "train.max_length=96",
    "loop.rounds=2", "loop.inputs_per_round=4", "loop.k=2", "loop.sampling.max_tokens=24",
    "eval.limit=3", "eval.models=[{name: copy, kind: copy}]",
]


@pytest.mark.slow
def test_two_round_run_end_to_end_and_resume(tmp_path):
    """The real CPU default model through every stage twice: round 1 pairs from the teacher,
    round 2 paraphrases from round 1's student; a rerun redoes nothing."""
    cfg = load_config(None, [f"output_dir={tmp_path}"] + TINY)
    result = run_all(cfg, progress=False)
    r1, r2 = result["rounds"]
    assert r1["generated"] > 0 and r1["kept"] > 0 and r2["generated"] > 0
    s1 = Path(r1["student"])
    assert (s1 / "config.json").is_file() and Path(r2["student"]) != s1
    assert not (s1.parent / "checkpoints").exists()  # a finished round drops its checkpoints (loop.keep_checkpoints)
    # round 2's teacher was round 1's student, and its records say round 2
    man = json.loads((tmp_path / "round-2" / "manifest.json").read_text())
    assert man["config"]["teacher"]["model"] == str(s1) and man["config"]["task"]["name"] == "paraphrase_instruct"
    rec = json.loads((tmp_path / "round-2" / "shards" / "shard-00000.jsonl").read_text().splitlines()[0])
    assert rec["round"] == 2 and rec["input"] in {r["text"] for r in map(json.loads, (
        tmp_path / "round-2" / "inputs.jsonl").read_text().splitlines())}
    names = [m["name"] for m in result["eval"]["models"]]
    assert names == ["copy", "student-round1", "student-round2"]
    md = (tmp_path / "results.md").read_text()
    assert "student-round2" in md and "| 2 |" in md
    # resume: nothing is regenerated, retrained or re-evaluated
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file() and
              p.name in ("round.done.json", "train_stats.json", "model.safetensors", "corpus_stats.json")}
    again = run_all(cfg, progress=False)
    assert all(m["cached"] for m in again["eval"]["models"])
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
