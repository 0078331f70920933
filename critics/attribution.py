"""Reporting frames ("X said", "says X", "according to X", "X believes that") and who
speaks in them, for the consistency critic.

A frame is a reporting verb with its speaker: the words before the verb back to a clause
boundary ("Police said", "the man died, police said", "Officials in Canberra said"), or
after it in an inverted frame (", said Mr Howard"; "according to police"). "say" and
"tell" always report; other verbs ("announced", "believes", "warned") only when followed
by "that" or a punctuation mark or preceded by one (", police warned."), so "the company
announced a plan" is no frame. Passives ("is expected to", "was told") are not frames.
A pronoun speaker ("he said") is compatible with any speaker of the other side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from distill.critics.names import TOKEN, Text, canon

_CORE = set("said says say told tells".split())  # not "tell": "tell bottles from cans"
_OTHER = set("""stated states announced announces claimed claims reported reports added adds warned warns
insisted insists confirmed confirms denied denies explained explains argued argues noted notes declared
declares revealed reveals admitted admits believes believe believed thinks think thought hopes hope hoped
fears fear feared expects expect suspects suspect suspected estimates estimated predicts predicted alleges
alleged acknowledged acknowledges stressed stresses maintains maintained concedes conceded""".split())
_INVERTS = _OTHER | {"said", "says"}
# also plural nouns ("counterfeit notes are", "his hopes were"): frames only before "that" or punctuation
_AMBIGUOUS = set("notes reports claims states fears hopes estimates stresses thought adds".split())
_DETERMINERS = set("the a an his her their its our my your this these those".split())
# speakers that name the same source in other words
_SAME_SOURCE = [set(g.split()) for g in ("scientist researcher expert academic study analyst",
                                         "police officer detective constable",
                                         "official authority government spokesman spokeswoman spokesperson",
                                         "company firm business", "neighbour neighbor door")]
# a finite verb soon after the reporting verb: a clause follows ("believes the economy is growing")
_FINITE = set("is are was were will would has have had could can may might should must did does do".split())
_PASSIVE = set("is are was were be been being am".split())
_CLAUSE = set("""that and but which who because as while when if so than after before since what whether
although though where once until unless""".split())
_SKIP = set("""has have had will would also earlier later previously repeatedly again now reportedly today
yesterday tonight has last this on monday tuesday wednesday thursday friday saturday sunday night week
morning afternoon evening recently already often always never not n't can cannot could should may might must
do does did""".split())
_FUNCTION = set("a an the his her their its our my your this that these those of in for at from with by".split())
_PRONOUNS = set("he she they it we i you".split())
_PUNCT = set(",.;:!?\"“”‘’'()—–-") | {"--"}
# Any wording that reports speech or belief: a side with one of these may be attributing
# in a form the frame patterns miss ("informed", "in a statement").
_CUE = re.compile(r"\b(?:sa(?:id|ys?)|t[eo]ll?s?|told|according|statement|spokes(?:man|woman|person)|announc\w*"
                  r"|report\w*|claim\w*|stat(?:e|es|ed)|inform\w*|explain\w*|believ\w*|think\w*|thought|hop\w*"
                  r"|fear\w*|expect\w*|warn\w*|insist\w*|confirm\w*|den(?:y|ies|ied)|argu\w*|not(?:e|es|ed)"
                  r"|declar\w*|reveal\w*|admit\w*|suspect\w*|estimat\w*|predict\w*|alleg\w*|acknowledg\w*"
                  r"|stress\w*|maintain\w*|conced\w*|quot\w*|added|adds|suggest\w*|indicat\w*|remark\w*"
                  r"|comment\w*|mention\w*|disclos\w*|assert\w*|promis\w*|pledg\w*|vow\w*|complain\w*|offer\w*"
                  r"|urg\w*|ask\w*|call(?:s|ed)? for|demand\w*|forecast\w*|found|find\w*|show\w*|discover\w*"
                  r"|conclud\w*|accus\w*|blam\w*|agree\w*|refus\w*|threat\w*)\b", re.IGNORECASE)


@dataclass
class Frame:
    words: list[str]  # the speaker as written, function words dropped
    tokens: list[str]  # their normalised tokens (names.canon)
    pronoun: bool

    @property
    def text(self) -> str:
        return " ".join(self.words)


def _speaker(words: list[str]) -> Frame | None:
    content = [w for w in words if w.lower() not in _FUNCTION | _SKIP | _PRONOUNS | _CLAUSE]
    if content:
        return Frame(content, canon(content), False)
    pron = [w for w in words if w.lower() in _PRONOUNS]
    return Frame([pron[-1].lower()], [pron[-1].lower()], True) if pron else None


def _back(toks: list[str], i: int) -> list[str]:
    out: list[str] = []
    j = i - 1
    while j >= 0 and len(out) < 6 and toks[j] not in _PUNCT and toks[j].lower() not in _CLAUSE:
        out.insert(0, toks[j])
        j -= 1
    return out


def _forward(toks: list[str], i: int) -> list[str]:
    out: list[str] = []
    j = i
    while j < len(toks) and len(out) < 6 and toks[j] not in _PUNCT and toks[j].lower() not in _CLAUSE:
        out.append(toks[j])
        j += 1
    return out


def frames(text: str) -> list[Frame]:
    toks = TOKEN.findall(text)
    out: list[Frame] = []
    for i, t in enumerate(toks):
        low = t.lower()
        prev = toks[i - 1].lower() if i else ""
        nxt = toks[i + 1].lower() if i + 1 < len(toks) else ""
        if low == "according" and nxt == "to":
            f = _speaker(_forward(toks, i + 2))
        elif (low in _CORE or low in _OTHER) and t.islower():  # "The United States, ..." is no "states"
            clause = nxt in ("that", "") or nxt in _PUNCT or prev in _PUNCT
            if low not in _AMBIGUOUS:
                clause = clause or any(w.lower() in _FINITE for w in _forward(toks, i + 1)[:6])
            if prev in _PASSIVE or prev in _DETERMINERS or (low in _OTHER and not clause):
                continue
            f = _speaker(_back(toks, i))
            if f is None and (prev in _PUNCT or i == 0) and low in _INVERTS:
                f = _speaker(_forward(toks, i + 1))  # ", said Mr Howard."
        else:
            continue
        if f is not None:
            out.append(f)
    return out


def _compatible(f: Frame, other: Text) -> bool:
    if f.pronoun or any(other.has(t) for t in f.tokens):
        return True
    return any(g & set(f.tokens) and g & other.pool for g in _SAME_SOURCE)


def compare_attribution(x: str, y: str, tx: Text, ty: Text, drops_free: bool = False) -> str | None:
    """The reason y's attribution differs from x's, or None. ``tx``/``ty`` are the
    :class:`~distill.critics.names.Text` of x and y (their word pools). ``drops_free``
    (summaries): only a speaker y brings in fails, added over a bare claim or changed from x's
    speakers; a speaker y leaves out does not."""
    fx, fy = frames(x), frames(y)
    if fy and not fx:
        # x that reports in a form the frames miss ("Scientists have found", "promised")
        # or names the speaker already may attribute the same; a new speaker over a bare
        # claim is an added attribution
        f = fy[0]
        if not _CUE.search(x) and not _compatible(f, tx):
            return f"attribution_added:{f.text}"
    elif fx and not fy and not drops_free:
        f = fx[0]
        if not (_compatible(f, ty) and _CUE.search(y)):
            return f"attribution_dropped:{f.text}"
    elif fx and fy:
        # changed when y names a speaker x lacks and x's speaker is gone from y (or was a
        # pronoun): "Qantas says" -> "Qantas ..., the airline says" only describes it
        x_kept = any(not f.pronoun and _compatible(f, ty) for f in fx)
        for f in fy:
            if not _compatible(f, tx) and not x_kept:
                return f"attribution_changed:{fx[0].text}->{f.text}"
        for f in fx if not drops_free else ():
            if not _compatible(f, ty):
                return f"attribution_changed:{f.text}->{fy[0].text}"
    return None
