"""The InfoSumm critic (`infosum`): the score arithmetic and reasons against a scorer that gives
known log-probabilities, its prompts and memoised baselines, the OpenAI echo path through a
filter config, and the real SmolLM2 (slow)."""

from __future__ import annotations

import math
import operator
import time

import pytest

from distill.critics.infosum import InfoSumCritic
from distill.critics.registry import build_critic
from distill.errors import DistillError
from distill.generator.backends.base import Backend
from distill.generator.tasks.summarize import INSTRUCTION
from distill.record import Record

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}

X = "a b c d e f g h i j"  # 10 tokens for the fake scorer (one per word)
GOOD, ADDED, OFF = "a b", "a b zz yy", "qq rr"
# log-probability per token of the document given each summary (saliency), and per token of each
# summary given the document (faithfulness: a word of x is explained, -0.5; an added one is not,
# -3.0); every text given a baseline prompt: -2.0 per token
X_GIVEN = {GOOD: -1.5, ADDED: -1.6, OFF: -2.0, "a b c": -1.4}


class FakeScorer(Backend):
    """Scores each word of the continuation as one token, with the values above. The source is
    whichever known text the prompt shows (none: a baseline prompt)."""

    name = "fake-scorer"

    def __init__(self) -> None:
        self.calls: list[list] = []
        self.closed = 0

    @property
    def model_id(self) -> str:
        return "fake-scorer"

    def score(self, requests):
        self.calls.append(list(requests))
        out = []
        for prompt, answer in requests:
            text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
            words = answer.split()
            if answer.strip() == X:
                sources = [y for y in sorted(X_GIVEN, key=len, reverse=True) if f"Summary: {y}\n" in text
                           or f"\n\n{y}\n\n" in text]
                out.append([X_GIVEN[sources[0]] if sources else -2.0] * len(words))
            elif X in text:
                out.append([-0.5 if w in X.split() else -3.0 for w in words])
            else:
                out.append([-2.0] * len(words))
        return out

    def close(self) -> None:
        self.closed += 1


def recs(*ys: str, x: str = X) -> list[Record]:
    return [Record(id=f"r{i}", task="summarization", input=x, output=y) for i, y in enumerate(ys)]


def test_scores_are_the_pmis_of_the_paper_and_name_the_failed_bound():
    fake = FakeScorer()
    critic = InfoSumCritic(backend=fake, min_saliency=20, min_faithfulness=0.0)
    rs = recs(GOOD, ADDED, OFF)
    assert critic.judge_batch(rs) == [True, (False, "info_saliency<20"), (False, "info_saliency<20")]
    # GOOD: x given y -15 vs -20 baseline: PMI 5 over brevity 2/10 = 25; y given x -1 vs -4: 3 nats, 1.5 a token
    assert rs[0].scores == pytest.approx({"info_saliency_pmi": 5.0, "info_brevity": 0.2, "info_saliency": 25.0,
                                          "info_faithfulness": 3.0, "info_faithfulness_mean": 1.5})
    # ADDED: x given y -16: PMI 4 over 0.4 = 10; y given x -0.5 -0.5 -3 -3 = -7 vs -8: 1 nat, 0.25 a token
    assert rs[1].scores == pytest.approx({"info_saliency_pmi": 4.0, "info_brevity": 0.4, "info_saliency": 10.0,
                                          "info_faithfulness": 1.0, "info_faithfulness_mean": 0.25})
    # OFF: nothing said about x, and less likely after it: -6 vs -4
    assert rs[2].scores == pytest.approx({"info_saliency_pmi": 0.0, "info_brevity": 0.2, "info_saliency": 0.0,
                                          "info_faithfulness": -2.0, "info_faithfulness_mean": -1.0})
    # one backend call: 3 saliency + 3 faithfulness passes, then 1 document and 3 summary baselines
    assert len(fake.calls) == 1 and len(fake.calls[0]) == 10
    assert critic.thresholds() == [("info_saliency", ">", 20.0), ("info_faithfulness", ">", 0.0)]
    critic.close()
    assert fake.closed == 0  # the caller owns it


def test_each_bound_and_its_reason():
    def reasons(**bounds):
        c = InfoSumCritic(backend=FakeScorer(), **{"min_saliency": None, "min_faithfulness": None, **bounds})
        return c.judge_batch(recs(GOOD, ADDED, OFF))

    assert reasons() == [True, True, True]  # no bound: every score still written
    assert reasons(min_faithfulness=2) == [True, (False, "info_faithfulness<2"), (False, "info_faithfulness<2")]
    assert reasons(min_faithfulness=1) == [True, (False, "info_faithfulness<1"), (False, "info_faithfulness<1")]
    assert reasons(min_faithfulness_mean=0.2) == [True, True, (False, "info_faithfulness_mean<0.2")]
    assert reasons(max_brevity=0.3) == [True, (False, "info_brevity>0.3"), True]
    assert reasons(min_brevity=0.2) == [(False, "info_brevity<0.2"), True, (False, "info_brevity<0.2")]  # strict
    # ADDED fails both saliency (10) and brevity (0.4): the reason is the first bound, in the paper's order
    assert reasons(min_saliency=15, max_brevity=0.3) == [True, (False, "info_saliency<15"), (False, "info_saliency<15")]


