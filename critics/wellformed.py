"""Is the output one clean English sentence (or a few), and nothing else?

The CPU teacher's degenerate answers (shared/EVAL.md) each get their own reason:
``wellformed:empty``, ``wellformed:multiline``, ``wellformed:wrapper`` (meta-text such as
"The sentence is rephrased to:" or commentary instead of an answer), ``wellformed:quoted``
(the whole answer in quotes), ``wellformed:repetition`` (loops such as "No, no, no, no"),
``wellformed:language`` (a switch away from English), ``wellformed:too_few_words``,
``wellformed:no_end_punct``, ``wellformed:lowercase_start``, ``wellformed:unbalanced``.
Checks run in that order and the first failure is the reason.
"""

from __future__ import annotations

import re
from collections import Counter

from distill.critics.base import Critic, Threshold, Verdict
from distill.record import Record

# Meta-text around or instead of an answer. A pattern that also matches the input is
# content, not a wrapper ("Of course, ..." paraphrased as "Of course, ..."), see problem().
_WRAPPERS = [re.compile(p, re.IGNORECASE) for p in (
    # chatty openers: "Sure!", "Certainly, here is ...", "Okay: ..."
    r"^\W*(sure|certainly|of course|okay|ok|absolutely)\s*(!|:|[,.]\s*(here|i)\b)",
    # announcements: "Here is a paraphrase", "Here's the rewritten sentence:"
    r"^\W*here(?:'s|\u2019s| is| are)\b.{0,60}\b(paraphras|rephras|rewrit|reword|version|sentence|alternative)",
    # labels: "Paraphrase:", "Rephrased sentence:", "Output:"
    r"^\W*(paraphrased?|rephrased|reworded|rewritten|revised|output|answer)\b[\w ]{0,20}:",
    # "The sentence is rephrased to: ...", "It can be paraphrased as follows"
    r"\b(paraphrased|rephrased|reworded|rewritten|restated)\s+(to|as)\s*(:|[\"\u201c']|follows)",
    # commentary instead of an answer: "This sentence means ...", "The phrase suggests ..."
    r"^\W*(this|the|that) (original )?(sentence|phrase|text|passage|quote)\s+"
    r"(means|is saying|describes|suggests|implies|refers to|talks about|conveys|expresses|can be)\b",
    r"\bas an ai\b",
)]

_QUOTE_PAIRS = {'"': '"', "\u201c": "\u201d", "'": "'", "\u2018": "\u2019", "\u00ab": "\u00bb"}
_BRACKETS = ("()", "[]", "{}", "\u201c\u201d")
_END = re.compile(r"[.?!][\"'\u201d\u2019)\]\u00bb]*$")
_TOKEN = re.compile(r"\w+(?:['\u2019]\w+)?")
# frequent English function words: their share is a crude "is this English?" check
_STOPWORDS = frozenset("""
a about after all also am an and any are as at be because been before but by can could did do
does for from had has have he her him his how i if in into is it its just me more most my no
not of on one or our out over she so some than that the their them then there these they this
those to too up us very was we were what when where which while who will with would you your
amid among during under against between through""".split())


def _has_loop(words: list[str], max_repeats: int) -> bool:
    """One n-gram (n <= 6) repeated back to back more than max_repeats times ("no no no",
    "i am a man i am a man i am a man"; "ran and ran and ran" is only 2.5 copies), or any
    3-gram occurring more than twice that often anywhere (loops with a varying filler;
    rhetoric such as "it was the best of times, it was the worst of times, ..." repeats
    a 3-gram four times)."""
    for n in range(1, 7):
        run = 0  # length of the current stretch where words[j] == words[j + n]
        for j in range(len(words) - n):
            run = run + 1 if words[j] == words[j + n] else 0
            if run >= max_repeats * n:  # the stretch holds max_repeats + 1 whole copies
                return True
    grams = Counter(tuple(words[i:i + 3]) for i in range(len(words) - 2))
    return bool(grams) and max(grams.values()) > 2 * max_repeats


