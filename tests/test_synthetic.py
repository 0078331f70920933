"""Synthetic negatives: each transform makes its one expected change on inline sentences,
returns None where its pattern is absent, and synthesize() is deterministic under a seed."""

from __future__ import annotations

import random

import pytest

from distill.critics import synthetic as S
from distill.critics.labels import LabelRow

NAMES = ["India", "Pakistan", "Canberra", "Mr Howard", "Mr Crean", "Mr Arafat", "Israeli", "Australian"]


def run(t: str, s: str, seed: int = 0):
    rng = random.Random(seed)
    if t == "entity_swap":
        return S.entity_swap(s, rng, NAMES)
    if t == "clause_insert":
        return S.clause_insert(s, rng, ["Police have charged two men."], NAMES)
    return getattr(S, t)(s, rng)


@pytest.mark.parametrize("t, s, want", [
    ("number_change", "The fire destroyed 14 homes.", "The fire destroyed 17 homes."),
    ("number_change", "Three people were hurt.", "Nine people were hurt."),  # a word of the same magnitude
    ("number_change", "Thirty years on.", "Sixty years on."),
    ("time_change", "The minister resigned yesterday.", "The minister resigned tomorrow."),
    ("time_change", "The vote is on Tuesday.", "The vote is on Friday."),
    ("negation", "The bridge will close for repairs.", "The bridge will not close for repairs."),
    ("negation", "The company cannot pay its workers.", "The company can pay its workers."),
    ("negation", "He did not attend the meeting.", "He did attend the meeting."),
    ("negation", "She never drinks coffee.", "She drinks coffee."),
    ("role_swap", "Palestinian gunmen killed an Israeli settler in the West Bank.",
     "An Israeli settler killed Palestinian gunmen in the West Bank."),
    ("role_swap", "The police arrested the man on Friday.", "The man arrested the police on Friday."),
    ("role_swap", "India accused Pakistan of backing the attack.", "Pakistan accused India of backing the attack."),
    ("clause_drop", "Heavy rain forced organisers to postpone the concert until next weekend.",
     "Heavy rain forced organisers to postpone the concert."),
    ("clause_drop", "The foreign minister, who was elected in 2001, resigned today.", "The foreign minister resigned today."),
    ("clause_drop", "Your future is in your hands - guard it well.", "Your future is in your hands."),
    ("clause_drop", "The bank raised rates, which surprised most economists.", "The bank raised rates."),
    ("clause_insert", "The minister resigned.", "The minister resigned, and police have charged two men."),
])
def test_transform_makes_its_change(t, s, want):
    assert run(t, s) == want


@pytest.mark.parametrize("t, s", [
    ("number_change", "The council voted to expand the bus network."),
    ("time_change", "The council voted to expand the bus network."),
    ("negation", "Prices rose sharply."),  # no auxiliary to negate: no guess at "did not rise"
    ("role_swap", "The city council voted on Tuesday to expand the bus network."),  # no object after the verb
    ("clause_drop", "The team won the cup."),
    ("entity_swap", "Heavy rain forced organisers to postpone the concert."),  # "Heavy" is not a name
])
def test_transform_declines_without_its_pattern(t, s):
    assert run(t, s) is None


def test_entity_swap_keeps_the_shape_of_the_name():
    assert run("entity_swap", "Mr Howard met Mr Crean in Canberra.", seed=0) == "Mr Howard met Mr Arafat in Canberra."
    out = {run("entity_swap", "Australian troops left India.", seed=i) for i in range(8)}
    assert out == {"Israeli troops left India.", "Australian troops left Pakistan.", "Australian troops left Canberra."}


def test_names_skip_sentence_initial_common_words():
    names = S.names_in(["Heavy rain hit Sydney.", "The Prime Minister visited Heavy Industries.", "Sydney is wet."])
    assert names == ["Sydney", "Prime Minister", "Heavy Industries"]


def rows() -> list[LabelRow]:
    xs = ["The police arrested the man in Sydney on Tuesday.", "Three people were hurt when the bridge fell."]
    ys = ["Officers detained the man in Sydney on Tuesday.", "Three people were injured as the bridge collapsed."]
    out = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        out.append(LabelRow(line=2 * i + 1, id=f"{i}p", x=x, y=y, label=1, split="train", kind="P", group=f"g{i}",
                            letter="P"))
        out.append(LabelRow(line=2 * i + 2, id=f"{i}c", x=x, y=x, label=0, split="train", kind="C", group=f"g{i}",
                            letter="C"))
    return out


def test_synthesize_is_deterministic_and_labels_rejects():
    a = S.synthesize(rows(), S.Synth(per_positive=3, seed=1))
    assert a == S.synthesize(rows(), S.Synth(per_positive=3, seed=1))
    assert a != S.synthesize(rows(), S.Synth(per_positive=3, seed=2))
    assert len(a) == 6 and {r.id.split("~")[0] for r in a} == {"0p", "1p"}  # only positives are varied
    for r in a:
        src = next(s for s in rows() if s.id == r.id.split("~")[0])
        t = r.id.split("~")[1]
        assert (r.label, r.letter, r.kind, r.kinds) == (0, "M", f"synthetic:{t}", (S.TRANSFORMS[t],))
        assert (r.x, r.group, r.split) == (src.x, src.group, src.split) and r.y not in (src.x, src.y)
        if t == "clause_insert":  # the added claim comes from the other source sentence
            assert r.y.startswith(src.y[:-1] + ", and ")
            added = r.y[len(src.y[:-1] + ", and "):]
            assert ("bridge" in added) == (src.id == "0p") and ("the man" in added) == (src.id == "1p")


def test_synthesize_fraction_and_transform_choice():
    only = S.synthesize(rows(), S.Synth(per_positive=5, transforms=("time_change",)))
    assert [r.y for r in only] == ["Officers detained the man in Sydney on Saturday."]
    assert S.synthesize(rows(), S.Synth(per_positive=0)) == []
    with pytest.raises(ValueError, match="unknown synthetic transform"):
        S.synthesize(rows(), S.Synth(transforms=("typo",)))
