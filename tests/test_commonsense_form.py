"""The commonsense well-formedness critic: inline (input, inference) pairs, exact reasons,
a good inference for every relation, and the critic built through the registry."""

from __future__ import annotations

import pytest

from distill.critics.commonsense import CommonsenseForm
from distill.critics.registry import build_critic
from distill.errors import ConfigError
from distill.generator.tasks.commonsense import RELATIONS, record_input
from distill.record import Record

MALL = "PersonX goes to the mall"
BIRTHDAY = "PersonX forgets PersonY's birthday"


def rec(x: str, y: str, id: str = "r") -> Record:
    return Record(id=id, task="commonsense", input=x, output=y)


def verdict(critic, x: str, y: str):
    v = critic.judge(rec(x, y))
    return True if v is True else v[1]


CASES = [
    # a feeling is xReact's answer, not an effect; an inflected restatement of the event is a copy
    ("PersonX takes a pottery class | xEffect", "happy", "feeling_as_effect"),
    ("PersonX wins the race | xEffect", "feels very happy", "feeling_as_effect"),
    ("PersonX wins the race | oEffect", "happy for PersonX", "feeling_as_effect"),
    ("PersonX wins the race | xEffect", "gets a medal", None),
    ("PersonX wins the race | xEffect", "becomes famous", None),
    ("PersonX yawns loudly | xIntent", "to yawn loudly", "copies_event"),
    ("PersonX helps PersonY move | xIntent", "to help PersonY move", "copies_event"),
    # one good inference per relation
    (f"{MALL} | xIntent", "to buy new shoes", None),
    (f"{MALL} | xNeed", "to get in the car", None),
    (f"{MALL} | xWant", "to go home and rest", None),
    (f"{MALL} | oWant", "to come along", None),
    (f"{MALL} | xEffect", "spends money", None),
    (f"{MALL} | oEffect", "get a ride home", None),
    (f"{MALL} | xReact", "happy", None),
    (f"{MALL} | oReact", "happy for PersonX", None),
    (f"{MALL} | xAttr", "sociable", None),
    (f"{BIRTHDAY} | xReact", "guilty", None),
    (f"{BIRTHDAY} | oReact", "hurt", None),
    (f"{BIRTHDAY} | xWant", "to apologize to PersonY", None),
    (f"{BIRTHDAY} | oEffect", "feels forgotten by PersonX", None),
    (f"{MALL} | xWant", "to walk to the park and to the lake", None),  # "to the" twice is fine
    (f"{MALL} | xReact", "very very happy", None),  # two in a row is fine
    (f"{MALL} | xEffect", "buys a gift for PersonY's birthday", None),
    # empty, multiline
    (f"{MALL} | xIntent", "", "empty"),
    (f"{MALL} | xIntent", "   ", "empty"),
    (f"{MALL} | xIntent", "to buy shoes\nto eat lunch", "multiline"),
    # placeholders
    (f"{MALL} | xIntent", "none", "placeholder"),  # allow_none is off by default
    (f"{MALL} | xNeed", "None.", "placeholder"),
    (f"{MALL} | xEffect", "N/A", "placeholder"),
    (f"{MALL} | oReact", "nothing", "placeholder"),
    (f"{MALL} | xAttr", "unknown", "placeholder"),
    (f"{MALL} | xReact", "same", "placeholder"),
    (f"{MALL} | oEffect", "-", "placeholder"),
    (f"{MALL} | oEffect", "...", "placeholder"),
    # JSON and markup remnants, labels, quotes, symbols
    (f"{MALL} | xIntent", '{"xIntent": "to buy shoes"}', "not_text"),
    (f"{MALL} | xIntent", 'to buy shoes", "xNeed', "not_text"),
    (f"{MALL} | xIntent", "xIntent: to buy shoes", "not_text"),
    (f"{MALL} | xEffect", "Event: PersonX goes home", "not_text"),
    (f"{MALL} | xIntent", '"to buy shoes"', "not_text"),
    (f"{MALL} | xReact", "<b>happy</b>", "not_text"),
    (f"{MALL} | xIntent", "to buy shoes\"", "not_text"),
    (f"{MALL} | xEffect", "$$ 100 %% 200", "not_text"),
    (f"{MALL} | xEffect", "PersonX goes | xEffect", "not_text"),
    # word caps: 10 words, 4 for the feeling relations
    (f"{MALL} | xWant", "to buy a pair of new shoes for the summer", None),  # 10 words
    (f"{MALL} | xWant", "to buy a pair of new shoes for the summer party", "too_long"),
    (f"{MALL} | xReact", "feels very happy about the new shoes today", "too_long"),
    (f"{MALL} | xReact", "happy about new shoes", None),  # 4 words
    (f"{MALL} | xAttr", "a very friendly outgoing person", "too_long"),
    # copies of the event, relation names
    (f"{MALL} | xEffect", "PersonX goes to the mall.", "copies_event"),
    (f"{MALL} | xEffect", "personx goes to the mall again", "copies_event"),
    (f"{MALL} | xEffect", "goes to the mall", "copies_event"),  # the predicate, restated
    (f"{BIRTHDAY} | xEffect", "forgets PersonY's birthday", "copies_event"),
    (f"{MALL} | xEffect", "goes home after the mall", None),
    (f"{MALL} | xIntent", "to show the xintent", "copies_relation_name"),
    (f"{MALL} | oReact", "oReact happy", "copies_relation_name"),
    # the "to ..." form
    (f"{MALL} | xIntent", "buys shoes", "not_to_phrase"),
    (f"{MALL} | xNeed", "a car", "not_to_phrase"),
    (f"{MALL} | xWant", "go home", "not_to_phrase"),
    (f"{MALL} | oWant", "together", "not_to_phrase"),
    (f"{MALL} | xEffect", "to get tired", "starts_with_to"),
    (f"{MALL} | oEffect", "To wait for PersonX", "starts_with_to"),
    (f"{MALL} | xReact", "to be happy", "starts_with_to"),
    (f"{MALL} | oReact", "to smile", "starts_with_to"),
    (f"{MALL} | xAttr", "to shop", "starts_with_to"),
    # loops
    (f"{MALL} | xEffect", "buys buys buys shoes", "repetition"),
    (f"{MALL} | xWant", "to buy shoes and buy shoes", "repetition"),
    (f"{MALL} | xWant", "to the to the mall", "repetition"),
    # the input is not "event | relation" with a known relation
    (f"{MALL} | xFeels", "happy", "unknown_relation"),
    (MALL, "to buy shoes", "unknown_relation"),
]