def _wholly_quoted(t: str) -> bool:
    t = t.rstrip(".!? ")
    close = _QUOTE_PAIRS.get(t[:1])
    if not close or len(t) < 2 or t[-1] != close:
        return False
    inner = t[1:-1]
    return t[:1] not in inner and close not in inner  # one outer pair, not '"A," he said, "b."'


def _unbalanced(t: str) -> bool:
    if t.count('"') % 2:
        return True
    return any(t.count(o) != t.count(c) for o, c in _BRACKETS)


class WellFormed(Critic):
    """Well-formedness of y (and of x too with ``check_input``; its reasons read
    ``wellformed:input_<kind>``). ``min_words``: fewest word tokens; ``max_repeats``: most
    back-to-back copies of any n-gram; ``max_non_ascii``: largest share of non-ASCII
    letters; ``min_stopword_share``: smallest share of English function words, applied to
    texts of at least ``stopword_min_words`` words. A check set to None is off.
    Score ``wellformed``: 1.0 or 0.0."""

    name = "wellformed"
    score_names = ("wellformed",)

    def __init__(self, min_words: int | None = 3, max_repeats: int | None = 2,
                 max_non_ascii: float | None = 0.2, min_stopword_share: float | None = 0.1,
                 stopword_min_words: int = 6, require_end_punct: bool = True,
                 require_capital: bool = True, check_input: bool = False,
                 keep_rejects: bool = True) -> None:
        super().__init__(keep_rejects)
        if max_repeats is not None and max_repeats < 1:
            raise ValueError(f"wellformed: max_repeats must be >= 1, got {max_repeats}")
        self.min_words, self.max_repeats = min_words, max_repeats
        self.max_non_ascii, self.min_stopword_share = max_non_ascii, min_stopword_share
        self.stopword_min_words = stopword_min_words
        self.require_end_punct, self.require_capital = require_end_punct, require_capital
        self.check_input = check_input

    def thresholds(self) -> list[Threshold]:
        return [("wellformed", ">=", 1.0)]  # the checks themselves are rules, not bounds on a score

    def problem(self, text: str, reference: str = "") -> str | None:
        """The first failed check on ``text`` (None if it is fine). ``reference`` is the
        other side of the pair: a quoted answer is fine when the input is quoted too."""
        t = text.strip()
        if not t:
            return "empty"
        if "\n" in t:
            return "multiline"
        if any(p.search(t) and not p.search(reference) for p in _WRAPPERS):
            return "wrapper"
        if _wholly_quoted(t) and not _wholly_quoted(reference.strip()):
            return "quoted"
        words = [w.lower() for w in _TOKEN.findall(t)]
        if self.max_repeats is not None and _has_loop(words, self.max_repeats):
            return "repetition"
        if self.max_non_ascii is not None:
            letters = [c for c in t if c.isalpha()]
            if letters and sum(not c.isascii() for c in letters) / len(letters) > self.max_non_ascii:
                return "language"
        if (self.min_stopword_share is not None and len(words) >= self.stopword_min_words
                and sum(w in _STOPWORDS for w in words) / len(words) < self.min_stopword_share):
            return "language"
        if self.min_words is not None and len(words) < self.min_words:
            return "too_few_words"
        if self.require_end_punct and not _END.search(t):
            return "no_end_punct"
        if self.require_capital:
            first = t.lstrip("\"'\u201c\u2018([\u00ab")
            # "iPhone sales rose." is fine: a lowercase letter followed by a capital
            if first[:1].islower() and not first[1:2].isupper():
                return "lowercase_start"
        if _unbalanced(t):
            return "unbalanced"
        return None

    def judge(self, record: Record) -> Verdict:
        p = self.problem(record.output, record.input)
        if p is None and self.check_input:
            p = self.problem(record.input, record.output)
            p = p and f"input_{p}"
        record.scores["wellformed"] = 0.0 if p else 1.0
        return (False, f"wellformed:{p}") if p else True
