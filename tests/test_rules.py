"""Rule critics: inline pairs, exact reasons, thresholds at their boundaries, and the
teacher failure kinds of shared/EVAL.md each caught by the critic meant for it."""

from __future__ import annotations

import pytest

from distill.critics.rules import (
    Compression,
    CopyCritic,
    LengthRatio,
    LexicalDissimilarity,
    NegationFlip,
    NumberConsistency,
    extract_numbers,
    normalize_text,
)
from distill.critics.wellformed import WellFormed
from distill.record import Record
from distill.stage import run_pipeline

GOOD_X = "The committee postponed its decision until next week because several members were absent."
GOOD_Y = "Because a number of members were missing, the panel delayed its ruling to the following week."


def rec(x: str, y: str, id: str = "r") -> Record:
    return Record(id=id, task="paraphrase", input=x, output=y)


def verdict(critic, x: str, y: str):
    """The critic's verdict on one pair, through run() so counts and rejects are exercised."""
    r = rec(x, y)
    kept = list(critic.run([r]))
    if kept:
        return True
    assert critic.rejected[-1][0] is r
    return critic.rejected[-1][1]


# ---------------------------------------------------------------- the shared base, via a rule

def test_counts_rejects_and_scores_are_accounted():
    c = LengthRatio()
    recs = [rec("abcdefghij", "abcdefghi", "keep"), rec("abcdefghij", "abc", "short"),
            rec("abcdefghij", "a" * 20, "long")]
    kept = list(c.run(recs))
    assert [r.id for r in kept] == ["keep"]
    assert dict(c.counts) == {"total": 3, "kept": 1, "dropped_length_ratio<0.8": 1, "dropped_length_ratio>1.5": 1}
    assert [(r.id, why) for r, why in c.rejected] == [("short", "length_ratio<0.8"), ("long", "length_ratio>1.5")]
    assert [r.scores["length_ratio"] for r in recs] == [0.9, 0.3, 2.0]
    assert c.score_values == {"length_ratio": [0.9, 0.3, 2.0]}
    assert c.stats() == {"name": "length_ratio", "total": 3, "kept": 1,
                         "dropped": {"length_ratio<0.8": 1, "length_ratio>1.5": 1}}
    assert len(c.drain_rejects()) == 2 and c.rejected == []
    quiet = LengthRatio(keep_rejects=False)
    list(quiet.run([rec("abcdefghij", "abc")]))
    assert quiet.rejected == [] and quiet.counts["dropped_length_ratio<0.8"] == 1


# ---------------------------------------------------------------- length and compression

def test_length_ratio_window_is_inclusive():
    c = LengthRatio()
    x = "abcdefghij"
    assert verdict(c, x, "a" * 8) is True                   # 0.8 exactly
    assert verdict(c, x, "a" * 7) == "length_ratio<0.8"
    assert verdict(c, x, "a" * 15) is True                  # 1.5 exactly
    assert verdict(c, x, "a" * 16) == "length_ratio>1.5"
    assert verdict(c, "", "abc") == "length_ratio>1.5"      # empty input: never fine
    assert verdict(LengthRatio(min_ratio=None, max_ratio=2.0), x, "a" * 20) is True
    assert verdict(LengthRatio(min_ratio=0.5, max_ratio=None), x, "a") == "length_ratio<0.5"
    with pytest.raises(ValueError, match="min_ratio"):
        LengthRatio(min_ratio=2.0, max_ratio=1.0)


def test_length_ratio_catches_a_dropped_clause():
    c = LengthRatio()
    assert verdict(c, "Your future is in your hands - guard it well.", "Your future is in your hands.") \
        == "length_ratio<0.8"
    assert verdict(c, GOOD_X, GOOD_Y) is True


def test_compression_bound_is_strict():
    c = Compression()
    x = "abcdefghij"
    assert verdict(c, x, "a" * 7) is True
    assert verdict(c, x, "a" * 8) == "compression>0.8"      # |y| < 0.8|x| fails at equality
    assert verdict(c, x, "a" * 12) == "compression>0.8"
    assert verdict(Compression(max_ratio=0.5), x, "a" * 6) == "compression>0.5"
    assert c.score_values["compression"] == [0.7, 0.8, 1.2]


