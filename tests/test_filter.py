"""`distill filter` end to end: critics per shard, global dedup, kept shards, the funnel."""

from __future__ import annotations

import json

import pytest

from distill.cli import main
from distill.config import load_config
from distill.critics.pipeline import FilterRun, run_filter
from distill.errors import ConfigError, DistillError
from distill.record import Record
from distill.shards import ShardStore

GOOD = [
    ("The city council approved the new budget on Tuesday.", "On Tuesday, the council of the city passed the new budget."),
    ("Heavy rain forced the organisers to delay the concert.", "The organisers had to postpone the concert because of heavy rain."),
    ("The company reported a sharp rise in profits this year.", "This year the firm said its profits had risen sharply."),
]


def rec(i: str, x: str, y: str, ctx: str = "c0") -> Record:
    return Record(id=i, task="paraphrase", input=x, output=y, metadata={"context_id": ctx})


@pytest.fixture
def gen_dir(tmp_path):
    """A `distill generate` output folder with two shards written by hand."""
    store = ShardStore(tmp_path / "gen" / "shards")
    shard0 = [rec("a0", *GOOD[0]), rec("a1", GOOD[0][0], GOOD[0][0]),  # copy
              rec("a2", GOOD[1][0], "Rain."),  # too short for the length window, not well-formed
              rec("a3", *GOOD[1])]
    shard1 = [rec("b0", *GOOD[2], ctx="c1"),
              rec("b1", GOOD[0][0].upper(), GOOD[0][1].upper(), ctx="c1"),  # exact dup of a0 after normalising case
              rec("b2", "Officials said the bridge will reopen next week.", "the bridge will reopen next week, officials said",
                  ctx="c1")]  # no end punctuation (and a lowercase start)
    store.write(0, shard0, {"counts": {"pairs": 4}})
    store.write(1, shard1, {"counts": {"pairs": 3}})
    (tmp_path / "gen" / "generate_stats.json").write_text(json.dumps({"counts": {"pairs": 7}}))
    return tmp_path / "gen"


def test_filter_funnel_rejects_and_kept(gen_dir):
    cfg = load_config(None, [f"output_dir={gen_dir}"])
    stats = run_filter(cfg, progress=False)
    funnel = {row["stage"]: row for row in stats["funnel"]}
    assert [row["stage"] for row in stats["funnel"]] == [
        "generated", "critic:wellformed", "critic:copy", "critic:length_ratio", "critic:lexical", "dedup:exact", "kept"]
    assert funnel["generated"]["count"] == 7
    assert funnel["critic:wellformed"]["dropped"] == {"wellformed:no_end_punct": 1, "wellformed:too_few_words": 1}
    assert funnel["critic:copy"]["dropped"] == {"copy": 1}
    assert funnel["dedup:exact"]["dropped"] == {"exact_dup": 1}
    kept = list(ShardStore(gen_dir / "filtered" / "kept").iter_records())
    assert sorted(r.id for r in kept) == ["a0", "a3", "b0"] == sorted(
        r.id for r in kept if "length_ratio" in r.scores and "rouge_l" in r.scores)
    assert funnel["kept"]["count"] == 3 and stats["generate_counts"] == {"pairs": 7}
    rejects = [json.loads(line) for p in sorted((gen_dir / "filtered" / "rejects").glob("*.jsonl"))
               for line in p.read_text().splitlines()]
    assert {(r["record"]["id"], r["stage"], r["reason"]) for r in rejects} == {
        ("a1", "copy", "copy"), ("a2", "wellformed", "wellformed:too_few_words"),
        ("b2", "wellformed", "wellformed:no_end_punct"), ("b1", "dedup:exact", "exact_dup")}
    assert next(r for r in rejects if r["record"]["id"] == "b1")["record"]["metadata"]["dup_of"] == "a0"
    assert stats["scores"]["length_ratio"]["count"] >= 3 and len(stats["scores"]["rouge_l"]["histogram"]["counts"]) == 20
    assert json.loads((gen_dir / "filtered" / "stats.json").read_text()) == stats


def test_filter_resumes_and_refuses_a_changed_config(gen_dir, monkeypatch):
    cfg = load_config(None, [f"output_dir={gen_dir}"])
    # first attempt dies after the first shard of the critic phase
    real_write = ShardStore.write
    calls = {"n": 0}

    def dying_write(self, i, records, info=None):
        if "critics" in str(self.dir) and calls["n"] == 1:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real_write(self, i, records, info)

    monkeypatch.setattr(ShardStore, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        run_filter(cfg, progress=False)
    monkeypatch.setattr(ShardStore, "write", real_write)
    assert ShardStore(gen_dir / "filtered" / "critics").done_indices() == [0]
    resumed = run_filter(cfg, progress=False)
    fresh = run_filter(load_config(None, [f"output_dir={gen_dir}", f"filter.output_dir={gen_dir / 'again'}"]),
                       progress=False)
    assert resumed["funnel"] == fresh["funnel"]
    with pytest.raises(ConfigError, match="different filter config"):
        run_filter(load_config(None, [f"output_dir={gen_dir}", "filter.critics=[{type: copy}]"]), progress=False)


def test_filter_bad_input(tmp_path, gen_dir, capsys):
    with pytest.raises(DistillError, match="no finished shards"):
        FilterRun(load_config(None, [f"output_dir={tmp_path / 'nothing'}"]))
    with pytest.raises(ConfigError, match=r"unknown critic type 'rouge'"):
        run_filter(load_config(None, [f"output_dir={gen_dir}", "filter.critics=[{type: rouge}]"]), progress=False)
    with pytest.raises(ConfigError, match=r"filter.critics\[0\] \(length_ratio\): unknown key\(s\) max"):
        run_filter(load_config(None, [f"output_dir={gen_dir}", "filter.output_dir=" + str(tmp_path / "f2"),
                                      "filter.critics=[{type: length_ratio, max: 2}]"]), progress=False)
    assert main(["filter", "-o", str(gen_dir), "--no-progress", "-s", "filter.critics=[{type: nli, model: /no/such}]",
                 "-s", f"filter.output_dir={tmp_path / 'f3'}"]) == 2
    assert "/no/such" in capsys.readouterr().err
    assert not ShardStore(tmp_path / "f3" / "critics").done_indices()
    # the fixed config may use the same output folder: the failed one claimed nothing
    assert main(["filter", "-o", str(gen_dir), "--no-progress", "-s", "filter.critics=[{type: copy}]",
                 "-s", f"filter.output_dir={tmp_path / 'f3'}"]) == 0


@pytest.mark.slow
def test_filter_with_semantic_dedup_and_embedding_critic(gen_dir):
    cfg = load_config(None, [f"output_dir={gen_dir}",
                             "filter.critics=[{type: copy}, {type: embed_similarity, min_cos: 0.5}]",
                             "filter.dedup.semantic={field: input, threshold: 0.9}",
                             "filter.dedup.rank_by=[embed_cos]"])
    stats = run_filter(cfg, progress=False)
    kept = {r.id for r in ShardStore(gen_dir / "filtered" / "kept").iter_records()}
    # a0 and a3 share inputs with a2 / each other only via exact text; b1 was the upper-cased a0 -> exact dup
    assert "b1" not in kept and "a1" not in kept
    stages = [row["stage"] for row in stats["funnel"]]
    assert stages == ["generated", "critic:copy", "critic:embed_similarity", "dedup:exact", "dedup:semantic", "kept"]
    assert (gen_dir / "filtered" / "embeddings.sqlite").is_file()
    assert stats["scores"]["embed_cos"]["count"] >= 4
