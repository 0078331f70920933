"""distill eval on the commonsense task: a hand-checked table for 2 events x 2 relations
(a fake teacher with one unparsable answer, a fake student, the copy floor, two tiny
critics), the teacher's and the student's prompts (the latter equal to what distill train
feeds, on SmolLM2's real tokenizer), caching, the blind A/R sheet round trip, and a missing
inputs file as one line."""

from __future__ import annotations

import json
import re

import pytest

from distill.cli import main
from distill.config import load_config
from distill.critics.base import Critic
from distill.errors import DistillError
from distill.generator.backends.base import Completion, Result
from distill.generator.tasks.commonsense import Commonsense, parse_input
from distill.trainers.evaluate import run_eval
from fake_backend import FakeBackend

EVENTS = ["PersonX paints the fence", "PersonX loses the keys"]
INSTRUCTION = "Write the commonsense inference."
TEACHER = {EVENTS[0]: '{"xIntent": "to make it nice", "xReact": "proud"}', EVENTS[1]: "Sure! Here is the JSON"}
STUDENT = {f"{EVENTS[0]} | xIntent": "to make the fence new", f"{EVENTS[0]} | xReact": "  ",
           f"{EVENTS[1]} | xIntent": "proud", f"{EVENTS[1]} | xReact": "proud"}


class ToForm(Critic):
    """xIntent inferences start with "to"."""

    name = "to_form"

    def judge(self, record):
        return parse_input(record.input)[1] != "xIntent" or record.output.startswith("to ") or (False, "no_to")


class WordCap(Critic):
    name = "word_cap"

    def judge(self, record):
        return len(record.output.split()) <= 4 or (False, "n_words>4")


class Answers(FakeBackend):
    """The teacher's answer per event (its prompt ends "Event: <event>"), the student's per
    "<event> | <relation>" (the last paragraph of its message or plain prompt)."""

    supports_json_schema = True

    def __init__(self, answers: dict[str, str]) -> None:
        super().__init__(chunk_size=None)
        self.answers = answers

    def generate_requests(self, requests):
        self.calls.append(list(requests))
        texts = [r.prompt if isinstance(r.prompt, str) else r.prompt[-1]["content"] for r in requests]
        keys = [t.rsplit("Event: ", 1)[1] if "Event: " in t else t.split("\n\n")[-1] for t in texts]
        return [Result([Completion(self.answers[k.strip()], 5)]) for k in keys]


@pytest.fixture
def critics(monkeypatch):
    from distill.critics import registry

    monkeypatch.setitem(registry.CRITICS, "to_form", f"{__name__}:ToForm")
    monkeypatch.setitem(registry.CRITICS, "word_cap", f"{__name__}:WordCap")


def settings(tmp_path, models: list[dict]) -> list[str]:
    (tmp_path / "events.txt").write_text("\n".join(e + "." for e in EVENTS) + "\n")  # the period is dropped
    return [f"output_dir={tmp_path / 'run'}", "task={name: commonsense, relations: [xIntent, xReact]}",
            f"train.instruction={INSTRUCTION}", f"eval.inputs={tmp_path / 'events.txt'}",
            f"eval.models={json.dumps(models)}", "eval.critics=[{type: to_form}, {type: word_cap}]"]


def fake_student(tmp_path):
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "model.safetensors").write_bytes(b"v1")
    return str(tmp_path / "student")


