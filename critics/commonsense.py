"""Is the output one well-formed ATOMIC inference for its relation, and nothing else?

A record of the commonsense task has input ``"<event> | <relation>"`` and one inference as
output. Each failure has its own reason, checked in this order (the first failure is the reason):
``commonsense_form:unknown_relation`` (the input is not ``event | relation`` with a known
relation), ``commonsense_form:empty``, ``commonsense_form:multiline``,
``commonsense_form:placeholder`` ("none", "n/a", "unknown", "-" ... instead of an inference;
"none" may be let through for xIntent and oWant, as ATOMIC has it), ``commonsense_form:not_text``
(JSON or markup remnants, a label such as "xIntent:", the whole answer in quotes, mostly
non-letters), ``commonsense_form:too_long`` (a word cap, tighter for the one-word-or-two
relations xReact, oReact and xAttr), ``commonsense_form:copies_event`` (the event, or its
predicate after PersonX, restated, inflections aside: "to yawn loudly" for "PersonX yawns
loudly"), ``commonsense_form:copies_relation_name``,
``commonsense_form:feeling_as_effect`` (xEffect and oEffect answered with a feeling, "happy",
"feels sad": that is xReact's answer, not an effect),
``commonsense_form:not_to_phrase`` (xIntent, xNeed, xWant and oWant answer "to ..."),
``commonsense_form:starts_with_to`` (the other relations must not), and
``commonsense_form:repetition`` (a word three times in a row, or a bigram twice).

Placeholders are checked before markup so that "-" or "?" reads as a placeholder, not as
"mostly non-letters".
"""

from __future__ import annotations

import re
from collections import Counter

from distill.critics.base import Critic, Threshold, Verdict
from distill.generator.tasks.commonsense import RELATIONS, parse_input
from distill.record import Record

#: relations answered with a "to ..." phrase in ATOMIC
TO_PHRASE = frozenset({"xIntent", "xNeed", "xWant", "oWant"})
#: relations answered with a feeling or trait: a word or two
FEELING = frozenset({"xReact", "oReact", "xAttr"})
#: relations where ATOMIC writes "none" when nothing applies
NONE_OK = frozenset({"xIntent", "oWant"})

_PLACEHOLDERS = frozenset({
    "none", "n/a", "na", "nothing", "unknown", "same", "same as above", "null", "nil", "not applicable",
    "no answer", "idk", "i don't know", "not sure", "unsure", "tbd", "etc", "none of the above", "no one", "nobody"})
_STRIP = " \t.,;:!?\"'`\u201c\u201d\u2018\u2019"
# braces, brackets, angle brackets, backticks, backslashes, the input's separator, and the
# joints of a JSON object: "key": and ", "
_MARKUP = re.compile(r"[{}\[\]<>`\\|]|[\"\u201d]\s*:|[\"\u201d]\s*,\s*[\"\u201c]")
# a label in front of the answer: "xIntent: to ...", "Event: ...", "Answer:"
_LABEL = re.compile(r"^\W*[A-Za-z_]+\s*:")
_QUOTES = {'"': '"', "\u201c": "\u201d", "'": "'", "\u2018": "\u2019"}
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_RELATION_NAMES = frozenset(r.lower() for r in RELATIONS)
# a bigram of two of these may recur ("to the park and to the lake"); any other may not
_FUNCTION = frozenset("""a an the to of in on at for with and or but by from up out off into about is are be
been it its their his her them they he she him personx persony personx's persony's""".split())


#: feelings (and the words for them) that answer xReact / oReact, not xEffect / oEffect
_FEELINGS = frozenset("""happy happier happiness sad sadness glad upset angry anger mad furious annoyed irritated
frustrated frustration excited excitement thrilled delighted joyful joy cheerful content satisfied pleased proud
grateful thankful relieved relief calm relaxed peaceful nervous anxious worried scared afraid frightened fearful
terrified embarrassed ashamed guilty lonely bored tired exhausted jealous envious hopeful disappointed
disappointment surprised amazed shocked confused curious sorry hurt heartbroken miserable depressed stressed
overwhelmed fantastic great good bad fine awesome wonderful amused loved proudly""".split())
_FEELING_LEAD = frozenset({"feels", "feel", "is", "very", "so", "really", "happy", "sad"})


def _stem(w: str) -> str:
    """Crude: enough to match "yawns"/"yawned"/"yawning" with "yawn" (not a lemmatiser)."""
    w = w.removesuffix("'s")
    for suf in ("ing", "ed", "es", "s"):
        if len(w) > len(suf) + 2 and w.endswith(suf):
            return w[: -len(suf)]
    return w


