"""distill eval on the summarization task: a hand-checked table for 3 documents (lead-1, a
fake one-shot teacher, a fake student with an empty and an unfinished answer, two tiny
critics that write summary scores), ROUGE against hand-counted and rouge_score values, the
prompts (the student's equal to what distill train feeds), caching, the real default sets,
the blind G/E/U/O sheet round trip, and bad inputs as one line."""

from __future__ import annotations

import json
import re

import pytest

from distill.cli import main
from distill.config import SummarizeInstructTask, load_config
from distill.critics.base import Critic
from distill.errors import DistillError
from distill.generator.backends.base import Completion, Result
from distill.generator.tasks.summarize import INSTRUCTION, SummarizeInstruct
from distill.trainers.eval_summarize import SHEET_LABELS, read_answer
from distill.trainers.evaluate import run_eval
from fake_backend import FakeBackend

D1 = ("The council approved a new budget on Monday. It raises school funding by ten percent. "
      "Critics say taxes will rise.")
D2 = "Heavy rain flooded the river town overnight. Hundreds of residents were evacuated. No injuries were reported."
D3 = "The museum reopened after a two-year renovation. Visitors can now see the restored murals."
REFS1 = ["The council approved a budget that raises school funding.",
         "A new budget raises school funding by ten percent."]
REFS2 = "Floods forced hundreds of residents to leave a river town."
ROWS = [{"id": "d1", "text": D1, "references": REFS1}, {"id": "d2", "text": D2, "references": REFS2},
        {"id": "d3", "text": D3}]
SHOT = ["A storm hit the coast. Power was cut.", "A storm cut power on the coast."]
TEACHER = {D1: "Taxes will go up because aliens landed in the town hall yesterday evening.",
           D2: "Hundreds of residents left the river town after heavy rain flooded it overnight, and officials said "
               "that no injuries were reported.",
           D3: "The museum reopened."}
STUDENT = {D1: "The council approved a budget that raises school funding. It was on Monday.", D2: "   ",
           D3: "The museum shows restored murals and"}


def _words(text: str) -> list[str]:
    return re.sub(r"[^\w\s-]", "", text.lower()).split()


class Coverage(Critic):
    """The share of the summary's words found in the document (a stand-in for the coverage critic)."""

    name = "coverage"
    score_names = ("coverage",)

    def judge(self, record):
        ys = set(_words(record.output))
        c = record.scores["coverage"] = len(ys & set(_words(record.input))) / len(ys)
        return c >= 0.6 or (False, "coverage<0.6")


class Faith(Critic):
    """Writes an infosum score, then caps the length."""

    name = "faith"
    score_names = ("info_faithfulness",)

    def judge(self, record):
        record.scores["info_faithfulness"] = 0.9
        return len(record.output.split()) <= 12 or (False, "words>12")


class Answers(FakeBackend):
    """The answer per document: the last paragraph of the last message (or plain prompt)."""

    def __init__(self, answers: dict[str, str]) -> None:
        super().__init__(chunk_size=None)
        self.answers = answers

    def generate_requests(self, requests):
        self.calls.append(list(requests))
        texts = [r.prompt if isinstance(r.prompt, str) else r.prompt[-1]["content"] for r in requests]
        return [Result([Completion(self.answers[t.split("\n\n")[-1].strip()], 5)]) for t in texts]


@pytest.fixture
def critics(monkeypatch):
    from distill.critics import registry

    monkeypatch.setitem(registry.CRITICS, "fake_coverage", f"{__name__}:Coverage")
    monkeypatch.setitem(registry.CRITICS, "fake_faith", f"{__name__}:Faith")


def settings(tmp_path, models: list[dict], rows: list[dict] = ROWS) -> list[str]:
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = {"name": "summarize_instruct", "few_shot": [SHOT]}
    return [f"output_dir={tmp_path / 'run'}", f"task={json.dumps(task)}", f"eval.inputs={tmp_path / 'docs.jsonl'}",
            f"eval.models={json.dumps(models)}", "eval.critics=[{type: fake_coverage}, {type: fake_faith}]"]


def fake_student(tmp_path):
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "model.safetensors").write_bytes(b"v1")
    return str(tmp_path / "student")


MODELS = [{"name": "lead", "kind": "copy"}, {"name": "teacher", "few_shot": 1}, {"name": "student"}]


def models(tmp_path) -> list[dict]:
    return [*MODELS[:2], {**MODELS[2], "model": fake_student(tmp_path)}]


def factory_for(made: dict):
    def factory(spec):
        made[spec.name] = Answers(TEACHER if spec.name == "teacher" else STUDENT)
        return made[spec.name]
    return factory