def test_table_prompts_and_caching_hand_checked(tmp_path, critics):
    models = [{"name": "copy", "kind": "copy"}, {"name": "teacher", "few_shot": 3},
              {"name": "student", "model": fake_student(tmp_path)}]
    cfg = load_config(None, settings(tmp_path, models))
    made = {}

    def factory(spec):
        made[spec.name] = Answers(TEACHER if spec.name == "teacher" else STUDENT)
        return made[spec.name]

    res = run_eval(cfg, progress=False, backend_factory=factory)
    assert res["task"] == "commonsense" and res["inputs"]["count"] == 4 and all(b.closed == 1 for b in made.values())
    # the teacher: the task's own prompt once per event, its schema and max_tokens, greedy
    task = Commonsense(cfg.task, cfg.seed)
    reqs = made["teacher"].calls[0]
    assert [r.prompt for r in reqs] == [task.prompt(e) for e in EVENTS]
    assert reqs[0].params.json_schema == task._params().json_schema and reqs[0].params.max_tokens == 96
    assert reqs[0].params.temperature == 0.0
    # the student: one chat message per (event, relation) (its folder holds no tokenizer)
    assert [r.prompt for r in made["student"].calls[0]] == [
        [{"role": "user", "content": f"{INSTRUCTION}\n\n{e} | {rel}"}] for e in EVENTS for rel in ("xIntent", "xReact")]

    m = {r["name"]: r["metrics"] for r in res["models"]}
    # teacher: event 1 kept twice; event 2's output is no JSON: both its relations unparsed
    assert (m["teacher"]["accepted_count"], m["teacher"]["empty"], m["teacher"]["unparsed"]) == (2, 0.5, 0.5)
    assert m["teacher"]["reject_reasons"] == {"unparsed": 2}
    assert m["teacher"]["accepted_ci"] == pytest.approx([0.1500, 0.8500], abs=1e-4)  # Wilson, 2 of 4
    # student: 5 words, empty, "proud" as an intent, kept
    assert m["student"]["reject_reasons"] == {"word_cap:n_words>4": 1, "empty": 1, "to_form:no_to": 1}
    assert m["student"]["per_relation"] == {"xIntent": {"n": 2, "accepted": 0.0}, "xReact": {"n": 2, "accepted": 0.5}}
    assert m["student"]["distinct"] == pytest.approx(2 / 3) and m["student"]["mean_words"] == pytest.approx(7 / 3)
    # copy: the event as every inference; only its xReact items pass these two critics
    assert (m["copy"]["accepted"], m["copy"]["distinct"], m["copy"]["mean_words"]) == (0.5, 0.5, 4.0)

    md = (tmp_path / "run/eval/results.md").read_text()
    assert ("| system | role | n | accepted (eval.critics) [95% CI] | xIntent | xReact | empty | unparsed | distinct "
            "| mean words |") in md
    assert "| copy | copy | 4 | 50.0% [15.0, 85.0] | 0.0% | 100.0% | 0.0% | 0.0% | 0.50 | 4.0 |" in md
    assert "| teacher | teacher (3-shot) | 4 | 50.0% [15.0, 85.0] | 50.0% | 50.0% | 50.0% | 50.0% | 1.00 | 2.5 |" in md
    assert "| student | student | 4 | 25.0% [4.6, 69.9] | 0.0% | 50.0% | 25.0% | 0.0% | 0.67 | 2.3 |" in md
    items = [json.loads(x) for x in (tmp_path / "run/eval/generations/student.jsonl").read_text().splitlines()]
    assert [(it["input"], it["output"], it["accepted"]) for it in items] == [
        (f"{EVENTS[0]} | xIntent", "to make the fence new", False), (f"{EVENTS[0]} | xReact", "", False),
        (f"{EVENTS[1]} | xIntent", "proud", False), (f"{EVENTS[1]} | xReact", "proud", True)]
    assert json.loads((tmp_path / "run/eval/results.json").read_text())["models"][1]["metrics"] == m["teacher"]

    again = run_eval(cfg, progress=False, backend_factory=lambda spec: pytest.fail("generated again"))
    assert all(r["cached"] for r in again["models"]) and [r["metrics"] for r in again["models"]] == list(m.values())
    (tmp_path / "student" / "model.safetensors").write_bytes(b"v2-retrained")  # new weights: the student only
    third = run_eval(cfg, progress=False, backend_factory=factory)
    assert [r["cached"] for r in third["models"]] == [True, True, False]


def test_teacher_few_shot_beyond_the_examples_is_refused(tmp_path, critics):
    cfg = load_config(None, settings(tmp_path, [{"name": "teacher", "few_shot": 4}]))
    with pytest.raises(DistillError, match=r"eval.models \(teacher\): few_shot=4, but the commonsense task has 3 "
                                           r"examples \(task.few_shot\)"):
        run_eval(cfg, progress=False, backend_factory=lambda spec: Answers(TEACHER))


@pytest.mark.parametrize("chat", [True, False])
def test_student_prompt_is_what_train_feeds(tmp_path, tok_dir, chat, critics):
    """The request the student gets, rendered as the transformers backend renders it, is
    the prompt part of PairEncoder's training example for that record."""
    from transformers import AutoTokenizer

    from distill.trainers.data import PairEncoder

    tok = AutoTokenizer.from_pretrained(tok_dir)
    if not chat:
        tok.chat_template = None
    folder = tmp_path / "student"
    tok.save_pretrained(folder)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"v1")
    cfg = load_config(None, settings(tmp_path, [{"name": "student", "model": str(folder)}]))
    fake = Answers(STUDENT)
    run_eval(cfg, progress=False, backend_factory=lambda spec: fake)
    sent = fake.calls[0][0].prompt
    x = f"{EVENTS[0]} | xIntent"
    enc = PairEncoder(AutoTokenizer.from_pretrained(folder), "causal", INSTRUCTION, 256)
    row = enc(x, "to make it nice")
    trained_prompt = row["input_ids"][: row["labels"].count(-100)]
    if chat:
        assert isinstance(sent, list)
        served = tok(tok.apply_chat_template(sent, add_generation_prompt=True, tokenize=False),
                     add_special_tokens=False)["input_ids"]
    else:
        assert sent == f"{INSTRUCTION}\n\n{x}\n"
        served = tok(sent)["input_ids"]
    assert served == trained_prompt


