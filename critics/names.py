"""Names in a sentence, for the consistency critic: capitalised spans (people, places,
organisations) and the words of a text they can be matched against.

A span of x is *kept* by y when each of its words, normalised, occurs anywhere in y (in any
case: "the Government" ~ "the government"), so clause order, possessives, plurals and
case do not matter. Normalising does four things: a possessive or plural ending goes
("Australia's", "parties"); a country's name, demonym and alternative spellings become
one token (countryinfo's table: "Australian" ~ "Australia", "U.S." ~ "US" ~ "United
States", "Dutch" ~ "Netherlands"); a demonym of a place the table lacks derives from its
name ("European" ~ "Europe", "Tasmanian" ~ "Tasmania"); an acronym matches the initials
of a span ("UN" ~ "United Nations"). Leading titles and honorifics are not part of a
name, and a person's surname alone keeps the full name: "Mr Howard" ~ "Howard" ~ "John
Howard" (the same person, said more or less formally: not a drop).

A capitalised word that starts a sentence (or follows a quote, colon or dash) is a name
only with evidence: it starts a multiword span, is a country word, or occurs capitalised
mid-sentence in x or y; so "Police said ..." and "Heavy rain ..." add no name.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# Function words that are capitalised only because they start a sentence or a span.
_FUNCTION = set("""a an the this that these those it its he she they we i you his her their our my your
him them us me in on at for but and or nor so if when while after before as with by from to of yet there
here what which who whom whose where why how some many most all any no not now then also however although
though despite since because meanwhile earlier later according each every both either neither one another
such other more less few several much once until unless whether over under about into onto than thus hence
instead still even just only indeed perhaps maybe yes sir madam dear oh""".split())
# Leading words that make a title, not a name ("Prime Minister John Howard" names Howard).
_TITLES = set("""mr mrs ms miss mx dr prof professor sir dame lord lady president prime minister ministers
premier senator sen rep representative congressman congresswoman governor gov general gen lieutenant lt
colonel col captain capt major sergeant sgt chief judge justice king queen prince princess pope father
rev reverend bishop archbishop chancellor secretary treasurer deputy foreign opposition leader mayor
commissioner inspector detective superintendent constable officer chairman chairwoman spokesman
spokeswoman ambassador attorney acting former""".split())
# Heads of organisation/place names: "Christmas Island" is not kept by "the island".
_GENERIC_HEADS = set("""island islands party government council university department ministry bank
company corporation street road river lake mountain mount city county state province court house church
school hospital airport station park bay sea ocean valley club association union league committee
commission agency office service group""".split())
# Time words are the time check's business, not names.
TIME_NAMES = set("""monday tuesday wednesday thursday friday saturday sunday january february march april may
june july august september october november december jan feb mar apr jun jul aug sep sept oct nov dec""".split())
# Acronyms of common nouns: not names ("its CEO" ~ "its chief executive").
_COMMON_ACRONYMS = set("""CEO CEOs CFO MP MPs PM GP GPs TV DNA CCTV PhD HIV AIDS SUV ATM PIN ID IT AI OK AM GDP VAT CD
DVD PC SMS UFO VIP HQ DIY FAQ""".split())
_CONNECT = {"of", "de", "van", "von", "al", "bin", "la", "du", "del", "da"}
_EXTRA_ALIASES = {"America": "united states", "Britain": "united kingdom", "Holland": "netherlands",
                  "Kiwi": "new zealand", "Aussie": "australia"}
_DEMONYM_SUFFIXES = ("ian", "ese", "ish", "an", "er", "ic", "n", "i")

TOKEN = re.compile(r"(?:[A-Z]\.){2,}|[A-Z]\.(?=\s+[A-Z][a-z])|[A-Za-z]+(?:[-'’][A-Za-z]+)*|\d+(?:[.,:]\d+)*|[^\w\s]")
_ACRONYM = re.compile(r"(?:[A-Z]\.){2,}")
_POSSESSIVE = re.compile(r"['’]s?$")
_CAPITAL = re.compile(r"(?:[A-Z]\.)+|[A-Z][A-Za-z'’-]*")
_BOUNDARY = set(".!?:;\"“”‘’'(—–-") | {"--"}


@functools.cache
def aliases() -> dict[tuple[str, ...], str]:
    """Word sequence (as written, capitalised) -> country key, from countryinfo: names,
    demonyms and Latin-script alternative spellings. Bigger countries win a shared form
    ("Indian" is India's, not the British Indian Ocean Territory's)."""
    from countryinfo import CountryInfo

    table: dict[tuple[str, ...], str] = {}
    countries = sorted(CountryInfo.all().values(), key=lambda d: -(d.get("population") or 0))
    for d in countries:
        key = d["name"].lower()
        forms = [d["name"], *(d.get("demonym") or "").split(","), *d.get("altSpellings", [])]
        for form in forms:
            form = form.strip()
            if not form or not form.isascii() or "," in form or (form.isupper() and len(form) < 2):
                continue
            words = tuple(TOKEN.findall(form))
            table.setdefault(words, key)
            if not form.isupper():
                table.setdefault(words[:-1] + (words[-1] + "s",), key)  # "Australians"
    for form, key in _EXTRA_ALIASES.items():
        table.setdefault((form,), key)
        table.setdefault((form + "s",), key)
    return table


@functools.cache
def _alias_lengths() -> dict[str, list[int]]:
    """First word of a country form -> the lengths of the forms it starts, longest first."""
    out: dict[str, set[int]] = {}
    for k in aliases():
        out.setdefault(k[0], set()).add(len(k))
    return {w: sorted(v, reverse=True) for w, v in out.items()}


def norm_word(w: str) -> str:
    """Lowercase, possessive and plural ending removed; acronyms lose their dots."""
    base = _POSSESSIVE.sub("", w).replace(".", "")
    if base.isupper() and len(base) >= 2:
        return base  # an acronym keeps its case ("US" is not "us") and loses a possessive ("ALP's")
    w = _POSSESSIVE.sub("", w.lower())
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def canon(words: list[str]) -> list[str]:
    """Normalised tokens of a word sequence: country forms (longest first) become "@key"."""
    out, i, table, starts = [], 0, aliases(), _alias_lengths()
    while i < len(words):
        w = words[i].replace(".", "") if _ACRONYM.fullmatch(words[i]) else words[i]  # "U.S." -> "US"
        lengths = starts.get(w) or starts.get(_POSSESSIVE.sub("", w)) if w[:1].isupper() else None
        for k in lengths or ():
            seq = tuple(words[i:i + k])
            hit = len(seq) == k and (table.get(seq) or table.get(seq[:-1] + (_POSSESSIVE.sub("", seq[-1]),)))
            if hit:
                out.append("@" + hit)
                i += k
                break
        else:
            out.append(norm_word(w))
            i += 1
    return out


def _derives(a: str, b: str) -> bool:
    """``a`` is a demonym-like derivation of ``b`` ("european" of "europe")."""
    if len(a) <= len(b) or a.startswith("@") or b.startswith("@"):
        return False
    for suf in _DEMONYM_SUFFIXES:
        if a.endswith(suf):
            base = a[: -len(suf)]
            if len(base) >= 4 and b.startswith(base) and len(b) - len(base) <= 3:
                return True
    return False


def same_word(a: str, b: str) -> bool:
    return a == b or (a.lower() == b.lower() and not (a.isupper() or b.isupper())) or _derives(a, b) or _derives(b, a)


@dataclass
class Span:
    """A name: its words as written (titles removed) and their normalised tokens."""
    words: list[str]
    tokens: list[str]

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def initials(self) -> str:
        return "".join(w[0] for w in self.words if w[:1].isupper())


class Text:
    """One side of a pair: its tokens, its names and the pool of its normalised words."""

    def __init__(self, text: str, other: str = "") -> None:
        self.tokens = TOKEN.findall(text)
        self.pool = set(canon([t for t in self.tokens if t[:1].isalnum()]))
        self.spans = find_spans(self.tokens, _mid_capitals(text) | _mid_capitals(other))

    def has(self, token: str) -> bool:
        return token in self.pool or any(same_word(token, p) for p in self.pool)

    def keeps(self, span: Span) -> bool:
        """Whether this text still names ``span`` (of the other text)."""
        toks = [t for t in span.tokens if t.lower() not in _FUNCTION]
        if all(self.has(t) for t in toks):
            return True
        caps = {t for s in self.spans for t in s.tokens}
        last = span.words[-1]
        if len(span.words) > 1 and last.lower() not in _GENERIC_HEADS and any(same_word(span.tokens[-1], c) for c in caps):
            return True  # surname kept: "John Howard" ~ "Howard"
        acr = span.text.replace(".", "").replace(" ", "")
        if len(span.words) == 1 and acr.isupper():  # "UN" ~ "United Nations"
            words = [t for t in self.tokens if t[:1].isalpha() and t.lower() not in _CONNECT]
            n = len(acr)
            return any("".join(w[0] for w in words[i:i + n]).upper() == acr for i in range(len(words) - n + 1))
        init = span.initials()  # "Reserve Bank of Australia" ~ "RBA"
        return len(init) >= 2 and any(t.replace(".", "") == init for t in self.tokens)


def _mid_capitals(text: str) -> set[str]:
    """Lowercased words written capitalised somewhere other than a sentence start."""
    toks = TOKEN.findall(text)
    return {t.lower() for i, t in enumerate(toks) if i > 0 and toks[i - 1] not in _BOUNDARY and t[:1].isupper()}


def _is_initial(tokens: list[str], i: int) -> bool:
    return i == 0 or tokens[i - 1] in _BOUNDARY


def find_spans(tokens: list[str], evidence: set[str]) -> list[Span]:
    """Names among ``tokens``; ``evidence`` holds words seen capitalised mid-sentence."""
    table_heads = _alias_lengths()
    spans: list[Span] = []
    cur: list[str] = []

    def close() -> None:
        while cur and cur[-1].lower() in _CONNECT:
            cur.pop()
        words = list(cur)
        while words and words[0].lower().rstrip(".") in _TITLES:
            words.pop(0)  # a title alone ("the Prime Minister") is a role, not a name
        while len(words) > 1 and words[-1].lower() in _TITLES:
            words.pop()  # "New South Wales Premier" names New South Wales
        while words and words[0].lower() in _CONNECT:
            words.pop(0)  # "Premier of South Australia" -> "South Australia"
        if words and not (len(words) == 1 and (len(words[0]) == 1 or words[0] in _COMMON_ACRONYMS)):
            spans.append(Span(words, canon(words)))
        cur.clear()

    for i, t in enumerate(tokens):
        low = t.lower()
        cap = bool(_CAPITAL.fullmatch(t))
        if not cap or low in TIME_NAMES or low.rstrip("s") in TIME_NAMES or re.fullmatch(r"I(?:['’](?:d|m|ll|ve))?", t):
            if cur and low in _CONNECT and i + 1 < len(tokens) and tokens[i + 1][:1].isupper():
                cur.append(t)
                continue
            close()
            continue
        if low in _FUNCTION:  # capitalised only by position ("The", "However")
            close()
            continue
        if _is_initial(tokens, i):
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            named = (low in evidence or t in table_heads or t.replace(".", "").isupper()
                     or (nxt[:1].isupper() and nxt.lower() not in _FUNCTION | TIME_NAMES))
            if not named:
                close()
                continue
        cur.append(t)
    close()
    return spans