@pytest.mark.parametrize("text, want", [
    ("  The vote passed. Then more.", ("The vote passed.", False)),
    ('"The vote passed."', ("The vote passed.", False)),
    ("The vote passed and the", ("The vote passed and the", True)),
    ("  \n", ("", False)),
])
def test_an_answer_is_read_as_the_generator_reads_it(text, want):
    assert read_answer(text) == want


def test_table_prompts_rouge_and_caching_hand_checked(tmp_path, critics):
    cfg = load_config(None, settings(tmp_path, models(tmp_path)))
    made: dict = {}
    res = run_eval(cfg, progress=False, backend_factory=factory_for(made))
    assert res["task"] == "summarization" and all(b.closed == 1 for b in made.values())
    assert res["inputs"]["sets"] == [{"name": "docs.jsonl", "source": str(tmp_path / "docs.jsonl"), "count": 3,
                                      "with_references": 2}]
    # the teacher: the task's own prompt with its one example; the student: zero-shot, what train fed it
    # (its folder has no tokenizer: chat messages), which is SummarizeInstruct.prompt without examples
    task = SummarizeInstruct(cfg.task, cfg.seed)
    assert [r.prompt for r in made["teacher"].calls[0]] == [task.prompt(d) for d in (D1, D2, D3)]
    bare = SummarizeInstruct(SummarizeInstructTask(), cfg.seed)
    assert cfg.train.instruction == INSTRUCTION
    assert [r.prompt for r in made["student"].calls[0]] == [bare.prompt(d) for d in (D1, D2, D3)]
    p = made["student"].calls[0][0].params
    assert (p.temperature, p.max_tokens) == (0.0, 64)  # the spec's sampling: greedy

    m = {r["name"]: r["metrics"]["docs.jsonl"] for r in res["models"]}
    lead, teacher, student = m["lead"], m["teacher"], m["student"]
    # lead-1: the first sentences (8, 7, 7 words of 20, 16, 14), all kept
    assert (lead["accepted_count"], lead["empty"], lead["unfinished"]) == (3, 0.0, 0.0)
    assert lead["mean_words"] == pytest.approx(22 / 3)
    assert lead["compression"] == pytest.approx((8 / 20 + 7 / 16 + 7 / 14) / 3)
    # ROUGE by hand (lowercased, stemmed tokens): "The council approved a new budget on Monday." shares
    # the council approv a budget (LCS 5) with reference 1 of 9 tokens: F = 10/17; bigrams 3 of 7 and 8: 6/15.
    # "Heavy rain flooded the river town overnight." shares flood river town (LCS 3) with the 10-token
    # reference: 6/17; one bigram (river town) of 6 and 9: 2/15
    assert lead["rouge"]["n"] == 2
    assert lead["rouge"]["rouge1"] == pytest.approx((10 / 17 + 6 / 17) / 2)
    assert lead["rouge"]["rouge2"] == pytest.approx((6 / 15 + 2 / 15) / 2)
    assert lead["rouge"]["rougeL"] == pytest.approx((10 / 17 + 6 / 17) / 2)
    # student: d1 repeats reference 1 exactly (1.0), d2 is empty (0.0); d3 unfinished, kept raw
    assert (student["rouge"]["rouge1"], student["rouge"]["rouge2"], student["rouge"]["rougeL"]) == (0.5, 0.5, 0.5)
    assert student["rouge"]["rougeL_ci"] == [0.0, 1.0]
    assert (student["accepted_count"], student["empty"], student["unfinished"]) == (1, 1 / 3, 1 / 3)
    assert student["reject_reasons"] == {"empty": 1, "unfinished": 1}
    assert student["mean_words"] == 7.5 and student["compression"] == pytest.approx((9 / 20 + 6 / 14) / 2)
    assert student["critic_scores"] == {"coverage": {"mean": pytest.approx(8 / 9), "n": 1},
                                        "info_faithfulness": {"mean": 0.9, "n": 1}}
    # teacher: d1 fails coverage (so faith never saw it), d2 is too long, d3 kept
    assert teacher["reject_reasons"] == {"coverage<0.6": 1, "faith:words>12": 1}
    assert teacher["accepted_ci"] == pytest.approx([0.0615, 0.7923], abs=1e-4)  # Wilson, 1 of 3
    assert teacher["critic_scores"]["coverage"]["n"] == 3 and teacher["critic_scores"]["info_faithfulness"]["n"] == 2
    # every ROUGE equals rouge_score's own multi-reference number, computed here
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for t in ("rouge1", "rouge2", "rougeL"):
        want = (scorer.score_multi(REFS1, TEACHER[D1])[t].fmeasure
                + scorer.score_multi([REFS2], TEACHER[D2])[t].fmeasure) / 2
        assert teacher["rouge"][t] == pytest.approx(want)

    md = (tmp_path / "run/eval/results.md").read_text()
    assert ("| system | role | n | accepted (eval.critics) [95% CI] | ROUGE-1 | ROUGE-2 | ROUGE-L [95% CI] | "
            "compression | mean words | empty | unfinished | distinct |") in md
    assert ("| student | student | 3 | 33.3% [6.1, 79.2] | 50.0 | 50.0 | 50.0 [0.0, 100.0] | 0.44 | 7.5 | 33.3% | "
            "33.3% | 1.00 |") in md
    assert "| lead | lead-1 | 3 | 100.0% [43.9, 100.0] | 47.1 | 26.7 | 47.1 " in md
    assert "| system | info_faithfulness (n) | coverage (n) |" in md and "| student | 0.900 (1) | 0.889 (1) |" in md
    assert "- teacher: coverage<0.6 1, faith:words>12 1" in md and "*lead-1*: the document's first sentence" in md
    items = [json.loads(x) for x in (tmp_path / "run/eval/generations/student.jsonl").read_text().splitlines()]
    assert [(it["set"], it["doc_id"], it["output"], it.get("references"), it["accepted"], it["reject_reason"])
            for it in items] == [
        ("docs.jsonl", "d1", "The council approved a budget that raises school funding.", REFS1, True, None),
        ("docs.jsonl", "d2", "", [REFS2], False, "empty"),
        ("docs.jsonl", "d3", "The museum shows restored murals and", None, False, "unfinished")]
    assert items[0]["scores"] == {"coverage": pytest.approx(8 / 9), "info_faithfulness": 0.9}
    assert items[0]["rouge"] == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    stored = json.loads((tmp_path / "run/eval/results.json").read_text())
    assert stored["models"][1]["metrics"]["docs.jsonl"] == teacher and stored["sheet_labels"] == SHEET_LABELS

    again = run_eval(cfg, progress=False, backend_factory=lambda spec: pytest.fail("generated again"))
    assert all(r["cached"] for r in again["models"])
    assert [r["metrics"] for r in again["models"]] == [r["metrics"] for r in res["models"]]
    (tmp_path / "student" / "model.safetensors").write_bytes(b"v2-retrained")  # new weights: the student only
    third = run_eval(cfg, progress=False, backend_factory=factory_for({}))
    assert [r["cached"] for r in third["models"]] == [True, True, False]