def test_compression_target_range_and_word_unit():
    x = "abcdefghij" * 10                                      # 100 characters
    c = Compression(min_ratio=0.05)
    assert verdict(c, x, "a" * 5) is True                   # 0.05 exactly: the lower bound is inclusive
    assert verdict(c, x, "a" * 4) == "compression<0.05"
    assert verdict(c, x, "a" * 80) == "compression>0.8"
    assert verdict(c, x, "") == "compression<0.05"
    assert c.thresholds() == [("compression", ">=", 0.05), ("compression", "<", 0.8)]
    doc = "one two three four five six seven eight nine ten"   # 10 words, 48 characters
    short = "extraordinarily lengthy words"                     # 3 words, 29 characters
    w = Compression(max_ratio=0.5, min_ratio=0.2, unit="words")
    r = rec(doc, short)
    assert list(w.run([r])) == [r] and r.scores["compression"] == pytest.approx(0.3)
    assert verdict(Compression(max_ratio=0.5), doc, short) == "compression>0.5"   # 29/48 characters
    assert verdict(w, doc, "one") == "compression<0.2"
    assert verdict(w, doc, "one two three four five") == "compression>0.5"    # 0.5 exactly: strict
    assert verdict(w, "", "one") == "compression>0.5"         # empty input: never fine
    with pytest.raises(ValueError, match="min_ratio"):
        Compression(max_ratio=0.5, min_ratio=0.5)
    with pytest.raises(ValueError, match="unit must be 'chars' or 'words', not 'tokens'"):
        Compression(unit="tokens")


# ---------------------------------------------------------------- lexical dissimilarity

def test_rouge_l_bound_and_scores():
    c = LexicalDissimilarity()
    r = rec("a b c d", "a b c e")                           # LCS 3 of 4: F = 0.75 exactly
    assert list(c.run([r])) == [r] and r.scores == {"rouge_l": 0.75}   # off checks compute nothing
    assert verdict(LexicalDissimilarity(max_rouge_l=0.74), "a b c d", "a b c e") == "rouge_l>0.74"
    assert verdict(c, "The cat sat on the mat.", "The cat sat on the mat!") == "rouge_l>0.75"
    assert verdict(c, GOOD_X, GOOD_Y) is True


def test_bleu_and_token_overlap_variants():
    x, y = "The cat sat on the mat.", "The mat had a cat on it."   # word sets: 4 shared of 8
    c = LexicalDissimilarity(max_rouge_l=None, max_token_overlap=0.5)
    r = rec(x, y)
    assert list(c.run([r])) == [r] and r.scores == {"token_overlap": 0.5}
    assert verdict(LexicalDissimilarity(max_rouge_l=None, max_token_overlap=0.49), x, y) == "token_overlap>0.49"
    near = ("I have never been to Paris in the spring.", "I have not been to Paris in the spring.")
    b = LexicalDissimilarity(max_rouge_l=None, max_bleu=0.5)
    assert verdict(b, *near) == "bleu>0.5"
    assert verdict(b, GOOD_X, GOOD_Y) is True
    assert 0 <= b.score_values["bleu"][1] < 0.1 < 0.5 < b.score_values["bleu"][0] <= 1
    with pytest.raises(ValueError, match="max_bleu"):
        LexicalDissimilarity(max_bleu=40)                   # a 0-100 BLEU by mistake


# ---------------------------------------------------------------- numbers

@pytest.mark.parametrize("text,numbers", [
    ("It rose 1,000 points, or 3.50 percent, to 50%.", {"1000", "3.5%", "50%"}),
    ("one hundred and twenty-five thousand people", {"125000"}),
    ("Two hundred thousand, 2.5 million and fifty per cent", {"200000", "2500000", "50%"}),
    ("no one came and one of them left; five, six", {"5", "6"}),
    ("In 2020 the firm made 3.0 billion", {"2020", "3000000000"}),
    ("No figures here at all.", set()),
])
def test_extract_numbers(text, numbers):
    assert extract_numbers(text) == numbers


def test_number_consistency():
    c = NumberConsistency()
    x = "The company hired 1,000 workers in 2020, a rise of 5 percent."
    assert verdict(c, x, "In 2020 the firm took on one thousand staff, 5% more.") is True
    assert verdict(c, x, "In 2020 the firm took on 1,200 staff, 5% more.") == "numbers_not_in_input"
    assert verdict(c, x, "In 2020 the firm took on 1,000 staff, 5 more.") == "numbers_not_in_input"
    assert verdict(c, "It costs 3.50 dollars.", "The price is $3.5.") is True
    assert verdict(c, "It costs 3.5 dollars.", "The price is $35.") == "numbers_not_in_input"
    assert verdict(c, "She is among the best players.", "She is one of the best players.") is True
    # dropped numbers pass by default and fail with symmetric
    dropped = ("He ate 3 apples and 2 pears.", "He ate three apples.")
    assert verdict(c, *dropped) is True
    s = NumberConsistency(symmetric=True)
    r = rec(*dropped)
    assert list(s.run([r])) == [] and s.rejected[0][1] == "numbers_dropped"
    assert r.scores == {"numbers_added": 0.0, "numbers_dropped": 1.0}


# ---------------------------------------------------------------- copies and trivial edits

