"""The consistency critic (`entities`): inline pairs, one for every drop reason with the
exact reason string, and harmless rewordings that must be kept."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from distill.critics.consistency import ConsistencyCritic
from distill.critics.registry import build_critic
from distill.errors import ConfigError
from distill.record import Record


def verdict(critic, x: str, y: str):
    r = Record(id="r", task="paraphrase", input=x, output=y)
    kept = list(critic.run([r]))
    return True if kept else critic.rejected[-1][1]


# ---------------------------------------------------------------- every reason

DROPS = [
    # entities
    ("All political parties backed the bill.",
     "All political parties, including the Conservative Party, backed the bill.", "entity_added:Conservative Party"),
    ("The UN sent aid to Christmas Island.",
     "The United Nations sent aid to Christmas Island, an island in the South Pacific.", "entity_added:South Pacific"),
    ("Mr Howard met the Indonesian President in Jakarta.",
     "The Indonesian President met officials in Jakarta.", "entity_dropped:Howard"),
    ("The company will open an office in Berlin.", "The company will open an office in Paris.",
     "entity_changed:Berlin->Paris"),
    ("Australian troops will stay in Iraq.", "American troops will stay in Iraq.",
     "entity_changed:Australian->American"),
    # numbers
    ("Three people died in the crash.", "Four people died in the crash.", "number_changed:3->4"),
    ("The hospital hired nurses.", "The hospital hired forty nurses.", "number_added:40"),
    ("Some passengers waited more than three hours for a bus.", "Some passengers waited for a bus.",
     "number_dropped:3"),
    ("Prices rose by 5% this year.", "Prices rose by 15 percent this year.", "number_changed:5%->15%"),
    # times
    ("The minister resigned yesterday.", "The minister resigned today.", "time_changed:yesterday->today"),
    ("The minister resigned.", "The minister resigned today.", "time_added:today"),
    ("The council voted on Tuesday to expand the bus network.", "The council voted to expand the bus network.",
     "time_dropped:tuesday"),
    ("The fire started this afternoon.", "The fire started at night.", "time_changed:this afternoon->at night"),
    ("The talks will resume next week.", "The talks will resume next month.", "time_changed:next week->next month"),
    ("The meeting starts at 3pm.", "The meeting starts at 5pm.", "time_changed:3pm->5pm"),
    ("The festival is held in March.", "The festival is held in May, organisers say.", "time_changed:march->may"),
    # attribution
    ("The economy is growing.", "The economy is growing, police say.", "attribution_added:police"),
    ("The man died in hospital, police said.", "The man died in hospital.", "attribution_dropped:police"),
    ("He says the economy is growing.", "The police believe the economy is growing.",
     "attribution_changed:he->police"),
    ("Officials said the bridge would reopen.", "According to engineers, the bridge would reopen.",
     "attribution_changed:Officials->engineers"),
    # modality
    ("She hopes the deal will be signed.", "She believes the deal will be signed.",
     "modality_changed:hopes->believes"),
    ("The treaty is about to be signed.", "The treaty had been signed.", "modality_changed:about to->had been"),
    ("The storm could reach the coast.", "The storm will reach the coast.", "modality_changed:could->will"),
]


@pytest.mark.parametrize("x,y,reason", DROPS, ids=[d[2] for d in DROPS])
def test_each_reason(x, y, reason):
    assert verdict(ConsistencyCritic(), x, y) == reason


# ---------------------------------------------------------------- harmless rewordings

KEEPS = [
    ("The Australian Government has rejected the plan.", "Australia's government has turned down the plan."),
    # a title or first name around a kept surname is the same person: not a drop
    ("Mr Howard said the talks would continue.", "The talks will go on, Howard said."),
    ("Prime Minister John Howard arrived in Jakarta on Monday.", "Mr Howard reached Jakarta on Monday."),
    ("The U.S. has sent more troops.", "More troops have been sent by the US."),
    ("The United States has sent more troops.", "More troops have been sent by America."),
    ("Palestinian gunmen attacked an Israeli settlement.", "An Israeli settlement was attacked by Palestinian gunmen."),
    ("European leaders met in Brussels.", "Leaders from Europe held a meeting in Brussels."),
    ("Dutch farmers protested.", "Farmers in the Netherlands protested."),
    ("The UN has condemned the attack.", "The United Nations has condemned the attack."),
    ("The Reserve Bank of Australia left rates on hold.", "Rates were left on hold by the RBA."),
    ("The New South Wales Premier, Bob Carr, says the state will not raise taxes.",
     "The state will not increase taxes, NSW Premier Bob Carr says."),
    ("South Australian Premier Mike Rann says the state will not be affected.",
     "The state will not be affected, according to Mike Rann, the Premier of South Australia."),
    ("Police say a man has been charged over the attack in Sydney's west.",
     "A man has been charged over the attack in western Sydney, police say."),
    ("Opposition Leader Simon Crean says the Government has lost control of the budget.",
     "The Government has lost control of the budget, according to Opposition Leader Simon Crean."),
    ("Qantas says it will cut 1,000 jobs over the next 12 months.",
     "The airline Qantas says it will cut a thousand jobs within a year."),
    ("Heavy rain forced organisers to postpone the concert until next weekend.",
     "The concert has been pushed back to the following weekend because of heavy rain."),
    # number and time formats
    ("Forty people were hurt.", "40 people were injured."),
    ("A dozen people came to the meeting.", "12 people turned up to the meeting."),
    ("It cost $5m to build.", "Building it cost five million dollars."),
    ("The local team won for the first time in twenty years.", "For the first time in two decades, the local side won."),
    ("The bakery sells out by nine o'clock.", "By 9 a.m. the bakery has sold out."),
    ("The meeting is at 3pm on Tuesday.", "The meeting is on Tuesday at 15:00."),
    ("The show ends tonight.", "The show finishes this evening."),
    ("A man was hurt in the blast.", "One man was injured in the blast."),
    ("Rents have risen for the fifth year in a row.", "Rents have gone up for five years running."),
    ("The man, aged in his 40s, was taken to hospital.", "The man, who is in his forties, was taken to hospital."),
    # reworded attribution: same speaker, other verb
    ("Scientists have found that the lake dropped sharply.", "According to researchers, the lake fell steeply."),
    ("Analysts said Tokyo stocks rose.", "Tokyo stocks rose, analysts said."),
    # sentence-initial capitals of common words are no names
    ("Heavy rain flooded the town.", "The town was flooded by heavy rain."),
]


@pytest.mark.parametrize("x,y", KEEPS, ids=[k[1][:40] for k in KEEPS])
def test_harmless_rewording_is_kept(x, y):
    assert verdict(ConsistencyCritic(), x, y) is True


def test_a_copy_is_consistent():
    c = ConsistencyCritic()
    x = "Prime Minister John Howard said on Tuesday that 3,000 Australian troops would leave Iraq by March."
    r = Record(id="r", task="paraphrase", input=x, output=x)
    assert c.judge(r) is True and r.scores["consistency"] == 1.0


# ---------------------------------------------------------------- scores, options, thresholds

def test_spans_drop_titles_and_connectors():
    from distill.critics.names import Text
    t = Text("Mike Rann, the Premier of South Australia, met Mr Howard and U.S. President George W. Bush.")
    assert [s.text for s in t.spans] == ["Mike Rann", "South Australia", "Howard", "U.S. President George W. Bush"]


def test_scores_count_each_kind():
    r = Record(id="r", task="paraphrase", input="Three people died in Sydney yesterday.",
               output="Four people died in Melbourne today, police said.")
    ConsistencyCritic().judge(r)
    s = r.scores
    assert (s["ent_added"], s["ent_dropped"], s["num_added"], s["num_dropped"]) == (1, 1, 1, 1)
    assert (s["time_added"], s["time_dropped"], s["time_mismatch"], s["attr_mismatch"]) == (1, 1, 2, 1)
    assert s["modality_mismatch"] == 0 and 0 <= s["consistency"] < 0.5


def test_checks_and_tolerances():
    x, y = "The minister resigned.", "The minister resigned today in Canberra."
    assert verdict(ConsistencyCritic(), x, y) == "entity_added:Canberra"
    assert verdict(ConsistencyCritic(checks=["times"]), x, y) == "time_added:today"
    assert verdict(ConsistencyCritic(checks=["numbers", "attribution"]), x, y) is True
    assert verdict(ConsistencyCritic(max_added=1), x, y) is True
    assert verdict(ConsistencyCritic(), "A man and two women came.", "Two women came.") is True
    assert verdict(ConsistencyCritic(count_one=True), "A man and one woman came.", "A man came.") == "number_dropped:1"


def test_thresholds_follow_the_options():
    assert ConsistencyCritic(checks=["entities", "modality"], max_dropped=2).thresholds() == [
        ("ent_added", "<=", 0.0), ("ent_dropped", "<=", 2.0), ("modality_mismatch", "<=", 0.0)]
    names = [t[0] for t in ConsistencyCritic().thresholds()]
    assert names == ["ent_added", "ent_dropped", "num_added", "num_dropped", "time_added", "time_dropped",
                     "attr_mismatch", "modality_mismatch"]


def test_registry_builds_it_and_rejects_bad_options():
    c = build_critic("entities", {"checks": ["entities"], "max_added": 1})
    assert isinstance(c, ConsistencyCritic) and c.name == "entities"
    with pytest.raises(ConfigError, match=r"filter.critics \(entities\): checks: unknown check\(s\) names"):
        build_critic("entities", {"checks": ["names"]})
    with pytest.raises(ConfigError, match=r"max_dropped must be an integer >= 0, got -1"):
        build_critic("entities", {"max_dropped": -1})
    with pytest.raises(ConfigError, match="unknown key"):
        build_critic("entities", {"max_add": 1})


# ---------------------------------------------------------------- the measuring script

def _bench():
    path = Path(__file__).resolve().parents[1] / "bench" / "consistency_labels.py"
    spec = importlib.util.spec_from_file_location("consistency_labels", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_reads_both_label_formats(tmp_path, capsys):
    old = tmp_path / "old.jsonl"
    old.write_text("\n".join(json.dumps(r) for r in [
        {"x": "Forty people were hurt.", "y": "40 people were injured.", "label": 1, "kind": "paraphrase"},
        {"x": "Three people died.", "y": "Four people died.", "label": 0, "kind": "number_change"}]))
    new = tmp_path / "new.jsonl"
    new.write_text(json.dumps({"x": "He left yesterday.", "y": "He left today.", "label": "M",
                               "kinds": ["time", "fact"]}) + "\n")
    bench = _bench()
    assert bench.main([str(old)]) == 0
    out = capsys.readouterr().out
    assert "keep (false alarms)        1        0    0.0%" in out
    assert "number_change              1        1  100.0%" in out
    assert bench.main([str(new), "--set", "checks=[times]"]) == 0
    out = capsys.readouterr().out
    assert "M:time                     1        1  100.0%" in out and "M:fact" in out


def test_bench_bad_input_exits_2(tmp_path, capsys):
    bench = _bench()
    assert bench.main([str(tmp_path / "missing.jsonl")]) == 2
    assert "labels file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"x": "a", "y": "b", "label": "Q"}) + "\n")
    assert bench.main([str(bad)]) == 2
    assert "bad.jsonl line 1: label must be 0, 1, P, C, M or D, got 'Q'" in capsys.readouterr().err
    bad.write_text(json.dumps({"x": "a", "y": "b", "label": 1}) + "\n")
    assert bench.main([str(bad), "--set", "max_added=-1"]) == 2
    assert "max_added must be an integer >= 0, got -1" in capsys.readouterr().err


# ---------------------------------------------------------------- summaries: dropping is free

SUMMARY_DOC = ("Police say a man has been charged over a fire that destroyed three homes in Sydney's west on "
               "Tuesday. The 23-year-old will appear in Penrith Local Court tomorrow, Inspector Mark Jones said.")

SUMMARY_KEEPS = [
    (SUMMARY_DOC, "A man has been charged over a fire that destroyed three homes in western Sydney."),
    (SUMMARY_DOC, "A man will face court over a house fire."),  # names, numbers, times, attribution dropped
    ("The man died in hospital, police said.", "The man died in hospital."),  # attribution only dropped
    ("The council voted on Tuesday to expand the bus network.", "The council voted to expand the bus network."),
    ("Some passengers waited more than three hours for a bus.", "Some passengers waited for a bus."),
    # several speakers in x, y keeps one of them
    ("Police said the man died. The minister said the road would close.", "The man died, police said."),
]

SUMMARY_DROPS = [
    ("The minister resigned.", "The minister resigned in Sydney.", "entity_added:Sydney"),
    ("The company will open an office in Berlin.", "The company will open an office in Paris.",
     "entity_changed:Berlin->Paris"),
    (SUMMARY_DOC, "A man has been charged over a fire in Melbourne.", "entity_added:Melbourne"),  # 3 names dropped
    ("Three people died in the crash.", "Four people died in the crash.", "number_changed:3->4"),
    ("Three people died and 10 were hurt in the crash.", "Four people died in the crash.", "number_added:4"),
    ("The minister resigned yesterday.", "The minister resigned today.", "time_changed:yesterday->today"),
    (SUMMARY_DOC, "A man charged over a fire will appear in court on Friday.", "time_added:friday"),  # two days dropped: no pairing
    ("The economy is growing.", "The economy is growing, police say.", "attribution_added:police"),
    ("Officials said the bridge would reopen.", "According to engineers, the bridge would reopen.",
     "attribution_changed:Officials->engineers"),
    ("She hopes the deal will be signed.", "She believes the deal will be signed.",
     "modality_changed:hopes->believes"),
]


@pytest.mark.parametrize("x,y", SUMMARY_KEEPS, ids=[k[1][:40] for k in SUMMARY_KEEPS])
def test_summary_mode_keeps_drops(x, y):
    assert verdict(ConsistencyCritic(max_dropped=None), x, y) is True


@pytest.mark.parametrize("x,y,reason", SUMMARY_DROPS, ids=[d[2] for d in SUMMARY_DROPS])
def test_summary_mode_still_fails_what_is_added_or_changed(x, y, reason):
    assert verdict(ConsistencyCritic(max_dropped=None), x, y) == reason


def test_summary_mode_scores_and_thresholds():
    x, y = "Mr Howard met the Indonesian President in Jakarta on Monday.", "The Indonesian President met Mr Howard."
    free, strict = ConsistencyCritic(max_dropped=None), ConsistencyCritic()
    r1, r2 = (Record(id=i, task="summarization", input=x, output=y) for i in "ab")
    assert free.judge(r1) is True and strict.judge(r2) == (False, "entity_dropped:Jakarta")
    assert r1.scores["ent_dropped"] == r2.scores["ent_dropped"] == 1.0 and r1.scores["time_dropped"] == 1.0
    assert r1.scores["consistency"] == 1.0 > r2.scores["consistency"]  # drops are no issues when free
    attr = Record(id="c", task="summarization", input="The man died in hospital, police said.",
                  output="The man died.")
    assert free.judge(attr) is True and attr.scores["attr_mismatch"] == 0.0
    assert free.thresholds() == [("ent_added", "<=", 0.0), ("num_added", "<=", 0.0), ("time_added", "<=", 0.0),
                                 ("attr_mismatch", "<=", 0.0), ("modality_mismatch", "<=", 0.0)]
    assert build_critic("entities", {"max_dropped": None}).max_dropped is None


def test_a_possessive_acronym_is_the_same_name():
    c = ConsistencyCritic(max_dropped=None)
    assert c.judge(Record(id="1", task="summarization", input="The ALP has a new policy on asylum seekers.",
                          output="The ALP's policy on asylum seekers is new.")) is True
    assert c.judge(Record(id="2", task="summarization", input="The ALP has a new policy.",
                          output="The ASIO's policy is new.")) == (False, "entity_changed:ALP->ASIO's")
