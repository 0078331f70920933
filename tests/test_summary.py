"""Summary rule critics (`coverage`, `extractive`): inline documents written for these tests,
exact scores worked out by hand, exact reasons."""

from __future__ import annotations

import operator

import pytest

from distill.critics.registry import build_critic
from distill.critics.rules import Compression
from distill.critics.summary import Coverage, Extractive, key_units, longest_common_subsequence
from distill.errors import ConfigError
from distill.record import Record

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}

# lead (weight 2): names Pacific Highway, Grafton; words flood, close ("near" is a stopword).
# Then Grafton +1, flood +1, polic, cut, power, home; then crew, restor, power +1 ("evening": a time)
SMALL = ("Floods closed the Pacific Highway near Grafton. Police said floods also cut power to Grafton homes. "
         "Crews restored power by evening.")

NEWS = ("Firefighters have contained a bushfire that burned through 400 hectares of bushland near Lithgow, west of "
        "Sydney. The Rural Fire Service says the fire started on Sunday afternoon when a power line fell in strong "
        "winds. About 60 firefighters and two water-bombing helicopters worked through the night to protect homes "
        "on the edge of Lithgow. No houses were lost, but a shed and several fences were destroyed. Residents who "
        "left their homes on Sunday were allowed to return this morning. The service has warned that hot, windy "
        "conditions are expected to return later in the week and has urged residents to clear gutters.")


def rec(x: str, y: str, id: str = "r") -> Record:
    return Record(id=id, task="summarization", input=x, output=y)


def verdict(critic, x: str, y: str):
    r = rec(x, y)
    kept = list(critic.run([r]))
    return True if kept else critic.rejected[-1][1]


# ---------------------------------------------------------------- coverage

def test_key_units_weigh_the_lead_and_count_a_name_once():
    units = [(k, w) for k, w, _ in key_units(SMALL)]
    assert units == [("name:Grafton", 3.0), ("word:flood", 3.0), ("name:Pacific Highway", 2.0), ("word:close", 2.0),
                     ("word:power", 2.0), ("word:polic", 1.0), ("word:cut", 1.0), ("word:home", 1.0),
                     ("word:crew", 1.0), ("word:restor", 1.0)]
    assert [(k, w) for k, w, _ in key_units(SMALL, lead_weight=1.0)][:3] == [
        ("name:Grafton", 2.0), ("word:flood", 2.0), ("word:power", 2.0)]
    # "Mr Howard" after "John Howard" is the same unit
    assert [(k, w) for k, w, _ in key_units("John Howard spoke. Mr Howard left.", lead_weight=1.0)] == [
        ("name:John Howard", 2.0), ("word:spoke", 1.0), ("word:left", 1.0)]


def test_coverage_is_the_weighted_share_of_the_top_units():
    c = Coverage(top_n=5)  # top 5: Grafton 3, flood 3, Pacific Highway 2, close 2, power 2 = 12
    r = rec(SMALL, "Flooding shut the highway to Grafton.")  # Grafton and flood(ing): 6 of 12
    assert list(c.run([r])) == [r] and r.scores == {"coverage": 0.5}
    assert verdict(Coverage(top_n=5, min_coverage=0.6), SMALL, "Flooding shut the highway to Grafton.") \
        == "coverage<0.6"
    r = rec(SMALL, "Grafton lost power after floods closed the Pacific Highway.")  # all five
    assert c.judge(r) is True and r.scores["coverage"] == 1.0
    assert verdict(c, SMALL, "Prices rose in March.") == "coverage<0.2"
    assert verdict(c, SMALL, "") == "coverage<0.2"
    r = rec("And so it was.", "Anything.")  # no key unit: nothing to miss
    assert c.judge(r) is True and r.scores["coverage"] == 1.0