def test_normalize_text():
    assert normalize_text("  It rained,  we   STAYED in!") == "it rained we stayed in"


def test_copy_critic_reasons():
    c = CopyCritic()
    assert verdict(c, "It rained, we stayed in.", "It rained, we stayed in.") == "copy"
    assert verdict(c, "It rained, we stayed in.", "It rained. We stayed in.") == "copy"   # comma -> full stop
    # "lets you choose" -> "makes you choose": edit distance 0.15, but one word swapped
    assert verdict(c, "This menu lets you choose.", "This menu makes you choose.") == "word_edits<=1"
    assert verdict(c, "This menu lets you choose.", "This menu makes us choose.") is True      # 2 words
    assert verdict(c, "The results of the long study were published today.",
                   "The results of the long study were published todays.") == "edit_distance<0.1"
    assert verdict(c, GOOD_X, GOOD_Y) is True
    r = rec("This menu lets you choose.", "This menu makes you choose.")
    list(c.run([r]))
    assert r.scores["word_edits"] == 1.0 and r.scores["edit_distance"] == pytest.approx(4 / 26)


def test_copy_critic_boundaries():
    chars = CopyCritic(max_word_edits=None)
    assert verdict(chars, "abcdefghij", "abcdefghix") is True               # 1/10 = 0.1: not below
    assert verdict(CopyCritic(min_edit=0.11, max_word_edits=None), "abcdefghij", "abcdefghix") == "edit_distance<0.11"
    words = CopyCritic(min_edit=None, max_word_edits=2)
    assert verdict(words, "one two three four five", "one TWO 3 4 five") == "word_edits<=2"
    assert verdict(words, "one two three four five", "1 2 3 four five") is True


# ---------------------------------------------------------------- well-formedness

X = "The cat sat on the mat."


@pytest.mark.parametrize("y,reason", [
    ("", "wellformed:empty"),
    ("   ", "wellformed:empty"),
    ("The cat sat.\nIt was happy.", "wellformed:multiline"),
    ('The sentence is rephrased to: "A cat was sitting on the mat."', "wellformed:wrapper"),
    ("Sure! A cat was sitting on the mat.", "wellformed:wrapper"),
    ("Here is a paraphrase of the sentence: a cat was sitting on the mat.", "wellformed:wrapper"),
    ("Paraphrase: A cat was sitting on the mat.", "wellformed:wrapper"),
    ("This sentence means that a cat was sitting on a mat.", "wellformed:wrapper"),
    ('"A cat was sitting on the mat."', "wellformed:quoted"),
    ("No, no, no, no, no, no.", "wellformed:repetition"),
    ("I am a cat. I am a cat. I am a cat.", "wellformed:repetition"),
    ("The cat, the mat and the cat, the mat and the cat, the mat and.", "wellformed:repetition"),
    ("The man sat down, then the man got up, then the man sat, then the man ran, then the man fell, then the man slept.",
     "wellformed:repetition"),                                          # varying filler
    ("Le chat était assis sur le tapis dans la maison.", "wellformed:language"),
    ("猫がマットの上に座っていた。", "wellformed:language"),
    ("Cat sat.", "wellformed:too_few_words"),
    ("A cat was sitting on the mat", "wellformed:no_end_punct"),
    ("A cat was sitting on the mat:", "wellformed:no_end_punct"),
    ("a cat was sitting on the mat.", "wellformed:lowercase_start"),
    ("A cat (a tabby was sitting on the mat.", "wellformed:unbalanced"),
    ('A cat said "meow and sat on the mat.', "wellformed:unbalanced"),
])
def test_wellformed_failures(y, reason):
    c = WellFormed()
    assert verdict(c, X, y) == reason
    assert c.rejected[0][0].scores["wellformed"] == 0.0


@pytest.mark.parametrize("x,y", [
    (X, "A cat was sitting on the mat."),
    (X, 'He said "the cat sat on the mat."'),                         # closing quote after the stop
    (X, "Did the cat sit on the mat?"),
    (X, "iPhone sales rose sharply this year."),
    (X, "Stocks rallied on Tuesday after the central bank held rates steady."),
    (X, "José Müller said the cat sat on the mat."),                  # a few accents are English too
    ('"The cat sat on the mat."', '"A cat was sitting on the mat."'),  # quoted input: quoted answer fine
    ("Sure! I will come tomorrow.", "Sure! I'll be there tomorrow."),  # the "wrapper" is content here
    ("He had had enough.", "He had had enough of it."),                # one word twice is no loop
    (X, "He ran and ran and ran until dawn."),                         # 2.5 copies of "ran and"
    (X, "It was the best of times, it was the worst of times, it was the age of wisdom, "
        "it was the age of foolishness."),                              # rhetoric, not a loop
    (GOOD_X, GOOD_Y),
])
def test_wellformed_keeps_clean_sentences(x, y):
    c = WellFormed()
    r = rec(x, y)
    assert list(c.run([r])) == [r] and r.scores["wellformed"] == 1.0