@pytest.mark.parametrize("x, y, reason", CASES)
def test_reasons(x, y, reason):
    want = True if reason is None else f"commonsense_form:{reason}"
    assert verdict(CommonsenseForm(), x, y) == want


def test_every_reason_and_relation_is_tried():
    reasons = {r for _, _, r in CASES if r}
    assert reasons == {"empty", "multiline", "not_text", "too_long", "placeholder", "copies_event",
                       "copies_relation_name", "feeling_as_effect", "not_to_phrase", "starts_with_to", "repetition", "unknown_relation"}
    kept = {x.rpartition(" | ")[2] for x, _, r in CASES if r is None}
    assert kept == set(RELATIONS)


def test_none_is_allowed_only_where_atomic_has_it():
    c = CommonsenseForm(allow_none=True)
    assert verdict(c, record_input(MALL, "xIntent"), "none") is True
    assert verdict(c, record_input(MALL, "oWant"), "None") is True
    assert verdict(c, record_input(MALL, "xWant"), "none") == "commonsense_form:placeholder"
    assert verdict(c, record_input(MALL, "xIntent"), "n/a") == "commonsense_form:placeholder"


def test_caps_follow_the_options_and_the_score_is_written():
    c = CommonsenseForm(max_words=3, max_feeling_words=1)
    assert verdict(c, f"{MALL} | xIntent", "to buy shoes") is True
    assert verdict(c, f"{MALL} | xIntent", "to buy new shoes") == "commonsense_form:too_long"
    assert verdict(c, f"{MALL} | xReact", "very happy") == "commonsense_form:too_long"
    r = rec(f"{MALL} | xWant", "to go home")
    c.judge(r)
    assert r.scores == {"commonsense_words": 3.0}
    assert c.thresholds() == [("commonsense_words", ">=", 1.0), ("commonsense_words", "<=", 3.0)]
    assert CommonsenseForm().thresholds() == [("commonsense_words", ">=", 1.0), ("commonsense_words", "<=", 10.0)]


def test_kept_records_satisfy_the_stated_bounds_and_drops_are_counted():
    c = CommonsenseForm()
    records = [rec(x, y, id=str(i)) for i, (x, y, _) in enumerate(CASES)]
    kept = list(c.run(records))
    assert len(kept) == sum(r is None for _, _, r in CASES)
    for r in kept:
        assert all(r.scores[s] >= v if op == ">=" else r.scores[s] <= v for s, op, v in c.thresholds())
    assert c.stats()["dropped"]["commonsense_form:placeholder"] == 8
    assert c.counts["total"] == len(CASES)


def test_registry_builds_it_and_rejects_bad_options():
    c = build_critic("commonsense_form", {"max_words": 8, "max_feeling_words": 3, "allow_none": True})
    assert isinstance(c, CommonsenseForm) and c.name == "commonsense_form"
    assert (c.max_words, c.max_feeling_words, c.allow_none) == (8, 3, True)
    with pytest.raises(ConfigError, match=r"filter.critics \(commonsense_form\): unknown key\(s\) max_word; "
                                          r"commonsense_form takes: max_words, max_feeling_words, allow_none"):
        build_critic("commonsense_form", {"max_word": 8})
    with pytest.raises(ConfigError, match="max_feeling_words must be an integer >= 1, got 0"):
        build_critic("commonsense_form", {"max_feeling_words": 0})


def test_the_shipped_trained_critic_loads_and_ranks_real_labels():
    """data/commonsense/critic (fit on data/commonsense/labels.jsonl) loads through the registry as the
    example config names it and, on the labelled test split, scores accepted inferences above rejected
    ones (its held-out AUC was 0.74)."""
    import json
    from pathlib import Path

    import numpy as np

    from distill.critics.registry import build_critic
    from distill.record import Record

    root = Path(__file__).resolve().parents[1] / "data" / "commonsense"
    critic = build_critic("trained", {"path": str(root / "critic")})
    rows = [json.loads(line) for line in (root / "labels.jsonl").read_text().splitlines()]
    test = [r for r in rows if r["split"] == "test"]
    recs = [Record(id=r["id"], task="commonsense", input=r["x"], output=r["y"]) for r in test]
    critic.judge_batch(recs)
    score = next(k for k in recs[0].scores if k.startswith("trained"))
    p = np.array([r.scores[score] for r in recs])
    y = np.array([r["label"] for r in test])
    assert len(test) == 200 and p[y == 1].mean() > p[y == 0].mean() + 0.15
