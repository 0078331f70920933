"""`distill corpus` and `distill inspect`: dataset round trip, card numbers, decontamination,
Hub upload (against a stand-in api and an unreachable endpoint), errors, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from distill.corpus.build import load_corpus, run_corpus
from distill.corpus.card import BEGIN, END, split_card
from distill.corpus.dataset import assign_splits
from distill.critics.pipeline import run_filter

from distill.cli import main
from distill.config import load_config
from distill.errors import ConfigError, DistillError
from distill.record import Record
from distill.shards import ShardStore

# pairs the default rule critics keep (distinct wording, similar length, well formed)
PAIRS = [
    ("The city council approved the new budget on Tuesday.", "On Tuesday, the council of the city passed the new budget."),
    ("Heavy rain forced the organisers to delay the concert.", "The organisers had to postpone the concert because of heavy rain."),
    ("The company reported a sharp rise in profits this year.", "This year the firm said its profits had risen sharply."),
    ("Doctors warned that the flu season could arrive early.", "Physicians cautioned that flu season might begin sooner than usual."),
    ("The museum will stay open late on Friday evenings.", "On Friday nights, the gallery will remain open until late."),
    ("Police closed the main road after the accident.", "Following the crash, officers shut down the main street."),
    ("Farmers expect a smaller harvest after the dry summer.", "After a summer without rain, growers predict a reduced crop."),
    ("The school board voted to hire more teachers next year.", "Next year more teachers will be hired, the school board decided."),
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A generate folder (two shards, 8 contexts, both directions of each pair) and its
    rules-only filter run; tests copy it so each can write its own corpus."""
    root = tmp_path_factory.mktemp("run")
    store = ShardStore(root / "shards")
    recs = []
    for c, (x, y) in enumerate(PAIRS):
        ctx = f"ctx{c:06d}"
        recs += [Record(id=f"{ctx}-000-001", task="paraphrase", input=x, output=y, teacher="fake:v1",
                        metadata={"context_id": ctx}),
                 Record(id=f"{ctx}-001-000", task="paraphrase", input=y, output=x, teacher="fake:v1",
                        metadata={"context_id": ctx})]
    recs.append(Record(id="ctx000000-000-002", task="paraphrase", input=PAIRS[0][0], output=PAIRS[0][0],
                       teacher="fake:v1", metadata={"context_id": "ctx000000"}))  # a copy: dropped by a critic
    store.write(0, recs[:8], {"counts": {"pairs": 8}})
    store.write(1, recs[8:], {"counts": {"pairs": len(recs) - 8}})
    (root / "manifest.json").write_text(json.dumps({"teacher_model_id": "fake:v1", "command": ["distill", "generate"],
                                                    "resolved_task": {"name": "paraphrase_pairs", "k": 4}}))
    (root / "generate_stats.json").write_text(json.dumps({"counts": {"pairs": len(recs)}, "prompt_tokens_paid": 1234,
                                                          "completion_tokens_paid": 567, "cost": 0.0}))
    run_filter(load_config(None, [f"output_dir={root}"]), progress=False)
    return root


@pytest.fixture
def run(run_dir, tmp_path):
    shutil.copytree(run_dir, tmp_path / "run")
    return tmp_path / "run"


def cfg_for(run: Path, *sets: str, plots: bool = False):
    """Plots cost seconds; only the tests about the card and the upload draw them."""
    return load_config(None, [f"output_dir={run}", f"corpus.plots={str(plots).lower()}", *sets])


def test_corpus_round_trips_through_load_from_disk_and_parquet(run):
    from datasets import load_from_disk

    stats = run_corpus(cfg_for(run), progress=False)
    out = run / "corpus"
    kept = {r.id: r for r in ShardStore(run / "filtered" / "kept").iter_records()}
    dd = load_from_disk(str(out / "dataset"))
    assert list(dd) == ["train", "validation", "test"] == list(load_corpus(out))
    assert sorted(i for ds in dd.values() for i in ds["id"]) == sorted(kept) and len(kept) == 16
    assert stats["rows"] == 16 and stats["funnel"][-1] == {"stage": "corpus", "count": 16, "splits": {
        s: len(ds) for s, ds in dd.items()}}
    # 8 groups at 0.8/0.1/0.1 -> 6/1/1; both directions of a pair stay in one split
    assert {s: v["groups"] for s, v in stats["splits"].items()} == {"train": 6, "validation": 1, "test": 1}
    split_of = {g: s for s, ds in dd.items() for g in ds["group"]}
    assert len(split_of) == 8 and all(len(set(ds["group"])) * 2 == len(ds) for ds in dd.values())
    row = dd["train"][0]
    r = kept[row["id"]]
    assert (row["input"], row["output"], row["teacher"], row["round"], row["group"]) == (r.input, r.output, "fake:v1", 0,
                                                                                       r.metadata["context_id"])
    assert json.loads(row["metadata"]) == r.metadata and row["scores"]["rouge_l"] == pytest.approx(r.scores["rouge_l"])
    assert dd["train"].features["scores"]["length_ratio"].dtype == "float64"
    for split, ds in dd.items():  # the Parquet files hold the same rows, with the same features
        files = sorted((out / "data").glob(f"{split}-*.parquet"))
        assert [f.name for f in files] == [f"{split}-00000-of-00001.parquet"]
        assert pq.read_table(files[0]).to_pylist() == ds.to_list()
    shutil.rmtree(out / "dataset")
    assert {s: ds.to_list() for s, ds in load_corpus(out).items()} == {s: ds.to_list() for s, ds in dd.items()}


