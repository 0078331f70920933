"""Lexical constraints on what a generated y may introduce that its input x does not have
(negative constraints in the spirit of NeuroLogic decoding, Lu et al., NAACL 2021).

The task builds one :class:`LexicalConstraint` per input x (:func:`constraint_for`) and sends
it with the request; a backend that can (transformers: ``backends/lexical.py``) bans, while it
decodes, every token that would make y contain

- a capitalised word (a name, a place, an acronym) that is not a word of x in any case, nor a
  function word that is capitalised only because it starts a sentence (:data:`FUNCTION_WORDS`);
- a number written in digits that is not a number of x (x's "eight" allows "8" and back);
- a number word (:data:`NUMBER_WORDS`) or a time word (:data:`TIME_WORDS`) that x lacks.

Words are maximal runs of letters or of digits: "Lashkar-e-Taiba" is three words, "1,000" two
numbers. A word of x also allows its plural or demonym and back (:data:`SUFFIXES`: "Kashmiri"
allows "Kashmir", "Pakistan" allows "Pakistani"), so a name the model starts is not forced into
a different ending. Inside a capitalised word, a capital letter after the first must be x's own
spelling ("McDonald", "FBI") or continue an all-capital word: "PaKistan" is not a way around. The rules are a precise, narrow net, not a meaning check: a lower-case claim ("the
police", "an armed man") passes, and critics still judge every pair.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

#: bumped when the rules change, so cached completions made under older rules are not reused
RULES_VERSION = 1

WORD = re.compile(r"[^\W\d_]+|\d+")

# Capitalised at the start of a sentence or a clause, never a name: always allowed.
FUNCTION_WORDS = frozenset("""a an the this that these those it its he she they we i you his her their our my your
him them us me in on at for but and or nor so if when while after before as with by from to of yet there here
what which who whom whose where why how some many most all any no not now then also however although though
despite since because meanwhile earlier later according each every both either neither another such other
more less few several much once until unless whether over under about into than thus instead still even just
only indeed perhaps yes do does did is are was were be been has have had will would can could should might
must shall let following amid among against during without within one""".split())

NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero _ two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split()) if w != "_"}  # "one" is left out: "a man" ~ "one man"
NUMBER_WORDS.update({w: str(10 * i) for i, w in enumerate("_ _ _ thirty forty fifty sixty seventy eighty ninety".split())
                     if w != "_"})
NUMBER_WORDS.update({"hundred": "100", "thousand": "1000", "million": "1000000", "billion": "1000000000",
                     "dozen": "12", "dozens": "12", "hundreds": "100", "thousands": "1000", "millions": "1000000"})

_DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_MONTHS = "january february march april may june july august september october november december".split()
_UNITS = "week month year decade century weekend morning afternoon evening night summer winter autumn".split()
#: time words y may not add (lower case; "may" and "march" count only when capitalised: see below)
TIME_WORDS = frozenset(["yesterday", "today", "tomorrow", "tonight", "overnight", "centuries", "spring"]
                       + _UNITS + [u + "s" for u in _UNITS if u != "century"] + _DAYS + [d + "s" for d in _DAYS]
                       + [m for m in _MONTHS if m not in ("may", "march")])
#: time words that are also common lower-case words: banned only as capitalised words
CAPITAL_TIME_WORDS = frozenset(["may", "march"])

#: endings a word of x may gain or lose in y (plural, demonym): x's "Pakistan" allows "Pakistani"
SUFFIXES = ("s", "es", "n", "i")

assert not (FUNCTION_WORDS & (TIME_WORDS | set(NUMBER_WORDS))), "a function word is never banned"


@dataclass(frozen=True)
class LexicalConstraint:
    """What one y may contain, worked out from its x (see the module docstring).

    ``words``: x's words lower-cased, with their :data:`SUFFIXES` variants (a capitalised word
    of y must be one of them, or a function word); ``cased``: x's words with a capital inside
    (their spelling is allowed as is); ``numbers``: the digit strings y may write; ``banned``: lower-case words y
    may not write (number and time words x lacks); ``capital_banned``: words banned only when
    capitalised; ``boost``: x's names whose first token gets ``boost_value`` added to its logit
    until y has written them.
    """

    words: tuple[str, ...]
    cased: tuple[str, ...]
    numbers: tuple[str, ...]
    banned: tuple[str, ...]
    capital_banned: tuple[str, ...]
    check_names: bool
    check_numbers: bool
    boost: tuple[str, ...] = ()
    boost_value: float = 0.0

    def key(self) -> dict:
        """Everything that decides the constrained distribution, for cache keys."""
        return {"lexical": RULES_VERSION, **asdict(self)}


def words_of(text: str) -> list[str]:
    return WORD.findall(text)


def plausible_case(word: str, cased) -> bool:
    """Capitalised, all capitals, or spelled as one of ``cased`` (or a prefix of one)."""
    rest = word[1:]
    return rest == rest.lower() or word == word.upper() or any(w.startswith(word) for w in cased)


def constraint_for(x: str, ban_new_names: bool = False, ban_new_numbers: bool = False, ban_new_times: bool = False,
                   boost_kept_names: float = 0.0) -> LexicalConstraint | None:
    """The constraint for paraphrases of ``x``; None when every option is off."""
    if not (ban_new_names or ban_new_numbers or ban_new_times or boost_kept_names):
        return None
    runs = words_of(x)
    low = {w.lower() for w in runs if not w.isdigit()}
    variants = {w + s for w in low if len(w) >= 3 for s in SUFFIXES}
    variants |= {w[: -len(s)] for w in low for s in SUFFIXES if w.endswith(s) and len(w) - len(s) >= 3}
    digits = {w for w in runs if w.isdigit()} | {NUMBER_WORDS[w] for w in low if w in NUMBER_WORDS}
    spelled = {w for w, d in NUMBER_WORDS.items() if d in digits}  # x's "8" allows "eight"
    banned: set[str] = set()
    if ban_new_numbers:
        banned |= set(NUMBER_WORDS) - low - spelled
    if ban_new_times:
        banned |= TIME_WORDS - low
    capital_banned = (CAPITAL_TIME_WORDS - low) if ban_new_times else set()
    names = []
    if boost_kept_names:
        # x's capitalised words but function and time words (capitalised at a sentence start)
        for w in runs:
            lw = w.lower()
            if w[0].isupper() and lw not in FUNCTION_WORDS and lw not in TIME_WORDS and lw not in names:
                names.append(w)
    return LexicalConstraint(
        words=tuple(sorted(low | variants)), cased=tuple(sorted({w for w in runs if w[1:] != w[1:].lower()})), numbers=tuple(sorted(digits)), banned=tuple(sorted(banned)),
        capital_banned=tuple(sorted(capital_banned)), check_names=ban_new_names, check_numbers=ban_new_numbers,
        boost=tuple(names), boost_value=float(boost_kept_names))


def violations(y: str, c: LexicalConstraint) -> list[str]:
    """The words of ``y`` that ``c`` bans, in order (the check the decoder enforces, on a whole
    text; used by tests and to count leaks)."""
    out = []
    words, fn = set(c.words), FUNCTION_WORDS
    for w in words_of(y):
        lw = w.lower()
        if c.check_names and w[0].isupper() and not plausible_case(w, c.cased):
            out.append(w)
            continue
        if w.isdigit():
            if c.check_numbers and w not in c.numbers:
                out.append(w)
        elif lw in c.banned or (w[0].isupper() and lw in c.capital_banned):
            out.append(w)
        elif c.check_names and w[0].isupper() and lw not in words and lw not in fn:
            out.append(w)
    return out