def test_coverage_keeps_summaries_and_drops_side_details_and_off_topic_answers():
    c = Coverage()
    good = ["Firefighters have contained a bushfire near Lithgow that burned 400 hectares after a power line fell.",
            "No homes were lost when a fire sparked by a fallen power line burned bushland near Lithgow."]
    for y in good:
        assert verdict(c, NEWS, y) is True, (y, c.score_values)
    assert verdict(c, NEWS, "Residents are urged to clear their gutters.") == "coverage<0.2"  # a side detail
    assert verdict(c, NEWS, "The Reserve Bank left interest rates on hold.") == "coverage<0.2"
    assert c.score_values["coverage"][-1] == 0.0


# ---------------------------------------------------------------- extractive

def test_lcs():
    assert longest_common_subsequence("a b c d".split(), "x a c y d".split()) == 3
    assert longest_common_subsequence([], ["a"]) == 0


def test_extract_is_rouge_l_precision_against_the_best_sentence():
    x = "The council voted on Tuesday to close the old bridge. Engineers found cracks in its pillars last year."
    # 11 tokens; "the council close the old bridge" = 6 from the first sentence, 3 from the second
    r = rec(x, "The council will close the old bridge because engineers found cracks.")
    c = Extractive()
    assert list(c.run([r])) == [r] and r.scores == {"extract": pytest.approx(6 / 11)}
    lead = NEWS.split(". ")[0] + "."
    assert verdict(c, NEWS, lead) == "extract>0.8"  # the lead copied verbatim: 1.0
    assert verdict(c, NEWS, "Firefighters have contained a bushfire near Lithgow, west of Sydney.") == "extract>0.8"
    assert c.score_values["extract"][1:] == [1.0, 1.0]  # words deleted from the lead: still all copied
    one_word = lead.replace("contained", "controlled")  # one word of 19 changed: 18/19
    assert verdict(c, NEWS, one_word) == "extract>0.8"
    assert verdict(Extractive(max_extract=0.95), NEWS, one_word) is True
    assert verdict(c, NEWS, "Firefighters stopped a bushfire near Lithgow before it reached homes.") is True
    r = rec(NEWS, "")
    assert c.judge(r) is True and r.scores["extract"] == 0.0  # nothing copied (coverage drops it)


# ---------------------------------------------------------------- thresholds, registry

@pytest.mark.parametrize("critic", [Coverage(), Coverage(min_coverage=0.5, top_n=5), Extractive(),
                                    Extractive(max_extract=0.5), Compression(min_ratio=0.1, max_ratio=0.3),
                                    Compression(min_ratio=0.05, max_ratio=0.2, unit="words")],
                         ids=lambda c: c.name)
def test_kept_exactly_when_every_stated_bound_holds(critic):
    ys = ["Firefighters have contained a bushfire near Lithgow, west of Sydney.",
          "Firefighters stopped a bushfire near Lithgow before it reached homes.",
          "The Reserve Bank left interest rates on hold.", "Residents are urged to clear their gutters.",
          "No homes were lost when a fire sparked by a fallen power line burned bushland near Lithgow.", "Fire."]
    records = [rec(NEWS, y, str(i)) for i, y in enumerate(ys)]
    verdicts = critic.judge_batch(records)
    for r, v in zip(records, verdicts):
        holds = all(OPS[op](r.scores[score], value) for score, op, value in critic.thresholds())
        assert (v is True) == holds, (r.output, v, r.scores)
    assert True in verdicts and any(v is not True for v in verdicts)


def test_registry_builds_them_and_checks_settings():
    assert isinstance(build_critic("coverage", {"min_coverage": 0.3, "top_n": 8}), Coverage)
    assert build_critic("extractive", {"max_extract": 0.7}).thresholds() == [("extract", "<=", 0.7)]
    assert Coverage().thresholds() == [("coverage", ">=", 0.2)]
    with pytest.raises(ConfigError, match=r"filter.critics \(coverage\): min_coverage must be in \[0, 1\], got 20"):
        build_critic("coverage", {"min_coverage": 20})
    with pytest.raises(ConfigError, match="max_extract must be in"):
        build_critic("extractive", {"max_extract": -1})
    with pytest.raises(ConfigError, match="unknown key"):
        build_critic("coverage", {"top_k": 3})