def test_splits_are_stable_and_empty_splits_exist(run):
    from datasets import load_from_disk

    a = run_corpus(cfg_for(run), progress=False)
    again = run_corpus(cfg_for(run), progress=False)
    assert again["skipped"] and again["splits"] == a["splits"]
    b = run_corpus(cfg_for(run, f"corpus.output_dir={run / 'c2'}"), progress=False)
    assert load_from_disk(str(run / "c2" / "dataset"))["test"]["id"] == load_from_disk(str(run / "corpus" / "dataset"))[
        "test"]["id"] and b["splits"] == a["splits"]
    tiny = run_corpus(cfg_for(run, f"corpus.output_dir={run / 'c4'}", "corpus.splits={train: 20, validation: 0.5, "
                              "test: 0.5}"), progress=False)
    dd = load_from_disk(str(run / "c4" / "dataset"))
    assert tiny["splits"]["train"]["rows"] == 16 and len(dd["test"]) == 0 == len(dd["validation"])
    assert dd["test"].features == dd["train"].features


def test_assign_splits_counts_fractions_and_seed():
    groups = [f"g{i}" for i in range(10)]
    a = assign_splits(groups, {"test": 2, "train": 0.9, "validation": 0.1}, seed=0)
    assert sorted(a.values()).count("test") == 2 and list(a.values()).count("validation") == 1
    assert a == assign_splits(list(reversed(groups)), {"test": 2, "train": 0.9, "validation": 0.1}, seed=0)
    assert a != assign_splits(groups, {"test": 2, "train": 0.9, "validation": 0.1}, seed=1)
    few = assign_splits(["a", "b", "c"], {"train": 0.98, "validation": 0.01, "test": 0.01}, seed=0)
    assert sorted(few.values()) == ["test", "train", "validation"]


def test_card_header_parses_and_numbers_equal_stats(run):
    stats = run_corpus(cfg_for(run, "corpus.license=cc-by-4.0", plots=True), progress=False)
    out = run / "corpus"
    fstats = json.loads((run / "filtered" / "stats.json").read_text())
    card = (out / "README.md").read_text()
    head, body = split_card(card)
    assert head["license"] == "cc-by-4.0" and head["language"] == ["en"] and head["size_categories"] == ["n<1K"]
    assert head["task_categories"] == ["text-generation"]
    assert head["configs"] == [{"config_name": "default", "data_files": [
        {"split": s, "path": f"data/{s}-*.parquet"} for s in ("train", "validation", "test")]}]
    assert {s["name"]: s["num_examples"] for s in head["dataset_info"]["splits"]} == {
        s: v["rows"] for s, v in stats["splits"].items()}
    assert {f["name"] for f in head["dataset_info"]["features"]} == {
        "id", "task", "input", "output", "teacher", "round", "group", "scores", "metadata"}
    funnel_rows = [line for line in body.split("## Funnel")[1].split("##")[0].splitlines() if line.startswith("| `")]
    table = {line.split("|")[1].strip(" `"): int(line.split("|")[2].replace(",", "")) for line in funnel_rows}
    assert {k: v for k, v in table.items() if k != "corpus"} == {r["stage"]: r["count"] for r in fstats["funnel"]}
    assert table["generated"] == 17 and table["critic:copy"] == 16 and table["corpus"] == 16
    assert "| 1,234 | 567 | 0.0000 |" in body and "`fake:v1`" in body and "max_rouge_l=0.75" in body
    assert "Impossible Distillation for Paraphrasing" in body and "Symbolic Knowledge Distillation" in body
    for name in ("funnel", "lengths", "scores"):
        assert f"(plots/{name}.png)" in body and (out / "plots" / f"{name}.png").stat().st_size > 5000
    assert "corpus:" in (out / "config.yaml").read_text() and "## Reproduce" in body
    # a person's notes outside the markers survive a rebuild
    (out / "README.md").write_text(card.replace(END, END + "\n\n## Our notes\nKeep me.\n"))
    run_corpus(cfg_for(run, "corpus.license=cc-by-4.0", "corpus.examples_per_split=1", plots=True), progress=False)
    again = (out / "README.md").read_text()
    assert "## Our notes\nKeep me." in again and again.count(BEGIN) == 1