def test_default_sets_are_aclsum_with_references_and_lee_without(tmp_path):
    """The shipped pools and the summary critics for real (2 documents each): lead-1 is the first
    sentence, which the extractive critic rejects; ROUGE only on aclsum."""
    pytest.importorskip("aclsum")
    from distill.generator.seeds import read_rows
    from distill.generator.tasks.paraphrase import split_sentences

    cfg = load_config(None, [f"output_dir={tmp_path}", "task={name: summarize_pairs}", "eval.limit=2",
                             "eval.critics=[{type: coverage}, {type: extractive}]", 'eval.models=[{"name": "lead", "kind": "copy"}]'])
    res = run_eval(cfg, progress=False)
    assert [(s["name"], s["count"], s["with_references"]) for s in res["inputs"]["sets"]] == [
        ("aclsum-test", 2, 2), ("lee-docs-heldout", 2, 0)]
    m = res["models"][0]["metrics"]
    assert m["aclsum-test"]["rouge"]["n"] == 2 and m["lee-docs-heldout"]["rouge"] is None
    for name in ("aclsum-test", "lee-docs-heldout"):  # a document's own sentence: all copied
        assert m[name]["reject_reasons"] == {"extractive:extract>0.8": 2}
        assert m[name]["critic_scores"]["extract"] == {"mean": 1.0, "n": 2}
        assert m[name]["critic_scores"]["coverage"]["n"] == 2
    items = [json.loads(x) for x in (tmp_path / "eval/generations/lead.jsonl").read_text().splitlines()]
    first = read_rows("builtin:lee-docs-heldout", "text")[0]
    assert (items[2]["set"], items[2]["doc_id"]) == ("lee-docs-heldout", first["id"])
    assert items[2]["output"] == split_sentences(first["text"])[0] and "references" not in items[2]
    assert len(items[0]["references"]) == 3
    md = (tmp_path / "eval/results.md").read_text()
    assert "## aclsum-test" in md and "## lee-docs-heldout" in md and md.count("ROUGE-L [95% CI]") == 1


def test_few_shot_beyond_the_examples_is_refused(tmp_path, critics):
    cfg = load_config(None, settings(tmp_path, [{"name": "teacher", "few_shot": 2}]))
    with pytest.raises(DistillError, match=r"eval.models \(teacher\): few_shot=2, but the summarization task has 1 "
                                           r"examples \(task.few_shot\)"):
        run_eval(cfg, progress=False, backend_factory=lambda spec: Answers(TEACHER))