def test_wellformed_options():
    assert verdict(WellFormed(max_repeats=3), X, "No, no, no, I will not sit.") is True
    assert verdict(WellFormed(max_repeats=2), X, "No, no, no, I will not sit.") == "wellformed:repetition"
    assert verdict(WellFormed(min_words=None), X, "Cat sat.") is True
    assert verdict(WellFormed(require_end_punct=False), X, "A cat was sitting on the mat") is True
    # language checks off: the next failing check names it
    assert verdict(WellFormed(max_non_ascii=None, min_stopword_share=None), X, "猫がマットの上に座っていた。") \
        == "wellformed:too_few_words"
    assert verdict(WellFormed(), "the cat sat", "A cat was sitting on the mat.") is True
    assert verdict(WellFormed(check_input=True), "the cat sat", "A cat was sitting on the mat.") \
        == "wellformed:input_no_end_punct"
    with pytest.raises(ValueError, match="max_repeats"):
        WellFormed(max_repeats=0)


# ---------------------------------------------------------------- negation

def test_negation_flip():
    c = NegationFlip()
    assert verdict(c, "The plan will work.", "The plan won't work.") == "negation_mismatch"
    assert verdict(c, "The plan will not work.", "The plan will work.") == "negation_mismatch"
    assert verdict(c, "She left without a word.", "She left with a word.") == "negation_mismatch"
    assert verdict(c, "Nobody came to the party.", "Everyone came to the party.") == "negation_mismatch"
    assert verdict(c, "He never lies.", "He does not lie.") is True
    assert verdict(c, "It’s fine.", "It isn’t fine.") == "negation_mismatch"      # curly apostrophe
    assert verdict(c, "The note was known.", "The notion was known.") is True      # no substring hits
    both = ("It is not cheap and not fast.", "It is not cheap and fast.")
    assert verdict(c, *both) is True
    strict = NegationFlip(compare_counts=True)
    r = rec(*both)
    assert list(strict.run([r])) == [] and strict.rejected[0][1] == "negation_mismatch"
    assert r.scores["negation_diff"] == -1.0


# ---------------------------------------------------------------- the teacher's failures, end to end

EVAL_FAILURES = [
    ("copy", "Time flies when you are having fun.", "Time flies when you are having fun.", "copy", "copy"),
    ("full stop", "It rained, so we stayed in.", "It rained. So we stayed in.", "copy", "copy"),
    ("one word", "This menu lets you choose your meal.", "This menu makes you choose your meal.",
     "copy", "word_edits<=1"),
    ("never->not", "I have never been to Paris in the spring.", "I have not been to Paris in the spring.",
     "copy", "word_edits<=1"),
    ("dropped clause", "Your future is in your hands - guard it well.", "The future lies in your hands.",
     "length_ratio", "length_ratio<0.8"),
    ("negation", "The new bridge will open to traffic in the spring.",
     "In spring the fresh bridge won't be open to cars.", "negation", "negation_mismatch"),
    ("number", "About 300 people attended the meeting on Friday.",
     "Roughly 400 people came to Friday's meeting.", "numbers", "numbers_not_in_input"),
    ("wrapper", "The river flooded the whole valley overnight.",
     'The sentence is rephrased to: "Overnight the valley was flooded by the river."',
     "wellformed", "wellformed:wrapper"),
    ("loop", "No one expected the storm to be so strong.", "No, no, no, no, no, no, no, no, no.",
     "wellformed", "wellformed:repetition"),
    ("language", "The children played in the park all afternoon.",
     "Los niños jugaron en el parque toda la tarde.", "wellformed", "wellformed:language"),
    ("paraphrase", GOOD_X, GOOD_Y, None, None),
]


def test_each_eval_failure_is_caught_by_its_critic():
    critics = [WellFormed(), CopyCritic(), LengthRatio(), NegationFlip(), NumberConsistency(),
               LexicalDissimilarity()]
    records = [rec(x, y, kind) for kind, x, y, _, _ in EVAL_FAILURES]
    kept = list(run_pipeline(critics, records))
    assert [r.id for r in kept] == ["paraphrase"]
    caught = {r.id: (c.name, why) for c in critics for r, why in c.rejected}
    assert caught == {kind: (name, why) for kind, _, _, name, why in EVAL_FAILURES if name}
    assert sum(c.counts["kept"] for c in critics[-1:]) == 1
    assert critics[0].counts["total"] == len(EVAL_FAILURES)