def test_baselines_are_remembered_per_text():
    fake = FakeScorer()
    critic = InfoSumCritic(backend=fake, prompt_style="text", min_saliency=None, min_faithfulness=None)
    critic.judge_batch(recs(GOOD, ADDED))
    critic.judge_batch(recs(GOOD, "a b c", GOOD))  # GOOD twice: one pass pair; only "a b c" needs a baseline
    assert [len(c) for c in fake.calls] == [2 + 2 + 1 + 2, 2 + 2 + 1]
    baselines = [r for r in fake.calls[1] if r[0] in ("Summary:", "Document:")]
    assert baselines == [("Summary:", " a b c")]
    memo = InfoSumCritic(backend=FakeScorer(), memo_size=0)
    memo.judge_batch(recs(GOOD))
    memo.judge_batch(recs(GOOD))
    assert [len(c) for c in memo.backend.calls] == [4, 4]  # nothing remembered


def test_prompts_of_both_styles():
    chat = InfoSumCritic(backend=FakeScorer())
    assert chat.faithfulness_prompt(X) == [{"role": "user", "content": f"{INSTRUCTION}\n\n{X}"}]
    assert chat.faithfulness_prompt(None) == [{"role": "user", "content": "Write a one-sentence summary of a text."}]
    assert chat.saliency_prompt(GOOD) == [{"role": "user", "content": "Here is a one-sentence summary of a text:"
                                                                      "\n\na b\n\nWrite the full text."}]
    assert chat.saliency_prompt(None) == [{"role": "user", "content": "Write a full text."}]
    assert chat.answer(GOOD) == GOOD
    text = InfoSumCritic(backend=FakeScorer(), prompt_style="text", instruction="ignored in text prompts")
    assert (text.faithfulness_prompt(X), text.faithfulness_prompt(None)) == (f"Document: {X}\nSummary:", "Summary:")
    assert (text.saliency_prompt(GOOD), text.saliency_prompt(None)) == ("Summary: a b\nDocument:", "Document:")
    assert text.answer(GOOD) == " a b"
    rs = recs(GOOD, ADDED, OFF)  # the scores do not depend on the style with this scorer
    text.judge_batch(rs)
    assert rs[0].scores["info_saliency"] == pytest.approx(25.0)
    assert rs[1].scores["info_faithfulness"] == pytest.approx(1.0)


def test_an_empty_side_scores_minus_infinity_and_costs_no_pass():
    fake = FakeScorer()
    critic = InfoSumCritic(backend=fake, min_saliency=None, min_faithfulness=0.0)
    rs = recs("", " ") + recs(GOOD, x="")
    assert critic.judge_batch(rs) == [(False, "info_faithfulness<0")] * 3
    assert fake.calls == []
    assert rs[0].scores == {"info_brevity": 0.0, "info_saliency_pmi": -math.inf, "info_saliency": -math.inf,
                            "info_faithfulness": -math.inf, "info_faithfulness_mean": -math.inf}
    assert rs[2].scores["info_brevity"] == math.inf


@pytest.mark.parametrize("bounds", [{"min_saliency": 0, "min_faithfulness": 0},
                                    {"min_saliency": 20, "min_faithfulness": 2}, {"min_faithfulness_mean": 0.2},
                                    {"min_saliency": None, "min_brevity": 0.1, "max_brevity": 0.3}], ids=str)
def test_kept_exactly_when_every_stated_bound_holds(bounds):
    critic = InfoSumCritic(backend=FakeScorer(), **{"min_saliency": None, "min_faithfulness": None, **bounds})
    rs = recs(GOOD, ADDED, OFF, "", "a b c")
    verdicts = critic.judge_batch(rs)
    for r, v in zip(rs, verdicts):
        holds = all(OPS[op](r.scores[score], value) for score, op, value in critic.thresholds())
        assert (v is True) == holds, (r.output, v, r.scores)
    assert True in verdicts and any(v is not True for v in verdicts)


def test_default_bounds():
    assert InfoSumCritic(backend=FakeScorer()).thresholds() == [("info_saliency", ">", 20.0),
                                                                ("info_faithfulness", ">", 20.0)]