def test_decontamination_removes_exactly_the_planted_duplicates(run):
    evals = run / "evals"
    evals.mkdir()
    (evals / "a.txt").write_text("  THE COMPANY reported a sharp rise in profits this year  \nAn unrelated sentence.\n")
    (evals / "b.jsonl").write_text(json.dumps({"text": "Police closed the main road after the accident!"}) + "\n")
    # near duplicate: one word changed in an output
    (evals / "c.jsonl").write_text(json.dumps({"sentence": "After a summer without rain, growers predict a smaller crop."})
                                   + "\n" + json.dumps("Bananas are yellow and curved.") + "\n")
    stats = run_corpus(cfg_for(run, "corpus.decontaminate={eval_sets: [%s, %s, %s], threshold: 0.9}" % (
        evals / "a.txt", evals / "b.jsonl", evals / "c.jsonl")), progress=False)
    planted = {PAIRS[2][0], PAIRS[5][0], PAIRS[6][1]}
    expected = {f"ctx{c:06d}-{d}" for c in (2, 5, 6) for d in ("000-001", "001-000")}
    assert all(x in planted or y in planted for c in (2, 5, 6) for x, y in [PAIRS[c]])
    dd = load_corpus(run / "corpus")
    assert not expected & {i for ds in dd.values() for i in ds["id"]} and stats["rows"] == 16 - 6
    row = next(r for r in stats["funnel"] if r["stage"] == "decontaminate")
    assert row == {"stage": "decontaminate", "count": 10, "dropped": {"exact": 4, "near": 2}}
    dropped = [json.loads(line) for line in (run / "corpus" / "decontaminated.jsonl").read_text().splitlines()]
    assert {d["id"] for d in dropped} == expected
    assert {d["reason"] for d in dropped if d["id"].startswith("ctx000006")} == {"near"}
    assert "dropped 4 exact and 2 near" in (run / "corpus" / "README.md").read_text()


def test_exact_only_decontamination_loads_no_encoder(run, monkeypatch):
    from distill.critics import embed

    monkeypatch.setattr(embed, "Encoder", None)  # any use would fail
    (run / "ev.txt").write_text(PAIRS[0][1].lower() + "\n")
    stats = run_corpus(cfg_for(run, "corpus.decontaminate={eval_sets: [%s], threshold: null}" % (run / "ev.txt")),
                       progress=False)
    assert stats["funnel"][-2] == {"stage": "decontaminate", "count": 14, "dropped": {"exact": 2, "near": 0}}


class FakeApi:
    """Stands in for huggingface_hub.HfApi: records each call, serves an existing card."""

    def __init__(self, card: str | None, files: list[str], tmp: Path) -> None:
        self.calls: list[tuple] = []
        self.card, self.files, self.tmp = card, files, tmp

    def create_repo(self, repo, **kw):
        self.calls.append(("create_repo", repo, kw))
        return f"https://hub.example/datasets/{repo}"

    def hf_hub_download(self, repo, filename, **kw):
        self.calls.append(("hf_hub_download", repo, filename, kw))
        if self.card is None:
            from huggingface_hub.errors import RemoteEntryNotFoundError

            try:  # huggingface_hub 2.x speaks httpx2; older releases httpx
                import httpx2 as httpx
            except ImportError:
                import httpx

            raise RemoteEntryNotFoundError("404", response=httpx.Response(404, request=httpx.Request("GET", "http://x")))
        (self.tmp / "README.md").write_text(self.card)
        return str(self.tmp / "README.md")

    def list_repo_files(self, repo, **kw):
        self.calls.append(("list_repo_files", repo, kw))
        return self.files

    def create_commit(self, repo, operations, **kw):
        self.calls.append(("create_commit", repo, list(operations), kw))


