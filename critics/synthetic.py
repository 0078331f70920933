"""Synthetic negatives by rule, as FactCC does: meaning-changing variants of real sentences.

From a labelled positive (x, y) each transform rewrites y into y' that reads as fluently
but no longer says what x says, and (x, y') becomes a reject to train a critic on. The
transforms copy the ways the teacher changes meaning (shared/EVAL.md): a swapped name, a
changed number or time, a negation added or lost, swapped roles ("A killed B" -> "B killed
A"), a dropped clause, an added claim. Each is a heuristic over surface patterns (no
tagger ships here) that returns ``None`` when its pattern is absent, rather than guess.

Everything is deterministic under ``seed``: a row's variants depend only on the seed, the
row's id and the corpus the names and claims come from.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace

from distill.critics.labels import LabelRow

#: transform -> the ``M`` kind of labels it imitates
TRANSFORMS = {"entity_swap": "fact", "number_change": "number", "time_change": "time", "negation": "negation",
              "role_swap": "role", "clause_drop": "dropped", "clause_insert": "added"}

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
TIME_GROUPS = (("yesterday", "today", "tomorrow"), ("this morning", "this afternoon", "this evening", "tonight"),
               ("last week", "next week"), ("last month", "next month"), ("last year", "next year"),
               ("last night", "tomorrow night"), WEEKDAYS, MONTHS)
#: a number word is changed to another of its own magnitude ("thirty" -> "fifty", never -> "million")
NUMBER_CLASSES = (("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
                   "fifteen"), ("twenty", "thirty", "forty", "fifty", "sixty"), ("hundred", "thousand", "million"))
NUMBER_WORDS = tuple(w for c in NUMBER_CLASSES for w in c)
AUX = ("is", "are", "was", "were", "will", "would", "could", "should", "has", "have", "had", "may", "might",
       "must", "can", "does", "do", "did")
NEG_OFF = ((r"\bcannot\b", "can"), (r"\bcan't\b", "can"), (r"\bwon't\b", "will"), (r"\b(\w+)n't\b", r"\1"),
           (r"\b(\w+) not\b", r"\1"), (r"\bnever ", ""), (r"\bno longer ", ""))
PREPS = ("of", "in", "on", "at", "for", "from", "to", "with", "by", "after", "before", "during", "until", "into",
         "over", "under", "near", "across", "through", "since", "about", "against")
SUBORD = ("because", "after", "before", "when", "while", "although", "though", "since", "until", "as", "so", "but",
          "which", "who", "where", "despite", "amid")
FUNCTION = {"the", "a", "an", "this", "that", "these", "those", "it", "he", "she", "they", "we", "i", "you", "his",
            "her", "their", "our", "its", "there", "in", "on", "at", "after", "before", "when", "if", "but", "and",
            "for", "some", "many", "most", "all", "one", "two", "three", "a", "more", "mr", "mrs", "ms", "dr"}
CAP_SPAN = re.compile(r"\b[A-Z][\w'.-]*(?:\s+(?:of\s+|the\s+)?[A-Z][\w'.-]*)*")
NUM = re.compile(r"\b\d+(?:[.,]\d+)?\b")


def capitalised_spans(s: str, known: set[str] | None = None) -> list[re.Match]:
    """Name-like spans: runs of capitalised words, leaving out weekdays and months (those
    are times) and a sentence-initial word that is a function word or, when ``known`` is
    given, is not a name seen capitalised mid-sentence ("Heavy rain ...")."""
    out = []
    for m in CAP_SPAN.finditer(s):
        first = m.group().split()[0]
        if m.start() == 0 and (first.lower() in FUNCTION or (known is not None and m.group().rstrip(".'") not in known
                                                             and first not in known)):
            rest = m.group()[len(first):].lstrip()
            if not rest:
                continue
            m = CAP_SPAN.match(s, m.start() + m.group().index(rest, len(first)))
            if m is None:
                continue
        name = m.group().rstrip(".'")
        if name in WEEKDAYS or name in MONTHS or name == "I":
            continue
        out.append(m)
    return out


def names_in(sentences: list[str]) -> list[str]:
    """The distinct name-like spans of a corpus, in first-seen order; a sentence-initial
    one only if the corpus also has it capitalised mid-sentence."""
    mid = {m.group().rstrip(".'") for s in sentences for m in capitalised_spans(s) if m.start() > 0}
    known = _known(mid)
    return list(dict.fromkeys(m.group().rstrip(".'") for s in sentences for m in capitalised_spans(s, known)))


def _known(names) -> set[str]:
    """Names a sentence may start with: the names themselves and their last words ("Howard"
    of "Mr Howard"), not every word of them ("Heavy" of "Heavy Industries")."""
    return set(names) | {n.split()[-1] for n in names}


def _shape(name: str) -> tuple[int, bool, bool]:
    """Replace a name by one of its shape: as many words, a demonym ("Israeli",
    "Australian") for a demonym, a titled person ("Mr Howard") for a titled person."""
    return (len(name.split()), " " not in name and bool(re.search(r"(?:[ie]an|can|ese|ish|[lnkq]i)$", name)),
            name.split()[0].lower().rstrip(".") in ("mr", "mrs", "ms", "dr", "prime", "president", "senator"))


def _case_like(new: str, old: str) -> str:
    return new[0].upper() + new[1:] if old[:1].isupper() else new


def _sentence(s: str) -> str:
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"\s+([,.;:!?])", r"\1", s)
    return s[0].upper() + s[1:] if s else s


def entity_swap(s: str, rng: random.Random, names: list[str]) -> str | None:
    spans = capitalised_spans(s, _known(names))
    if not spans:
        return None
    old = rng.choice(spans).group().rstrip(".'")
    pool = [n for n in names if n != old and n not in s]
    pool = [n for n in pool if _shape(n) == _shape(old)] or pool
    if not pool:
        return None
    return s.replace(old, rng.choice(pool))


def number_change(s: str, rng: random.Random) -> str | None:
    digits = list(NUM.finditer(s))
    words = [m for m in re.finditer(r"\b(" + "|".join(NUMBER_WORDS) + r")\b", s, re.I)]
    if not digits and not words:
        return None
    m = rng.choice(digits + words)
    old = m.group()
    if m in words:
        same = next(c for c in NUMBER_CLASSES if old.lower() in c)
        new = _case_like(rng.choice([w for w in same if w != old.lower()]), old)
    else:
        v = float(old.replace(",", ""))
        is_year = old.isdigit() and 1900 <= v <= 2100
        step = rng.choice([1, 2, 3]) if is_year else rng.choice([2, 3, 10])
        nv = v + step if is_year or rng.random() < 0.5 or v <= step else (v * step if step < 10 else v + step)
        new = f"{nv:g}" if "." in old else str(int(nv))
    return s[:m.start()] + new + s[m.end():]


def time_change(s: str, rng: random.Random) -> str | None:
    hits = [(m, g) for g in TIME_GROUPS for m in re.finditer(r"\b(" + "|".join(g) + r")\b", s, re.I)]
    if not hits:
        return None
    m, group = rng.choice(hits)
    old = m.group()
    new = rng.choice([t for t in group if t.lower() != old.lower()])
    return s[:m.start()] + (new if new[0].isupper() else _case_like(new, old)) + s[m.end():]


def negation(s: str, rng: random.Random) -> str | None:
    """Remove a negation when there is one, else put ``not`` after the first auxiliary."""
    for pat, rep in NEG_OFF:
        if pat == r"\b(\w+) not\b":
            m = re.search(r"\b(" + "|".join(AUX) + r") not\b", s, re.I)
            if m:
                return _sentence(s[:m.start()] + m.group(1) + s[m.end():])
            continue
        new = re.sub(pat, rep, s, count=1, flags=re.I)
        if new != s:
            return _sentence(new)
    m = re.search(r"(?<=\s)(" + "|".join(AUX) + r")\b", s)
    if not m:
        return None
    return s[:m.start()] + ("cannot" if m.group() == "can" else m.group() + " not") + s[m.end():]


def _np_end(tokens: list[str], i: int) -> int:
    """End (exclusive) of a noun phrase starting at ``tokens[i]``: a determiner or a
    capitalised word, then up to four words until a preposition, conjunction or comma."""
    if i >= len(tokens) or not (tokens[i].lower() in ("the", "a", "an", "his", "her", "their") or tokens[i][:1].isupper()):
        return i
    j = i + 1
    while j < len(tokens) and j - i < 5:
        w = tokens[j].lower().strip(",.;:!?")
        if w in PREPS or w in SUBORD or w in ("and", "or", "to", "that") or w in AUX:
            break
        j += 1
        if tokens[j - 1][-1:] in ",.;:!?":
            break
    return j


def role_swap(s: str, rng: random.Random) -> str | None:
    """"A <verb> B" -> "B <verb> A", the verb being the first past-tense word (``-ed`` or a
    common irregular) after a short subject; ``None`` unless both sides look like noun phrases."""
    body, end = (s[:-1], s[-1]) if s[-1:] in ".!?" else (s, "")
    toks = body.split()
    irregular = {"beat", "hit", "met", "shot", "struck", "caught", "left", "sent", "told", "took", "saw", "led",
                 "fought", "sold", "bought", "brought", "overtook", "defeated"}
    for v in range(1, min(len(toks) - 1, 6)):
        w = toks[v].lower()
        if not (w.endswith("ed") or w in irregular) or toks[v - 1].endswith(","):
            continue
        if _np_end(toks[:v], 0) != v:
            return None
        o_end = _np_end(toks, v + 1)
        if o_end == v + 1:
            return None
        subj, obj = toks[:v], toks[v + 1:o_end]
        tail = obj[-1][-1] if obj[-1][-1:] in ",;:" else ""
        obj[-1] = obj[-1].rstrip(",;:")
        if subj[0].lower() in ("the", "a", "an", "his", "her", "their"):
            subj[0] = subj[0].lower()
        out = " ".join(obj + toks[v:v + 1] + subj) + tail + (" " + " ".join(toks[o_end:]) if toks[o_end:] else "")
        return _sentence(out + end)
    return None


def clause_drop(s: str, rng: random.Random) -> str | None:
    """Remove a subordinate clause, a clause after a comma or dash, or a trailing
    prepositional phrase; ``None`` when what is left would be under four words."""
    body, end = (s[:-1], s[-1]) if s[-1:] in ".!?" else (s, ".")
    cands = []
    for m in re.finditer(r",\s+(?:" + "|".join(SUBORD) + r")\b[^,]*,", body):
        cands.append(body[:m.start()] + body[m.end() - 1:].lstrip(",").rstrip())
    # a cut before a clause that is not the main one: "..., which ...", "... - guard it", "... because ..."
    lead = r"(?:" + "|".join(SUBORD) + r"|and|including|\w+ing)\b"
    for m in re.finditer(r"(?:,\s+(?=" + lead + r")|\s+-\s|\s+(?=(?:" + "|".join(SUBORD) + r")\b))", body):
        cands.append(body[:m.start()])
    for m in re.finditer(r"\s+(?=(?:" + "|".join(PREPS) + r")\s+[^,]+$)", body):
        if len(body[m.end():].split()) <= 6:
            cands.append(body[:m.start()])
    cands = [c.rstrip(" ,;:-") for c in cands]
    cands = [_sentence(c) + end for c in cands if len(c.split()) >= 4 and c.strip() != body.strip()]
    return rng.choice(sorted(set(cands))) if cands else None


def clause_insert(s: str, rng: random.Random, claims: list[str], names: list[str] = ()) -> str | None:
    """Append ``, and <another sentence of the corpus>``."""
    pool = [c for c in claims if c.strip() and c.strip() not in s]
    if not pool:
        return None
    other = rng.choice(pool).strip().rstrip(".!?")
    first = other.split()[0]
    if first.lower() in FUNCTION or not any(n.startswith(first) for n in names):
        other = other[0].lower() + other[1:]
    body, end = (s[:-1], s[-1]) if s[-1:] in ".!?" else (s, ".")
    return f"{body}, and {other}{end}"


@dataclass(frozen=True)
class Synth:
    """Settings of :func:`synthesize`: ``per_positive`` variants of each positive's y (a
    fraction gives one variant to that share of positives), from ``transforms``."""

    per_positive: float = 1.0
    seed: int = 0
    transforms: tuple[str, ...] = tuple(TRANSFORMS)


def variants(s: str, rng: random.Random, names: list[str], claims: list[str],
             transforms: tuple[str, ...] = tuple(TRANSFORMS)) -> list[tuple[str, str]]:
    """``(transform, y')`` for every transform in ``transforms`` that applies to ``s``, in
    an order shuffled by ``rng``; no two equal and none equal to ``s``."""
    order = list(transforms)
    rng.shuffle(order)
    out: list[tuple[str, str]] = []
    for t in order:
        if t == "entity_swap":
            v = entity_swap(s, rng, names)
        elif t == "clause_insert":
            v = clause_insert(s, rng, claims, names)
        else:
            v = globals()[t](s, rng)
        if v and v.strip() != s.strip() and all(v != o for _, o in out):
            out.append((t, v))
    return out


def synthesize(rows: list[LabelRow], synth: Synth) -> list[LabelRow]:
    """Synthetic rejects from the positives of ``rows`` (label 0, letter ``M``, kind
    ``synthetic:<transform>``, the source row's split and group). Names and added claims
    come from ``rows`` only, so a held-out sentence never leaks into training."""
    unknown = [t for t in synth.transforms if t not in TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown synthetic transform(s) {unknown}; known: {', '.join(TRANSFORMS)}")
    sentences = list(dict.fromkeys(t for r in rows for t in (r.x, r.y)))
    group_of: dict[str, set[str]] = {}
    for r in rows:
        for t in (r.x, r.y):
            group_of.setdefault(t, set()).add(r.group)
    # names from keeps only: a degenerate reject may be in another language ("Hügeln")
    names = names_in([t for r in rows if r.label == 1 for t in (r.x, r.y)])
    out: list[LabelRow] = []
    for r in rows:
        if r.label != 1:
            continue
        rng = random.Random(f"{synth.seed}:{r.id}")
        k = int(synth.per_positive) + (rng.random() < synth.per_positive % 1)
        claims = [c for c in sentences if r.group not in group_of[c]]  # another source's claim
        for t, v in variants(r.y, rng, names, claims, synth.transforms)[:k]:
            if v.strip() == r.x.strip():
                continue
            out.append(replace(r, id=f"{r.id}~{t}", y=v, label=0, kind=f"synthetic:{t}", letter="M",
                               kinds=(TRANSFORMS[t],), scores={}))
    return out
