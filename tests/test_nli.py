"""NLICritic: the decision logic with known logits; the plumbing (loading, label lookup,
batching, length sorting, directions, scores, counts) with a tiny BERT classifier that
the test builds and saves itself (no NLI model ships; nothing is downloaded)."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch

from distill.critics.nli import NLICritic, decide, entailment_index
from distill.errors import DistillError
from distill.record import Record

NLI_LABELS = {0: "entailment", 1: "neutral", 2: "contradiction"}
WORDS = ("the a cat dog sat ran on mat park in quickly slowly big small red house man woman saw "
         "it was is not and home early late rain today").split()


def save_tiny_classifier(path, id2label=NLI_LABELS, seed=0):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    if "vocab" in inspect.signature(BertTokenizer.__init__).parameters:  # transformers 5
        tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    else:  # transformers 4 reads a vocab file
        (path / "vocab.txt").parent.mkdir(parents=True, exist_ok=True)
        (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
        tok = BertTokenizer(vocab_file=str(path / "vocab.txt"))
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64, initializer_range=1.0, num_labels=len(id2label),
                     id2label=dict(id2label), label2id={v: k for k, v in id2label.items()})
    torch.manual_seed(seed)
    BertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(save_tiny_classifier(tmp_path_factory.mktemp("tiny-nli")))


PAIRS = [
    ("the cat sat on the mat", "a cat sat on a mat"),
    ("the dog ran in the park today and it was early", "a dog ran"),
    ("a man saw a woman", "the woman saw the man in the red house and it was late"),
    ("it is rain", "it was not rain today"),
    ("the big red house", "a small house"),
]


def records(pairs=PAIRS):
    return [Record(id=f"r{i}", task="paraphrase", input=x, output=y) for i, (x, y) in enumerate(pairs)]


def p_entail_direct(path, premise, hypothesis):
    """P(entailment) from one unbatched, unpadded forward pass: the reference."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForSequenceClassification.from_pretrained(path)
    with torch.inference_mode():
        logits = model(**tok(premise, hypothesis, return_tensors="pt")).logits[0]
    return torch.softmax(logits, -1)[0].item()


# --- the decision, with known logits -------------------------------------------------