def test_push_keeps_user_sections_and_deletes_stale_shards(run, tmp_path):
    from distill.corpus.hub import push
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    cfg = cfg_for(run, plots=True)
    run_corpus(cfg, progress=False)
    existing = ("---\nlicense: mit\nextra_gated_prompt: be nice\n---\n\n# My dataset\n\nHand-written intro.\n\n"
                f"{BEGIN}\nold generated text\n{END}\n\n## Limitations\nWritten by a person.\n")
    api = FakeApi(existing, ["README.md", "data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet",
                             "notes.txt"], tmp_path)
    url = push(run / "corpus", "me/paraphrases", cfg.corpus.hub, api=api)
    assert url == "https://hub.example/datasets/me/paraphrases"
    assert [c[0] for c in api.calls] == ["create_repo", "hf_hub_download", "list_repo_files", "create_commit"]
    assert api.calls[0][2] == {"repo_type": "dataset", "private": True, "exist_ok": True}
    ops = api.calls[3][2]
    adds = {op.path_in_repo: op for op in ops if isinstance(op, CommitOperationAdd)}
    assert sorted(adds) == sorted(["README.md", "corpus_stats.json", "config.yaml", "plots/funnel.png",
                                   "plots/lengths.png", "plots/scores.png"] + [
        f"data/{s}-00000-of-00001.parquet" for s in ("train", "validation", "test")])
    assert {op.path_in_repo for op in ops if isinstance(op, CommitOperationDelete)} == {
        "data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"}
    card = adds["README.md"].path_or_fileobj.read().decode() if hasattr(adds["README.md"].path_or_fileobj, "read") \
        else adds["README.md"].path_or_fileobj.decode()
    head, body = split_card(card)
    assert head["extra_gated_prompt"] == "be nice" and head["license"] == "unknown" and "configs" in head
    assert body.startswith("# My dataset\n\nHand-written intro.") and "## Limitations\nWritten by a person." in body
    assert "old generated text" not in body and "## Funnel" in body and body.count(BEGIN) == 1
    # a first push (no card yet) uploads the local card as it is
    api2 = FakeApi(None, [], tmp_path)
    push(run / "corpus", "me/new", cfg.corpus.hub.model_copy(update={"private": False}), api=api2)
    assert api2.calls[0][2]["private"] is False


def test_push_unreachable_is_a_clear_error_and_keeps_the_corpus(run, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN_TEST", "hf_fake")
    sets = ["corpus.hub.endpoint=http://127.0.0.1:9", "corpus.hub.token_env=HF_TOKEN_TEST"]
    from distill.corpus.hub import make_api

    assert make_api(cfg_for(run, *sets).corpus.hub).token == "hf_fake"
    run_corpus(cfg_for(run, *sets), progress=False)
    before = (run / "corpus" / "corpus_stats.json").read_bytes()
    with pytest.raises(DistillError, match=r"could not upload the corpus to the Hub repo 'me/x'.*local corpus in .* is "
                                           r"complete"):
        run_corpus(cfg_for(run, *sets), progress=False, push_to_hub="me/x")
    assert (run / "corpus" / "corpus_stats.json").read_bytes() == before
    assert len(load_corpus(run / "corpus")["train"]) > 0
    assert main(["corpus", "-o", str(run), "--no-progress", "--push-to-hub", "me/x", *sum((["-s", s] for s in sets), [])]) == 2
    assert "rerun the same command with --push-to-hub me/x" in capsys.readouterr().err


def test_errors_name_the_fix(tmp_path, run):
    with pytest.raises(DistillError, match="run `distill filter` first"):
        run_corpus(cfg_for(tmp_path / "nothing"), progress=False)
    with pytest.raises(DistillError, match="eval set not found"):
        run_corpus(cfg_for(run, "corpus.decontaminate={eval_sets: [%s]}" % (tmp_path / "no.txt")), progress=False)
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DistillError, match="could not read eval set"):
        run_corpus(cfg_for(run, "corpus.decontaminate={eval_sets: [%s]}" % (tmp_path / "bad.parquet")), progress=False)
    with pytest.raises(ConfigError, match="fractions sum to 0.9"):
        cfg_for(run, "corpus.splits={train: 0.8, test: 0.1}")
    for p in (run / "filtered" / "kept").glob("*.done.json"):
        p.unlink()
    with pytest.raises(DistillError, match="no kept shards"):
        run_corpus(cfg_for(run), progress=False)
    assert not (run / "corpus" / "corpus_stats.json").exists()


def test_inspect_and_cli(run, capsys):
    assert main(["corpus", "-o", str(run), "--no-progress", "-s", "corpus.plots=false"]) == 0
    assert "train: 12 rows / 6 groups" in capsys.readouterr().out
    assert main(["inspect", str(run / "corpus"), "-n", "2"]) == 0
    text = capsys.readouterr().out
    assert "train" in text and "critic:copy" in text and "-- train: 2 of 12 --" in text and "  x: " in text
    assert main(["corpus", "-o", str(run), "--no-progress", "-s", "corpus.plots=false"]) == 0
    assert "up to date" in capsys.readouterr().out
