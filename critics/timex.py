"""Times, quantities and modality in a sentence, for the consistency critic.

Times: each expression is split into slots, so equivalent wordings compare equal and a
change names the slot that moved. ``day`` (yesterday, today, tomorrow, a weekday),
``part`` (morning, afternoon, evening = night), ``month``, ``period`` (last/this/next
week, month, year, ...; "past"/"previous" = last, "coming"/"following" = next, "a week
ago" = last week) and ``clock`` (minutes past midnight; an hour without am/pm matches
either half of the day). "tonight" = today + night, "this evening" = today + night,
"last night" = yesterday + night.

Quantities: :func:`distill.critics.rules.extract_numbers` on the text with clock times
masked (they are times), "a dozen" read as 12 and "$5m"/"£2bn" as 5 million / 2 billion.

Modality: the hedge and stance words of a sentence, in two families (modal: possible,
future, necessity, ability, imminent, completed; stance: hope, belief, fear, expectation,
doubt). A pair differs in modality only when x has a class that y lacks *and* y has one
of the same family that x lacks (a swap: "hopes" -> "believes", "could" -> "will",
"about to be signed" -> "had been signed"); a hedge dropped or added alone is not flagged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from distill.critics.rules import extract_numbers

_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_MONTHS = "january february march april may june july august september october november december".split()
_MONTH_ABBR = {m[:3]: m for m in _MONTHS} | {"sept": "september"}
_PART = {"morning": "morning", "afternoon": "afternoon", "evening": "night", "night": "night"}
_REL = {"last": "last", "past": "last", "previous": "last", "this": "this", "earlier this": "this",
        "later this": "this", "next": "next", "coming": "next", "following": "next", "the following": "next"}
_UNITS = "weekend|week|fortnight|month|year|summer|winter|spring|autumn|season|decade|century|term|quarter"

_WD = "(?:" + "|".join(_WEEKDAYS) + ")s?"
_HOUR_WORDS = "one two three four five six seven eight nine ten eleven twelve".split()
_HOURS = "|".join(_HOUR_WORDS)
_TIME = re.compile(
    r"(?P<clock>\b(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ampm>[ap]\.m\.|[ap]m\b)"
    r"|\b(?P<h24>\d{1,2}):(?P<m24>\d{2})\b|\b(?P<oc>\d{1,2}|" + _HOURS + r")\s*o['’]?clock\b|\b(?P<named>noon|midday|midnight)\b)"
    r"|(?P<deixis>\b(?:tonight|last night|overnight|this (?:morning|afternoon|evening)"
    r"|(?:yesterday|today|tomorrow|" + _WD + r")(?:\s+(?:morning|afternoon|evening|night))?)\b)"
    r"|(?P<partonly>\b(?:in the (?:morning|afternoon|evening)|at night|during the night)\b)"
    r"|(?P<period>\b(?P<rel>last|past|previous|this|earlier this|later this|next|coming|(?:the )?following)"
    r"\s+(?P<unit>" + _UNITS + r")\b|\b(?:a|one)\s+(?P<agounit>week|month|year)\s+(?:ago|earlier|before)\b"
    r"|\b(?P<onunit>week|month|year)[- ]on[- ](?:week|month|year)\b"
    r"|\b(?P<edge>end|start|beginning|middle) of (?:the|this|next|last) (?P<edgeunit>week|month|year)\b)",
    re.IGNORECASE)
_MONTH = re.compile(r"\b(?:January|February|March|April|June|July|August|September|October|November"
                    r"|December|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept?|Oct|Nov|Dec)\.|May(?=\s+(?:\d|this|last|next)|[,.]))")


@dataclass(frozen=True)
class Slot:
    kind: str  # day | part | month | period | clock
    value: object
    text: str  # the expression as written, lowercased: what a reason names


def _clock(m: re.Match) -> tuple[int, bool]:
    """(minutes past midnight, whether the half of the day is known)."""
    if m["named"]:
        return (720 if m["named"].lower() in ("noon", "midday") else 0), True
    if m["h24"]:
        h, mi = int(m["h24"]), int(m["m24"])
        return h * 60 + mi, h > 12 or h == 0
    if m["oc"]:
        oc = m["oc"].lower()
        return (int(oc) if oc.isdigit() else _HOUR_WORDS.index(oc) + 1) % 12 * 60, False
    h = int(m["h"]) % 12 + (12 if m["ampm"].lower().startswith("p") else 0)
    return h * 60 + int(m["m"] or 0), True


def times(text: str) -> list[Slot]:
    out: list[Slot] = []
    for m in _TIME.finditer(text):
        s = m.group(0).lower()
        if m["clock"]:
            out.append(Slot("clock", _clock(m), s))
        elif m["deixis"]:
            words = s.split()
            day = {"tonight": "today", "last": "yesterday", "overnight": None, "this": "today"}.get(words[0], words[0])
            day = day[:-1] if day and day.endswith("days") else day  # "on Fridays"
            part = _PART.get(words[-1]) if len(words) > 1 else ("night" if words[0] in ("tonight", "overnight") else None)
            if day:
                out.append(Slot("day", day, s))
            if part:
                out.append(Slot("part", part, s))
        elif m["partonly"]:
            out.append(Slot("part", _PART[s.split()[-1]], s))
        elif m["agounit"] or m["onunit"]:  # "a year ago", "year on year": compared with last year
            out.append(Slot("period", ("last", (m["agounit"] or m["onunit"]).lower()), s))
        elif m["edge"]:  # "the end of the week": which unit's end is the fact
            out.append(Slot("period", ("edge", m["edgeunit"].lower()), s))
        else:
            out.append(Slot("period", (_REL[m["rel"].lower()], m["unit"].lower()), s))
    for m in _MONTH.finditer(text):
        w = m.group(0).rstrip(".").lower()
        out.append(Slot("month", _MONTH_ABBR.get(w, w), w))
    return out


def same_slot(a: Slot, b: Slot) -> bool:
    if a.kind != b.kind:
        return False
    if a.kind == "clock":
        (ma, ka), (mb, kb) = a.value, b.value
        return ma == mb or (not (ka and kb) and ma % 720 == mb % 720)
    return a.value == b.value


def compare_times(x: str, y: str) -> tuple[list[Slot], list[Slot]]:
    """(slots of y that x lacks, slots of x that y lacks)."""
    sx, sy = times(x), times(y)
    added = [s for s in sy if not any(same_slot(s, t) for t in sx)]
    dropped = [s for s in sx if not any(same_slot(s, t) for t in sy)]
    # "the end of the week" is often reworded ("when the week is over"): only a change counts
    edge_a, edge_d = any(_is_edge(s) for s in added), any(_is_edge(s) for s in dropped)
    if not (edge_a and edge_d):
        added, dropped = [s for s in added if not _is_edge(s)], [s for s in dropped if not _is_edge(s)]
    return added, dropped


def _is_edge(s: Slot) -> bool:
    return s.kind == "period" and s.value[0] == "edge"


# ---------------------------------------------------------------- quantities

_COUNT = r"(?P<n>an?|one|two|three|four|five|six|seven|eight|nine|ten|\d+)"
_MULTIPLES = re.compile(_COUNT + r"\s+(?P<u>decades?|centur(?:y|ies)|dozen)\b", re.IGNORECASE)
_UNIT_VALUE = {"decade": 10, "decades": 10, "century": 100, "centuries": 100, "dozen": 12}
_FRACTIONS = [(re.compile(p, re.IGNORECASE), v) for p, v in (
    (r"\bhalf an hour\b", "30 minutes"), (r"\ba quarter of an hour\b", "15 minutes"),
    (r"\bhalf a year\b", "6 months"), (r"\bhalf a century\b", "50 years"), (r"\bhalf a dozen\b", "6"),
    (r"\ba fortnight\b", "two weeks"), (r"\b(?:12|twelve) months\b", "a year"), (r"\btwice\b", "two times"), (r"\b1st\b", "first"), (r"\b2nd\b", "second"))]
# "first" and "second" are left out: "for the first time", "a second" are rarely counts
_ORDINALS = {w: str(i) for i, w in enumerate("third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
                                              "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth "
                                              "nineteenth twentieth".split(), start=3)} | {
    "thirtieth": "30", "fortieth": "40", "fiftieth": "50", "hundredth": "100"}
_DECADE_WORDS = {w + "ies": str(10 * i) for i, w in enumerate(
    "twent thirt fort fift sixt sevent eight ninet".split(), start=2)}  # "in his forties" = "in his 40s"
_ORDINALS |= _DECADE_WORDS
_ORDINAL = re.compile(r"\b(?:" + "|".join(_ORDINALS) + r")\b", re.IGNORECASE)
_HYPHEN = re.compile(r"(?<=[A-Za-z])-(?!(?:one|two|three|four|five|six|seven|eight|nine)\b)")
_MONEY_SUFFIX = re.compile(r"([$£€¥]\s?\d+(?:\.\d+)?)\s?(m|bn|b|k)\b", re.IGNORECASE)
_SCALE_WORD = {"m": "million", "bn": "billion", "b": "billion", "k": "thousand"}


def _multiple(m: re.Match) -> str:
    n = m["n"].lower()
    count = 1 if n in ("a", "an") else int(next(iter(extract_numbers(n)), "1"))
    return f" {count * _UNIT_VALUE[m['u'].lower()]} "


def quantities(text: str) -> set[str]:
    """Canonical numbers of ``text``: :func:`extract_numbers` after clock times are masked
    (they are times) and multiples, fractions and ordinals are spelled as counts ("two
    decades" = 20, "half an hour" = 30 minutes, "a dozen" = 12, "twice" = two times, "fifth"
    = 5, "forties" = 40, "$5m" = 5 million)."""
    masked = _TIME.sub(lambda m: " " if m["clock"] else m.group(0), text)
    masked = _HYPHEN.sub(" ", masked)  # "forty-year" -> "forty year" ("twenty-five" stays)
    for rx, v in _FRACTIONS:
        masked = rx.sub(v, masked)
    masked = _MULTIPLES.sub(_multiple, masked)
    masked = _ORDINAL.sub(lambda m: _ORDINALS[m.group(0).lower()], masked)
    masked = _MONEY_SUFFIX.sub(lambda m: f"{m[1]} {_SCALE_WORD[m[2].lower()]}", masked)
    return extract_numbers(masked)


# ---------------------------------------------------------------- modality

_MODAL = {
    "possible": r"could|might|may|possibly|perhaps|maybe|likely|probably",
    "future": r"will|shall|won['’]t|['’]ll|going to|set to",
    "necessity": r"must|should|ought to|ha(?:s|ve|d) to|needs? to",
    "ability": r"can|cannot|can['’]t|could|able to",
    "imminent": r"about to|poised to|on the verge of",
    "completed": r"had (?:already )?been|already",
}
_STANCE = {
    "hope": r"hop(?:e|es|ed|ing)|wish(?:es|ed)?",
    "belief": r"believ(?:e|es|ed|ing)|think(?:s|ing)?|thought|consider(?:s|ed)?|reckon(?:s|ed)?",
    "fear": r"fear(?:s|ed)?|worr(?:y|ies|ied)|concerned",
    "expect": r"expect(?:s|ed|ing)?|anticipat(?:e|es|ed)|predict(?:s|ed)?",
    "doubt": r"doubt(?:s|ed)?",
}
_FAMILIES = {name: {k: re.compile(r"(?<![\w'’])(?:" + v + r")\b") for k, v in table.items()}
             for name, table in (("modal", _MODAL), ("stance", _STANCE))}


def modality(text: str) -> dict[str, dict[str, str]]:
    """family -> {class: first word of it in ``text``}. Case-sensitive on purpose: "May"
    is a month, "may" a modal."""
    low = text[:1].lower() + text[1:]
    return {fam: {k: m.group(0) for k, rx in table.items() if (m := rx.search(low))}
            for fam, table in _FAMILIES.items()}


def modality_swap(x: str, y: str) -> tuple[str, str] | None:
    """(x's word, y's word) of the first family where the classes were swapped, or None."""
    mx, my = modality(x), modality(y)
    for fam in _FAMILIES:
        lost = [k for k in mx[fam] if k not in my[fam]]
        new = [k for k in my[fam] if k not in mx[fam]]
        if lost and new:
            return mx[fam][lost[0]], my[fam][new[0]]
    return None