def test_decide_with_known_logits():
    p2 = math.exp(2) / (math.exp(2) + 2)  # 0.787: logits (2, 0, 0), entailment first
    p1 = math.exp(1) / (math.exp(1) + 2)  # 0.576
    fwd = np.array([[2.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [0.0, 0, 0]])
    bwd = np.array([[2.0, 0, 0], [2.0, 0, 0], [1.0, 0, 0], [0.0, 0, 0]])
    probs, verdicts = decide({"nli_forward": fwd, "nli_backward": bwd}, 0,
                             {"nli_forward": 0.75, "nli_backward": 0.75})
    np.testing.assert_allclose(probs["nli_forward"], [p2, p1, p2, 1 / 3])
    np.testing.assert_allclose(probs["nli_backward"], [p2, p2, p1, 1 / 3])
    # both failing: the first direction checked is the one named
    assert verdicts == [True, (False, "nli_forward<0.75"), (False, "nli_backward<0.75"), (False, "nli_forward<0.75")]


def test_decide_reads_the_entailment_column_and_per_direction_thresholds():
    logits = np.array([[0.0, 0.0, 2.0], [2.0, 0.0, 0.0]])  # entailment is class 2 (roberta-large-mnli order)
    probs, verdicts = decide({"nli_backward": logits}, 2, {"nli_backward": 0.8})
    np.testing.assert_allclose(probs["nli_backward"], [math.exp(2) / (math.exp(2) + 2), 1 / (math.exp(2) + 2)])
    assert verdicts == [(False, "nli_backward<0.8"), (False, "nli_backward<0.8")]
    _, verdicts = decide({"nli_backward": logits}, 2, {"nli_backward": 0.5})
    assert verdicts == [True, (False, "nli_backward<0.5")]


def test_entailment_label_lookup():
    assert entailment_index({0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"}) == 2
    assert entailment_index({"0": "entailment", "1": "not_entailment"}) == 0  # RTE-style, string keys
    assert entailment_index({0: "non-entailment", 1: "Entails"}) == 1
    assert entailment_index({0: "LABEL_0", 1: "LABEL_1"}, label="label_1") == 1
    with pytest.raises(DistillError, match=r"no entailment label.*0: 'LABEL_0', 1: 'LABEL_1', 2: 'LABEL_2'"):
        entailment_index({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"})
    with pytest.raises(DistillError, match="several entailment labels"):
        entailment_index({0: "entailment", 1: "entailed"})


# --- the plumbing, with a tiny model ---------------------------------------------------

def test_scores_match_one_pair_at_a_time_and_reasons_follow_thresholds(tiny):
    fwd = [p_entail_direct(tiny, x, y) for x, y in PAIRS]
    bwd = [p_entail_direct(tiny, y, x) for x, y in PAIRS]
    # thresholds halfway between observed values, so the expected verdicts are known exactly
    sf, sb = sorted(fwd), sorted(bwd)
    min_f, min_b = (sf[1] + sf[2]) / 2, (sb[2] + sb[3]) / 2
    assert sf[2] - sf[1] > 1e-4 and sb[3] - sb[2] > 1e-4  # the random model gives distinct values
    critic = NLICritic(tiny, min_forward=min_f, min_backward=min_b, batch_size=2, records_per_call=3)
    kept = list(critic.run(records()))
    expected_reasons = []
    for f, b in zip(fwd, bwd):
        expected_reasons.append(None if f >= min_f and b >= min_b else
                                f"nli_forward<{min_f:g}" if f < min_f else f"nli_backward<{min_b:g}")
    got = {r.id: reason for r, reason in critic.drain_rejects()}
    assert got == {f"r{i}": reason for i, reason in enumerate(expected_reasons) if reason}
    assert [r.id for r in kept] == [f"r{i}" for i, reason in enumerate(expected_reasons) if not reason]
    for r in kept:
        i = int(r.id[1:])
        assert r.scores["nli_forward"] == pytest.approx(fwd[i], abs=1e-5)
        assert r.scores["nli_backward"] == pytest.approx(bwd[i], abs=1e-5)
    assert critic.counts["total"] == 5 and critic.counts["kept"] == len(kept)
    assert sum(v for k, v in critic.counts.items() if k.startswith("dropped_")) == 5 - len(kept)
    assert len(critic.score_values["nli_forward"]) == 5 and len(critic.score_values["nli_backward"]) == 5


def test_batches_are_sorted_longest_first_and_results_come_back_in_order(tiny):
    critic = NLICritic(tiny, batch_size=2)
    widths = []
    real_forward = critic.model.forward

    def spy(*args, **kw):
        widths.append(kw["input_ids"].shape[1])
        return real_forward(*args, **kw)

    critic.model.forward = spy
    premises = ["the cat", "the dog ran in the park today and it was early and late", "a man saw it", "rain"]
    hypotheses = ["a cat", "a dog", "the woman saw the man in the red house", "it was rain today"]
    logits = critic.logits(premises, hypotheses)
    assert widths == sorted(widths, reverse=True) and len(widths) == 2
    for i in range(4):  # each row is its own pair's, whatever batch it went in
        one = critic.logits([premises[i]], [hypotheses[i]])
        np.testing.assert_allclose(logits[i], one[0], atol=1e-5)


def test_directions(tiny):
    recs = records()
    fwd_only = NLICritic(tiny, direction="forward", min_forward=0.0)
    assert all(v is True for v in fwd_only.judge_batch(recs))
    assert all(set(r.scores) == {"nli_forward"} for r in recs)
    swapped = [Record(id=r.id, task=r.task, input=r.output, output=r.input) for r in recs]
    bwd_only = NLICritic(tiny, direction="backward", min_backward=1.01)
    verdicts = bwd_only.judge_batch(swapped)
    assert verdicts == [(False, "nli_backward<1.01")] * len(recs)
    for r, s in zip(recs, swapped):  # backward on (y, x) is forward on (x, y)
        assert set(s.scores) == {"nli_backward"}
        assert s.scores["nli_backward"] == pytest.approx(r.scores["nli_forward"], abs=1e-6)
    with pytest.raises(DistillError, match="direction must be one of both, forward, backward"):
        NLICritic(tiny, direction="sideways")


def test_long_pairs_are_truncated_to_max_length(tiny):
    long = " ".join(["the cat sat on the mat"] * 40)  # ~240 tokens; the model has 64 positions
    critic = NLICritic(tiny, max_length=32, min_forward=0.0, min_backward=0.0)
    [rec] = records([(long, long)])
    assert critic.judge_batch([rec]) == [True]
    assert 0.0 < rec.scores["nli_forward"] < 1.0 and 0.0 < rec.scores["nli_backward"] < 1.0


def test_model_without_entailment_label_fails_clearly(tmp_path):
    path = save_tiny_classifier(tmp_path / "sentiment", id2label={0: "negative", 1: "positive"})
    with pytest.raises(DistillError, match=r"no entailment label: its config.id2label is \{0: 'negative', 1: 'positive'\}"):
        NLICritic(str(path))


def test_missing_model_fails_clearly(tmp_path):
    with pytest.raises(DistillError, match="NLI model folder not found"):
        NLICritic(str(tmp_path / "nope"))
    with pytest.raises(DistillError, match="could not load NLI model 'no-such-org/no-such-nli-model'"):
        NLICritic("no-such-org/no-such-nli-model")


def test_a_long_premise_is_cut_from_its_end_and_the_hypothesis_kept_whole(tiny):
    """Summaries (direction forward): the document is the premise and runs past max_length; the
    tokenizer's longest_first truncation takes tokens from the longer sequence only, so the
    summary is judged whole against the document's beginning (as only_first would, as long as
    the summary is under half of max_length)."""
    critic = NLICritic(tiny, direction="forward", max_length=32, min_forward=0.0)
    seen = []
    real_forward = critic.model.forward

    def spy(*args, **kw):
        seen.append(kw["input_ids"][0].tolist())
        return real_forward(*args, **kw)

    critic.model.forward = spy
    document = "the man saw the red house " + " ".join(["the dog ran in the park"] * 20)  # ~126 tokens
    summary = "a man saw a big red house today"
    [rec] = records([(document, summary)])
    assert critic.judge_batch([rec]) == [True]
    tokens = critic.tok.convert_ids_to_tokens(seen[0])
    assert len(tokens) == 32
    sep = tokens.index("[SEP]")
    assert tokens[sep + 1:] == summary.split() + ["[SEP]"]  # the hypothesis, whole
    assert tokens[1:sep] == document.split()[: sep - 1]  # the premise's first words