def _is_feeling(words: list[str]) -> bool:
    """"happy", "very sad", "feels upset", "is happy for personx", "happy for persony"."""
    core = [w for w in words if w not in ("for", "personx", "persony", "them", "him", "her", "others")]
    while core and core[0] in _FEELING_LEAD - _FEELINGS:
        core = core[1:]
    return 0 < len(core) <= 2 and all(w in _FEELINGS or w in _FEELING_LEAD for w in core) and core[-1] in _FEELINGS


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("\u2019", "'"))


def _contains(seq: list[str], part: list[str]) -> bool:
    n = len(part)
    return n > 0 and any(seq[i:i + n] == part for i in range(len(seq) - n + 1))


def _is_placeholder(t: str) -> bool:
    norm = " ".join(t.lower().strip(_STRIP).split())
    return norm in _PLACEHOLDERS or not re.search(r"[^\W_]", t)  # nothing but punctuation: "-", "?", "..."


def _not_text(t: str) -> bool:
    if _MARKUP.search(t) or _LABEL.search(t):
        return True
    close = _QUOTES.get(t[:1])
    if close and len(t) > 1 and t.rstrip(".")[-1] == close:
        return True  # the whole answer in quotes, as a JSON string
    if t.count('"') % 2:
        return True  # a stray quote left from a JSON string
    chars = [c for c in t if not c.isspace()]
    return sum(c.isalpha() for c in chars) < 0.5 * len(chars)


def _repeats(words: list[str]) -> bool:
    if any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2)):
        return True
    bigrams = list(zip(words, words[1:]))
    if any(bigrams[i] == bigrams[i + 2] for i in range(len(bigrams) - 2)):
        return True  # back to back: "to the to the", "very happy very happy"
    return any(n > 1 and not (a in _FUNCTION and b in _FUNCTION) for (a, b), n in Counter(bigrams).items())


class CommonsenseForm(Critic):
    """Form of a commonsense inference, judged by its relation. ``max_words``: most words
    (whitespace-separated) of an inference; ``max_feeling_words``: most words for xReact,
    oReact and xAttr; ``allow_none``: keep a literal "none" for xIntent and oWant.
    Score ``commonsense_words``: the inference's word count."""

    name = "commonsense_form"
    score_names = ("commonsense_words",)

    def __init__(self, max_words: int = 10, max_feeling_words: int = 4, allow_none: bool = False,
                 keep_rejects: bool = True) -> None:
        super().__init__(keep_rejects)
        for key, v in (("max_words", max_words), ("max_feeling_words", max_feeling_words)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"commonsense_form: {key} must be an integer >= 1, got {v!r}")
        self.max_words, self.max_feeling_words, self.allow_none = max_words, max_feeling_words, bool(allow_none)

    def thresholds(self) -> list[Threshold]:
        # one bound over every relation: the feeling relations' tighter cap is a rule per
        # relation, not a bound that every kept record's score satisfies
        return [("commonsense_words", ">=", 1.0),
                ("commonsense_words", "<=", float(max(self.max_words, self.max_feeling_words)))]

    def problem(self, event: str, relation: str, text: str) -> str | None:
        """The first failed check on the inference ``text`` (None if it is fine)."""
        t = text.strip()
        if not t:
            return "empty"
        if "\n" in t or "\r" in t:
            return "multiline"
        if _is_placeholder(t):
            if self.allow_none and relation in NONE_OK and t.lower().strip(_STRIP) == "none":
                return None  # ATOMIC's "nothing applies"; the form checks below are for inferences
            return "placeholder"
        if _not_text(t):
            return "not_text"
        cap = self.max_feeling_words if relation in FEELING else self.max_words
        if len(t.split()) > cap:
            return "too_long"
        words, ev = _tokens(t), _tokens(event)
        predicate = ev[1:] if ev[:1] == ["personx"] and len(ev) >= 3 else []
        stems, pred_stems = [_stem(w) for w in words], [_stem(w) for w in predicate]
        if words == ev or _contains(words, ev) or _contains(words, predicate) or _contains(stems, pred_stems):
            return "copies_event"
        if _RELATION_NAMES.intersection(words):
            return "copies_relation_name"
        if relation in ("xEffect", "oEffect") and _is_feeling(words):
            return "feeling_as_effect"
        to_start = t.lower().startswith("to ")
        if relation in TO_PHRASE and not to_start:
            return "not_to_phrase"
        if relation not in TO_PHRASE and to_start:
            return "starts_with_to"
        if _repeats(words):
            return "repetition"
        return None

    def judge(self, record: Record) -> Verdict:
        record.scores["commonsense_words"] = float(len(record.output.split()))
        try:
            event, relation = parse_input(record.input)
        except ValueError:
            return False, "commonsense_form:unknown_relation"
        p = self.problem(event, relation, record.output)
        return (False, f"commonsense_form:{p}") if p else True
