"""distill eval: metrics against hand-computed values, the held-out sample, the copy
baseline end to end, the model path with a fake backend (prompts, release, caching), and
the real default model on a few inputs (slow)."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

from distill.config import RunConfig, load_config
from distill.data.heldout import lee_documents, load_few_shot, load_heldout, split_sentences
from distill.trainers import metrics as M
from distill.trainers.evaluate import run_eval
from fake_backend import FakeBackend

X = "the cat sat on the mat"


# ---- metrics: hand-computed ------------------------------------------------------------

def test_bleu_hand_computed():
    # y = "the cat sat on a mat": matches 5/6, 3/5, 2/4, 1/3, equal lengths (BP = 1)
    assert M.bleu(X, "the cat sat on a mat") == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)
    # y = "the cat ran on the mat": 5/6, 3/5, 1/4 and no 4-gram match; exp smoothing counts
    # the first zero order as 1 / (2 * 3 four-grams)
    assert M.bleu(X, "the cat ran on the mat") == pytest.approx((5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25)
    # effective order: y has no 3- or 4-grams, so only orders 1-2 count; BP = exp(1 - 3/2)
    assert M.bleu("the cat sat", "the cat") == pytest.approx(math.exp(-0.5))
    assert M.bleu(X, X) == pytest.approx(1.0)
    assert M.bleu(X, "") == 0.0


def test_rouge_l_hand_computed():
    assert M.rouge_l(X, "the cat sat on a mat") == pytest.approx(5 / 6)  # LCS 5 of 6 and 6
    assert M.rouge_l(X, "on the mat the cat sat") == pytest.approx(0.5)  # LCS 3 of 6 and 6
    assert M.rouge_l("The cat, sat.", "the cat sat") == pytest.approx(1.0)  # lowercased, punctuation dropped
    assert M.rouge_l(X, "dogs bark") == 0.0


def test_bertscore_on_constructed_vectors():
    p, r, f = M.bertscore(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 0.0]]))
    # y's one token matches x's first (cos 1); x's second token's best match is 0
    assert (p, r, f) == pytest.approx((1.0, 0.5, 2 / 3))
    # rows are normalised first: x = [1,0], [1,1]/sqrt2; y = [0,1]
    p, r, f = M.bertscore(np.array([[2.0, 0.0], [1.0, 1.0]]), np.array([[0.0, 3.0]]))
    s = 1 / math.sqrt(2)
    assert (p, r) == pytest.approx((s, s / 2))
    assert f == pytest.approx(2 * s * (s / 2) / (s + s / 2)) and f == pytest.approx(math.sqrt(2) / 3)
    assert M.bertscore(np.zeros((0, 2)), np.ones((1, 2))) == (0.0, 0.0, 0.0)


def test_bert_ibleu_formula():
    assert M.bert_ibleu(0.9, 0.5) == pytest.approx(1 / ((4 / 0.9 + 1 / 0.5) / 5))  # 0.775862
    assert M.bert_ibleu(0.9, 0.5) == pytest.approx(0.775862, abs=1e-6)
    assert M.bert_ibleu(0.5, 0.5) == pytest.approx(0.5)  # equal terms: the mean is that value
    assert M.bert_ibleu(1.0, 0.0) == pytest.approx(1.0)
    assert M.bert_ibleu(0.95, 1.0) == 0.0  # a copy
    assert M.bert_ibleu(0.0, 0.2) == 0.0
    assert M.bert_ibleu(0.8, 0.2, beta=1) == pytest.approx(0.8)


def test_copy_length_and_degenerate():
    assert M.is_copy("The cat sat.", "the cat  sat") and not M.is_copy(X, "the cat sat on a mat")
    assert M.is_near_copy("The cat sat on the mat.", "The cat sat on a mat.")  # one word swapped
    assert not M.is_near_copy("The storm closed the schools.", "Schools were shut by the storm.")
    assert M.length_ratio("one two three four", "one two") == 0.5
    assert M.degenerate("A b c.", "") == "empty"
    assert M.degenerate("He said no.", "No, no, no, no, no, no, no, no.") == "repetition"
    assert M.degenerate("The cat sat.", 'The sentence is rephrased to: "A cat sat."') == "wrapper"
    assert M.degenerate("The cat sat.", "A cat was sitting there.") is None


def test_token_embeddings_drop_special_tokens(encoder):
    text = "The storm closed three schools."
    (emb,) = M.token_embeddings(encoder.model, [text])
    assert emb.shape == (len(encoder.model.tokenizer(text, add_special_tokens=False)["input_ids"]), encoder.dim)
    assert M.bertscore(emb, emb) == pytest.approx((1.0, 1.0, 1.0))
    assert M.token_embeddings(encoder.model, [""])[0].shape[0] == 0


# ---- held-out inputs ---------------------------------------------------------------------

def test_heldout_sample_is_fixed(tmp_path):
    h = load_heldout()
    assert len(h) == 150 and h == load_heldout() and load_heldout(limit=5) == h[:5]
    assert h[1] == "Darren Cahill started officially coaching Lleyton Hewitt in 1999."
    assert all(8 <= len(s.split()) <= 30 for s in h) and len(set(h)) == 150
    from distill.data.heldout import make_ids

    make_ids.main(["--out", str(tmp_path / "ids.txt")])  # the script reproduces the committed file
    committed = Path(make_ids.__file__).with_name("lee_background_ids.txt").read_text()
    assert (tmp_path / "ids.txt").read_text() == committed
    all_sentences = {s for d in lee_documents() for s in split_sentences(d)}
    assert not {a for a, _ in load_few_shot()} & all_sentences  # few-shot examples are not news sentences


def test_sentence_splitter():
    assert split_sentences('Mr. Smith went home. He said "yes." Then U.S. officials left! Why?') == [
        "Mr. Smith went home.", 'He said "yes."', "Then U.S. officials left!", "Why?"]


# ---- end to end ----------------------------------------------------------------------------

def _cfg(tmp_path, inputs, models) -> RunConfig:
    f = tmp_path / "inputs.txt"
    f.write_text("\n".join(inputs) + "\n")
    return load_config(None, [f"output_dir={tmp_path / 'run'}", f"eval.inputs={f}",
                              f"eval.models={json.dumps(models)}"])


def test_copy_baseline_end_to_end(tmp_path):
    inputs = ["The storm closed three schools in the town on Monday.", "Officials said the bridge would reopen.",
              "The team won its first match of the season."]
    res = run_eval(_cfg(tmp_path, inputs, [{"name": "copy", "kind": "copy"}]), progress=False)
    out = tmp_path / "run" / "eval"
    m = json.loads((out / "results.json").read_text())["models"][0]["metrics"]
    assert m["n"] == 3 and m == res["models"][0]["metrics"]
    for k, v in {"bert_ibleu": 0, "bertscore_f1": 1, "cosine": 1, "bleu": 1, "one_minus_bleu": 0, "rouge_l": 1,
                 "length_ratio": 1, "accepted": 0, "copy": 1, "near_copy": 1, "degenerate": 0, "empty": 0}.items():
        assert m[k] == pytest.approx(v, abs=1e-5), k
    assert m["reject_reasons"] == {"copy": 3}
    md = (out / "results.md").read_text()
    assert "| copy | 3 | 0.000 | 1.000 | 1.000 | 0.000 | 1.000 | 1.00 | 0.0% | 100.0% | 100.0% | 0.0% | 0.0% |" in md
    assert "no idf weighting, no baseline rescaling" in md
    assert [json.loads(line)["output"] for line in (out / "generations" / "copy.jsonl").read_text().splitlines()] == inputs
    assert (out / "metrics.png").stat().st_size > 0


class MapBackend(FakeBackend):
    """Answers each input (the last line of the last user message) from a fixed map."""

    def __init__(self, answers: dict[str, str]) -> None:
        super().__init__(chunk_size=None)
        self.answers = answers

    def generate_requests(self, requests):
        from distill.generator.backends.base import Completion, Result

        self.calls.append(list(requests))
        return [Result([Completion(self.answers[r.prompt[-1]["content"].split("\n\n")[-1]], 5)]) for r in requests]


def test_model_path_with_fake_backend_and_caching(tmp_path):
    answers = {"The storm closed three schools in the town on Monday.": '"On Monday, three schools in the town were '
                                                                         'shut by the storm."',
               "Officials said the bridge would reopen next week.": "Officials said the bridge would reopen next week.",
               "The team won its first match of the season.": "",
               "Farmers are worried about the dry winter.": "Yes, yes, yes, yes, yes, yes, yes."}
    student = tmp_path / "student"
    student.mkdir()
    (student / "model.safetensors").write_bytes(b"v1")
    models = [{"name": "student", "model": str(student)}, {"name": "fs", "model": str(student), "few_shot": 2}]
    cfg = _cfg(tmp_path, list(answers), models)
    made: list[MapBackend] = []

    def factory(spec):
        made.append(MapBackend(answers))
        return made[-1]

    res = run_eval(cfg, progress=False, backend_factory=factory)
    assert len(made) == 2 and all(b.closed == 1 for b in made)  # one at a time, each released
    zero, few = made[0].calls[0][0].prompt, made[1].calls[0][0].prompt
    assert len(zero) == 1 and zero[0]["content"].startswith("Paraphrase the following sentence.")
    assert len(few) == 5 and few[1]["content"] == load_few_shot()[0][1]  # 2 examples, then the input
    m = res["models"][0]["metrics"]
    # accepted: only the first (quotes stripped by clean_answer); copy: the second;
    # degenerate: the empty third and the looping fourth
    assert (m["accepted"], m["copy"], m["degenerate"], m["empty"]) == (0.25, 0.25, 0.5, 0.25)
    assert m["degenerate_reasons"] == {"empty": 1, "repetition": 1}
    assert m["reject_reasons"] == {"copy": 1, "wellformed:empty": 1, "wellformed:repetition": 1}
    items = [json.loads(x) for x in (tmp_path / "run/eval/generations/student.jsonl").read_text().splitlines()]
    assert items[0]["output"].startswith("On Monday") and items[0]["bert_ibleu"] > 0 and items[2]["bert_ibleu"] == 0
    assert not any(r["cached"] for r in res["models"])

    again = run_eval(cfg, progress=False, backend_factory=factory)  # everything reused: no model is built
    assert len(made) == 2 and all(r["cached"] for r in again["models"])
    assert [r["metrics"] for r in again["models"]] == [r["metrics"] for r in res["models"]]

    (student / "model.safetensors").write_bytes(b"v2-retrained")  # new weights in the same folder
    third = run_eval(cfg, progress=False, models=[models[0]], backend_factory=factory)
    assert len(made) == 3 and made[2].calls and not third["models"][0]["cached"]
    assert len(list((tmp_path / "run/eval/models").glob("student-*.json"))) == 2


@pytest.mark.slow
def test_real_default_model_on_five_inputs(tmp_path):
    cfg = load_config(None, [f"output_dir={tmp_path}", "eval.limit=5"])
    cfg.eval.models = cfg.eval.models[:2]  # copy and SmolLM2 zero-shot
    res = run_eval(cfg, progress=False)
    row = res["models"][1]
    assert row["name"] == "smollm2-zero-shot" and row["metrics"]["n"] == 5
    items = [json.loads(x) for x in (tmp_path / "eval/generations/smollm2-zero-shot.jsonl").read_text().splitlines()]
    assert sum(bool(it["output"]) for it in items) >= 3  # the real model answers
    assert 0 < row["metrics"]["bertscore_f1"] <= 1 and 0 <= row["metrics"]["bert_ibleu"] <= 1
    t0 = time.perf_counter()
    again = run_eval(cfg, progress=False)
    assert all(r["cached"] for r in again["models"]) and time.perf_counter() - t0 < 30


def test_a_critic_both_eval_chains_name_is_built_once_and_judges_each_pair_once(monkeypatch):
    # eval.critics and eval.meaning_critics both name `entities` (as the examples do with the
    # filter's entities and likelihood): one instance serves both chains, and a pair it judged
    # for the first chain is not judged again for the second; verdicts are the same as unshared.
    from distill.config import CriticSpec
    from distill.critics import registry
    from distill.critics.base import Critic
    from distill.record import Record
    from distill.trainers import evaluate as E

    built, judged = [], []

    class Counting(Critic):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def judge_batch(self, records):
            judged.extend((self.name, r.output) for r in records)
            return [True if self.name not in r.output else (False, f"has_{self.name}") for r in records]

    monkeypatch.setattr(registry, "build_critic",
                        lambda type_, kwargs, where, teacher, encoder: built.append(where) or Counting(type_))
    main = [CriticSpec(type="copy"), CriticSpec(type="entities")]
    meaning = [CriticSpec(type="entities"), CriticSpec(type="copy", extra=1)]  # not main's copy: its own
    shared = dict.fromkeys({E._spec_key(c) for c in main} & {E._spec_key(c) for c in meaning})
    chain = E.build_critics(RunConfig(), main, "eval.critics", None, shared)
    mchain = E.build_critics(RunConfig(), meaning, "eval.meaning_critics", None, shared)
    assert built == ["eval.critics[0]", "eval.critics[1]", "eval.meaning_critics[1]"]
    assert chain[1] is mchain[0] and isinstance(chain[1], E.SharedCritic) and not isinstance(chain[0], E.SharedCritic)
    outs = ["fine", "a copy here", "entities changed", "fine too"]

    def records():
        return [Record(id=str(i), task="paraphrase", input="x", output=y) for i, y in enumerate(outs)]

    assert E.judge_records(chain, records()) == ({"0", "3"}, {"1": "copy:has_copy", "2": "entities:has_entities"})
    assert E.judge_records(mchain, records()) == ({"0", "3"}, {"1": "copy:has_copy", "2": "entities:has_entities"})
    # the shared entities judged the three pairs copy kept, then, for the meaning chain, only the new one
    assert [o for n, o in judged if n == "entities"] == ["fine", "entities changed", "fine too", "a copy here"]
    assert [o for n, o in judged if n == "copy"] == outs + ["fine", "a copy here", "fine too"]