def test_config_errors():
    with pytest.raises(DistillError, match="prompt_style"):
        InfoSumCritic(backend=FakeScorer(), prompt_style="poem")
    with pytest.raises(DistillError, match="not both"):
        InfoSumCritic(backend=FakeScorer(), model="some/model")
    with pytest.raises(DistillError, match="min_brevity 0.5 must be < max_brevity 0.5"):
        InfoSumCritic(backend=FakeScorer(), min_brevity=0.5, max_brevity=0.5)
    with pytest.raises(DistillError, match="records_per_call"):
        InfoSumCritic(backend=FakeScorer(), records_per_call=0)


def test_built_from_a_filter_config_over_openai_echo():
    from test_likelihood import EchoServer

    from distill.config import TeacherConfig

    teacher = TeacherConfig(backend="openai", model="fake", openai={"max_retries": 0})
    with EchoServer() as server:
        teacher = teacher.model_copy(update={"openai": teacher.openai.model_copy(update={"base_url": server.url})})
        critic = build_critic("infosum", {"prompt_style": "text", "min_saliency": None, "min_faithfulness": None},
                              teacher=teacher)
        rec = Record(id="a", task="summarization", input="Dogs bark at night.", output="Dogs bark.")
        assert critic.judge_batch([rec]) == [True]
        critic.close()
    # the echo server's words score -len/10 whatever comes before: no PMI; 2 of 4 words
    assert rec.scores == pytest.approx({"info_saliency_pmi": 0.0, "info_saliency": 0.0, "info_faithfulness": 0.0,
                                        "info_faithfulness_mean": 0.0, "info_brevity": 0.5})
    prompts = sorted(body["prompt"] for _, body in server.requests)
    assert prompts == ["Document: Dogs bark at night.", "Document: Dogs bark at night.\nSummary: Dogs bark.",
                       "Summary: Dogs bark.", "Summary: Dogs bark.\nDocument: Dogs bark at night."]
    assert critic.backend is None


# --- the real SmolLM2 ------------------------------------------------------------------------

# (document, faithful summary, the faithful summary with an unrelated fact added, an off-topic
# sentence), written for this test
REAL = [
    ("Firefighters have contained a bushfire that burned through 400 hectares of bushland near Lithgow, west of "
     "Sydney. The Rural Fire Service says the fire started on Sunday afternoon when a power line fell in strong "
     "winds. About 60 firefighters and two water-bombing helicopters worked through the night to protect homes on "
     "the edge of Lithgow. No houses were lost, but a shed and several fences were destroyed. Residents who left "
     "their homes on Sunday were allowed to return this morning.",
     "Firefighters have contained a bushfire near Lithgow that was started by a fallen power line.",
     "Firefighters have contained a bushfire near Lithgow that was started by a fallen power line, and the "
     "government will build a new football stadium in Perth.",
     "The price of coffee beans rose sharply on world markets last month."),
    ("The city council has voted to close the old Victoria Bridge to traffic after engineers found deep cracks in "
     "two of its pillars. The bridge, built in 1890, carries about 12,000 cars a day. Drivers will be diverted "
     "across the Kings Street bridge while repairs are carried out, which the council expects to take two years "
     "and cost about 30 million dollars. Pedestrians and cyclists will still be allowed to cross.",
     "The council has closed the old Victoria Bridge to cars because engineers found cracks in its pillars.",
     "The council has closed the old Victoria Bridge to cars because engineers found cracks in its pillars, and "
     "a famous singer will perform in the town square next week.",
     "A new species of frog has been discovered in the rainforests of Borneo."),
]


@pytest.mark.slow
def test_smollm2_prefers_faithful_and_salient_summaries(smollm2):
    critic = InfoSumCritic(backend=smollm2)  # the default bounds, measured on this model
    rs = [Record(id=f"{i}-{k}", task="summarization", input=row[0], output=row[k])
          for i, row in enumerate(REAL) for k in (1, 2, 3)]
    start = time.perf_counter()
    verdicts = critic.judge_batch(rs)
    seconds = time.perf_counter() - start
    # the faithful summaries pass, the off-topic sentences fail; an added clause is not what an
    # absolute bound catches (see InfoSumCritic), only a lower score than without it
    assert verdicts[0::3] == [True] * len(REAL) and verdicts[2::3] == [(False, "info_saliency<20")] * len(REAL)
    for i in range(len(REAL)):
        good, added, off = (rs[3 * i + k].scores for k in range(3))
        print(f"doc {i}: faithful {good}\n  added {added}\n  off-topic {off}")
        assert good["info_faithfulness"] > added["info_faithfulness"], (good, added)
        assert good["info_faithfulness_mean"] > added["info_faithfulness_mean"], (good, added)
        assert good["info_saliency"] > off["info_saliency"] and good["info_saliency_pmi"] > off["info_saliency_pmi"]
        assert good["info_faithfulness"] > off["info_faithfulness"]
    print(f"{seconds:.1f} s for {len(rs)} pairs ({seconds / len(rs):.2f} s a pair, baselines included)")
