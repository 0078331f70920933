"""Critics state their own thresholds: what each rule critic lists, and that a record is
kept exactly when every stated bound holds on the scores it wrote (so the card's "kept
when" column and the plots' dashed lines say what the critic really does)."""

from __future__ import annotations

import operator

import pytest

from distill.critics.base import Critic, threshold_dicts
from distill.critics.lm_judge import LMJudgeCritic
from distill.critics.rules import (CopyCritic, Compression, LengthRatio, LexicalDissimilarity, NegationFlip,
                                   NumberConsistency, WellFormed)
from distill.record import Record
from fake_backend import FakeBackend

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}

PAIRS = [
    ("The storm closed three schools on Monday.", "On Monday, three schools were shut by the storm."),
    ("The storm closed three schools on Monday.", "The storm closed three schools on Monday."),
    ("The storm closed three schools on Monday.", "The storm closed four schools on Monday."),
    ("The storm closed three schools on Monday.", "The storm closed schools."),
    ("The storm closed three schools on Monday.", "The storm did not close three schools on Monday, officials said."),
    ("The storm closed three schools on Monday.", "Monday: storm, schools, three, closed, and then a very long tail."),
    ("He never said he would not come back.", "He never said he would come back."),
    ("The bridge will reopen next week.", "next week the bridge reopens"),
    ("Prices rose by 5 percent.", "Prices went up by five per cent."),
]


def test_base_states_none_and_ops_are_checked():
    class Odd(Critic):
        def thresholds(self):
            return [("s", "==", 1.0)]

    assert Critic().thresholds() == []
    with pytest.raises(ValueError, match="threshold op '==' is not one of >=, >, <=, <"):
        threshold_dicts(Odd())


def test_rule_critics_state_their_settings():
    assert LengthRatio().thresholds() == [("length_ratio", ">=", 0.8), ("length_ratio", "<=", 1.5)]
    assert LengthRatio(min_ratio=None, max_ratio=2.0).thresholds() == [("length_ratio", "<=", 2.0)]
    assert Compression(0.7).thresholds() == [("compression", "<", 0.7)]  # strict, as the critic is
    assert LexicalDissimilarity(max_rouge_l=0.6, max_token_overlap=0.5).thresholds() == [
        ("rouge_l", "<=", 0.6), ("token_overlap", "<=", 0.5)]
    assert CopyCritic().thresholds() == [("edit_distance", ">=", 0.1), ("word_edits", ">", 1.0)]
    assert NumberConsistency(symmetric=True).thresholds() == [("numbers_added", "<=", 0.0),
                                                              ("numbers_dropped", "<=", 0.0)]
    assert NegationFlip().thresholds() == []  # presence on each side: not a bound on negation_diff
    assert NegationFlip(compare_counts=True).thresholds() == [("negation_diff", ">=", 0.0),
                                                              ("negation_diff", "<=", 0.0)]
    assert WellFormed().thresholds() == [("wellformed", ">=", 1.0)]
    assert threshold_dicts(LengthRatio(0.5, None)) == [{"score": "length_ratio", "op": ">=", "value": 0.5}]


def test_lm_judge_states_only_the_directions_it_judges():
    b = FakeBackend()
    assert LMJudgeCritic(backend=b, direction="backward", min_backward=0.4).thresholds() == [
        ("lm_entail_backward", ">=", 0.4)]
    assert LMJudgeCritic(backend=b).thresholds() == [("lm_entail_forward", ">=", 0.25),
                                                    ("lm_entail_backward", ">=", 0.25)]


@pytest.mark.parametrize("critic", [
    LengthRatio(), LengthRatio(0.9, 1.1), Compression(0.8), LexicalDissimilarity(max_rouge_l=0.7, max_bleu=0.4,
                                                                                max_token_overlap=0.6),
    NumberConsistency(symmetric=True), CopyCritic(), CopyCritic(min_edit=0.3, max_word_edits=2),
    NegationFlip(compare_counts=True), WellFormed()], ids=lambda c: c.name)
def test_kept_exactly_when_every_stated_bound_holds(critic):
    records = [Record(id=str(i), task="paraphrase", input=x, output=y) for i, (x, y) in enumerate(PAIRS)]
    verdicts = critic.judge_batch(records)
    stated = critic.thresholds()
    assert stated
    for r, v in zip(records, verdicts):
        holds = all(OPS[op](r.scores[score], value) for score, op, value in stated)
        assert (v is True) == holds, (r.output, v, r.scores)
    assert True in verdicts and any(v is not True for v in verdicts)  # both sides of the bounds are tried