def test_sheet_round_trip_with_accept_reject_labels(tmp_path, critics, capsys):
    from distill.trainers.eval_commonsense import SHEET_LABELS

    models = [{"name": "copy", "kind": "copy"}, {"name": "teacher", "few_shot": 3},
              {"name": "student", "model": fake_student(tmp_path)}]
    sets = settings(tmp_path, models)
    cfg = load_config(None, sets)
    run_eval(cfg, progress=False, backend_factory=lambda spec: Answers(TEACHER if spec.name == "teacher" else STUDENT))
    cli = [x for s in sets for x in ("--set", s)]
    assert main(["eval", *cli, "--sheet", "4"]) == 0  # from results.json: nothing is generated
    out = tmp_path / "run/eval/sheet"
    key = json.loads((out / "key.json").read_text())
    assert key["labels"] == SHEET_LABELS
    assert "- `A`: a plausible inference" in (out / "README.md").read_text()
    items = [json.loads(x) for x in (out / "sheet.jsonl").read_text().splitlines()]
    assert all(set(key["items"][it["id"]]["systems"]) <= {"teacher", "student"} for it in items)  # copy left out
    assert len(items) == 8  # 4 items x 2 systems: no two outputs of one item agree
    for it in items:  # a person: an inference that answers its relation; the student's first one left unlabelled
        event, rel = parse_input(it["x"])
        if it["y"] != "to make the fence new":
            it["label"] = "A" if it["y"] and (rel != "xIntent" or it["y"].startswith("to ")) else "R"
    filled = tmp_path / "filled.jsonl"
    filled.write_text("".join(json.dumps(it) + "\n" for it in items))
    capsys.readouterr()
    assert main(["eval", *cli, "--score-sheet", str(filled)]) == 0
    printed = capsys.readouterr().out
    assert "| model | judged / on sheet | A ↑ | R |" in printed
    assert "| teacher | 4 / 4 | 50.0% [15.0, 85.0] | 50.0% [15.0, 85.0] |" in printed
    assert "| student | 3 / 4 | 33.3% [6.1, 79.2] | 66.7% [20.8, 93.9] |" in printed
    md = (tmp_path / "run/eval/results.md").read_text()
    assert "## Human judgment" in md and "| teacher | teacher (3-shot) |" in md  # the commonsense table kept
    items[0]["label"] = "P"
    filled.write_text("".join(json.dumps(it) + "\n" for it in items))
    assert main(["eval", *cli, "--score-sheet", str(filled)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(r"filled\.jsonl:1: label 'P' is not one of A, R", err)


def test_missing_inputs_file_is_one_line(tmp_path, critics, capsys):
    sets = settings(tmp_path, [{"name": "copy", "kind": "copy"}])
    (tmp_path / "events.txt").unlink()
    with pytest.raises(DistillError, match=r"^eval.inputs: seed file not found: .*events\.txt$"):
        run_eval(load_config(None, sets), progress=False)
    assert main(["eval", *[x for s in sets for x in ("--set", s)]]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("distill: error: eval.inputs: seed file not found")


@pytest.mark.slow
def test_real_default_model_as_teacher_and_student_on_one_event(tmp_path):
    """SmolLM2-135M through the transformers backend: the teacher's schema-constrained JSON
    parses; the untrained model asked as a student answers something."""
    models = [{"name": "teacher", "few_shot": 1},
              {"name": "base", "sampling": {"max_tokens": 16, "temperature": 0.0}}]
    cfg = load_config(None, [f"output_dir={tmp_path}", "task={name: commonsense, relations: [xIntent, xReact]}",
                             "eval.limit=1", "eval.critics=[]", f"eval.models={json.dumps(models)}"])
    res = run_eval(cfg, progress=False)
    m = {r["name"]: r["metrics"] for r in res["models"]}
    assert m["teacher"]["n"] == 2 and m["teacher"]["unparsed"] == 0 and m["teacher"]["empty"] == 0
    assert m["base"]["empty"] < 1


def test_sheet_counts_the_kinds_of_a_commonsense_reject(tmp_path):
    """A/R sheets take the R kinds of data/commonsense/LABELS.md (not the paraphrase M kinds)."""
    from distill.errors import DistillError
    from distill.trainers.sheet import score_sheet

    key = {"labels": {"A": "accept", "R": "reject"}, "systems": {"t": "f1", "s": "f2"},
           "items": {"1": {"systems": ["t"]}, "2": {"systems": ["s"]}, "3": {"systems": ["t", "s"]}}}
    sheet = tmp_path / "sheet.jsonl"
    rows = [{"id": "1", "label": "R", "kinds": ["implausible"]}, {"id": "2", "label": "A", "kinds": []},
            {"id": "3", "label": "R", "kinds": ["wrong_relation"]}]
    sheet.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = score_sheet(sheet, key)["systems"]
    assert got["t"]["counts"] == {"A": 0, "R": 2} and got["s"]["counts"] == {"A": 1, "R": 1}
    assert got["t"]["m_kinds"] == {"implausible": 1, "wrong_relation": 1}
    rows[0]["kinds"] = ["negation"]
    sheet.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DistillError, match="kind 'negation' is not one of wrong_relation"):
        score_sheet(sheet, key)