def test_student_prompt_without_chat_template_is_what_train_feeds(tmp_path, tok_dir, critics):
    """A student whose tokenizer has no chat template is asked PairEncoder's plain prompt."""
    from transformers import AutoTokenizer

    from distill.trainers.data import PairEncoder

    tok = AutoTokenizer.from_pretrained(tok_dir)
    tok.chat_template = None
    folder = tmp_path / "student"
    tok.save_pretrained(folder)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"v1")
    cfg = load_config(None, settings(tmp_path, [{"name": "student", "model": str(folder)}]))
    fake = Answers(STUDENT)
    run_eval(cfg, progress=False, backend_factory=lambda spec: fake)
    sent = fake.calls[0][0].prompt
    enc = PairEncoder(AutoTokenizer.from_pretrained(folder), "causal", INSTRUCTION, 1024)
    row = enc(D1, "A summary.")
    assert sent == f"{INSTRUCTION}\n\n{D1}\n"
    assert tok(sent)["input_ids"] == row["input_ids"][: row["labels"].count(-100)]


def test_sheet_round_trip_with_summary_labels(tmp_path, critics, capsys):
    sets = settings(tmp_path, models(tmp_path))
    run_eval(load_config(None, sets), progress=False, backend_factory=factory_for({}))
    cli = [x for s in sets for x in ("--set", s)]
    assert main(["eval", *cli, "--sheet", "3"]) == 0  # from results.json: nothing is generated
    out = tmp_path / "run/eval/sheet"
    key = json.loads((out / "key.json").read_text())
    assert key["labels"] == SHEET_LABELS and list(SHEET_LABELS) == ["G", "E", "U", "O"]
    readme = (out / "README.md").read_text()
    assert "- `G`: a faithful one-sentence summary" in readme and "For `U`, `kinds` may name how" in readme
    items = [json.loads(x) for x in (out / "sheet.jsonl").read_text().splitlines()]
    assert len(items) == 6 and {it["x"] for it in items} == {D1, D2, D3}  # the whole document; lead-1 left out
    verdict = {TEACHER[D1]: ("U", ["added"]), TEACHER[D2]: ("G", []), TEACHER[D3]: ("E", []),
               "The council approved a budget that raises school funding.": ("G", []), "": ("O", [])}
    for it in items:  # the student's unfinished d3 summary is left unlabelled
        if it["y"] in verdict:
            it["label"], it["kinds"] = verdict[it["y"]]
    filled = tmp_path / "filled.jsonl"
    filled.write_text("".join(json.dumps(it) + "\n" for it in items))
    capsys.readouterr()
    assert main(["eval", *cli, "--score-sheet", str(filled)]) == 0
    printed = capsys.readouterr().out
    assert "| model | judged / on sheet | G ↑ | E | U | O | U kinds |" in printed
    assert ("| teacher | 3 / 3 | 33.3% [6.1, 79.2] | 33.3% [6.1, 79.2] | 33.3% [6.1, 79.2] | 0.0% [0.0, 56.1] "
            "| added 1 |") in printed
    assert ("| student | 2 / 3 | 50.0% [9.5, 90.5] | 0.0% [0.0, 65.8] | 0.0% [0.0, 65.8] | 50.0% [9.5, 90.5] "
            "| - |") in printed
    md = (tmp_path / "run/eval/results.md").read_text()
    assert "## Human judgment" in md and "| teacher | teacher (1-shot) | 3 |" in md and "G is the keep class" in md
    items[0]["label"] = "P"
    filled.write_text("".join(json.dumps(it) + "\n" for it in items))
    assert main(["eval", *cli, "--score-sheet", str(filled)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(r"filled\.jsonl:1: label 'P' is not one of G, E, U, O", err)


def test_bad_inputs_are_one_line(tmp_path, critics, capsys):
    sets = settings(tmp_path, [{"name": "lead", "kind": "copy"}])
    (tmp_path / "docs.jsonl").unlink()
    with pytest.raises(DistillError, match=r"^eval.inputs: seed file not found: .*docs\.jsonl$"):
        run_eval(load_config(None, sets), progress=False)
    assert main(["eval", *[x for s in sets for x in ("--set", s)]]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("distill: error: eval.inputs: seed file not found")
    sets = settings(tmp_path, [{"name": "lead", "kind": "copy"}], rows=[{"text": D1, "references": [3]}])
    with pytest.raises(DistillError, match=r"^eval.inputs: .*docs\.jsonl line 1: references must be a string or a "
                                           r"list of strings$"):
        run_eval(load_config(None, sets), progress=False)


def test_the_sheet_takes_the_sets_in_turn():
    from distill.trainers.eval_summarize import interleave

    assert interleave([3, 2]) == [0, 3, 1, 4, 2]
    assert interleave([2]) == [0, 1] and interleave([]) == []
