"""Model-free summary critics: does y cover what x is about (:class:`Coverage`), and is it
written rather than copied (:class:`Extractive`)? x = record.input is the document, y =
record.output a candidate summary (one sentence, usually).

Both are lexical, so both are blunt: coverage counts a key word only when y uses it (or a
word with its stem), so a summary that paraphrases with synonyms scores lower than it
deserves, which is why its default minimum is low; extractive measures copying of one
sentence, not fusion of several. What they catch cheaply is the summaries a model-based
critic would waste time on: off-topic or side-detail answers, and copied lead sentences.
"""

from __future__ import annotations

import functools
import re
from collections import Counter

from distill.critics.base import Critic, Threshold, Verdict, above, below
from distill.critics.names import TIME_NAMES, Text
from distill.record import Record

__all__ = ["Coverage", "Extractive", "key_units", "longest_common_subsequence", "STOPWORDS"]

# Function words, and words that are in nearly every news story without being what it is
# about (reporting verbs, "people", "year"). Times are the consistency critic's business.
STOPWORDS = frozenset("""a about above after again against all almost also although always am among an and another
any are aren't around as at away back be became because become been before being below between both but by can
cannot could couldn't did didn't do does doesn't doing don't done down during each either else even ever every
few for from further get gets got had hadn't has hasn't have haven't having he he'd he'll he's her here here's
hers herself him himself his how how's however i i'd i'll i'm i've if in into is isn't it it's its itself just
least less let's like made make many may me might more most much must mustn't my myself near need neither never
no nor not now of off often on once one only onto or other others ought our ours ourselves out over own per
perhaps put rather same shall shan't she she'd she'll she's should shouldn't since so some still such than that
that's the their theirs them themselves then there there's these they they'd they'll they're they've this those
though through thus to too toward towards under until up upon us very via was wasn't we we'd we'll we're we've
were weren't what what's whatever when when's where where's whether which while who who's whom whose why why's
will with within without won't would wouldn't yet you you'd you'll you're you've your yours yourself yourselves
said say says saying told tell tells according added adds claimed including include includes
mr mrs ms dr today yesterday tomorrow tonight morning afternoon evening night week weeks month months year years
day days time times people new first last next two three four five six seven eight nine ten dozen dozens hundred
hundreds thousand thousands million millions billion billions percent cent""".split()) | TIME_NAMES

_WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*")
_TOKEN = re.compile(r"\w+")


@functools.cache
def _stemmer():
    from nltk.stem.porter import PorterStemmer  # nltk comes with rouge-score

    return PorterStemmer()


@functools.lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    return _stemmer().stem(word.lower())


def _plain(token: str) -> str:
    """Lowercased, one apostrophe, no possessive: "Council’s" -> "council"."""
    w = token.lower().replace("’", "'")
    return w[:-2] if w.endswith("'s") else w


def _sentences(text: str) -> list[str]:
    from distill.data.heldout import split_sentences

    return split_sentences(text) or ([text] if text.strip() else [])


def key_units(x: str, lead_sentences: int = 1, lead_weight: float = 2.0) -> list[tuple[str, float, object]]:
    """The key units of a document, heaviest first: ``(key, weight, unit)`` where ``unit`` is a
    :class:`~distill.critics.names.Span` (a name: key ``"name:<text>"``) or a stem (key
    ``"word:<stem>"``).

    Weight = the sum over the unit's occurrences of its sentence's weight: ``lead_weight`` for
    the first ``lead_sentences`` sentences (the lead of a news story states who, what, where;
    an abstract's first sentence its topic), 1 for the others. A name's later mention by its
    last word alone ("John Howard" ... "Mr Howard") counts for the full name. Words inside a
    name are the name's, not content words of their own. Ties keep the order of first
    occurrence."""
    names: dict[tuple[str, ...], list] = {}  # canonical tokens -> [weight, first span, first position]
    words: dict[str, list] = {}
    pos = 0
    for i, sent in enumerate(_sentences(x)):
        w = lead_weight if i < lead_sentences else 1.0
        spans = Text(sent, other=x).spans
        for sp in spans:
            key = tuple(sp.tokens)
            if len(key) == 1 and key not in names:  # "Howard" after "John Howard"
                key = next((k for k in names if len(k) > 1 and k[-1] == key[0]), key)
            entry = names.setdefault(key, [0.0, sp, pos])
            entry[0] += w
            pos += 1
        in_names = {t.lower() for sp in spans for t in sp.words}
        for token in _WORD.findall(sent):
            low = token.lower().replace("’", "'")
            if len(token) < 3 or low in STOPWORDS or low in in_names:
                continue
            s = stem(_plain(token))
            entry = words.setdefault(s, [0.0, s, pos])
            entry[0] += w
            pos += 1
    units = [("name:" + e[1].text, e[0], e[1], e[2]) for e in names.values()]
    units += [("word:" + s, e[0], s, e[2]) for s, e in words.items()]
    units.sort(key=lambda u: (-u[1], u[3]))
    return [(k, w, u) for k, w, u, _ in units]


class Coverage(Critic):
    """Keeps a summary when ``coverage`` >= ``min_coverage``.

    ``coverage`` = the weighted share of the document's top ``top_n`` key units
    (:func:`key_units`: its names and its most frequent content words, stopwords out, Porter
    stems, occurrences in the lead weighted ``lead_weight``) that the summary contains. A name
    counts as found when y still names it (:meth:`~distill.critics.names.Text.keeps`: the
    surname alone, an acronym or a demonym will do); a word when y has a word of the same stem.
    A document with no key unit gives 1.0 (nothing to miss).

    Why these defaults: a one-sentence summary of 80-350 words has room for the few things the
    story is about, not for all of them; ten units is about what such a sentence can carry, so
    a good summary finds a fair share of them. A faithful summary in other words still shares
    names and some key words, so the minimum is lenient: it drops off-topic answers and side
    details, which share almost none of the top units, not rewordings. Measured on 30 lee
    documents (data/summarization): the leads score 0.45-1.0, SmolLM2-135M-Instruct's own
    summaries a median of 0.58 (the few under the minimum are hallucinated or about a side
    story), another document's summary a median of 0.0.
    """

    name = "coverage"
    score_names = ("coverage",)

    def __init__(self, min_coverage: float = 0.2, top_n: int = 10, lead_sentences: int = 1,
                 lead_weight: float = 2.0, keep_rejects: bool = True) -> None:
        super().__init__(keep_rejects)
        if not 0 <= min_coverage <= 1:
            raise ValueError(f"min_coverage must be in [0, 1], got {min_coverage}")
        if top_n < 1 or lead_sentences < 0 or lead_weight <= 0:
            raise ValueError("top_n >= 1, lead_sentences >= 0 and lead_weight > 0 are required")
        self.min_coverage, self.top_n = min_coverage, top_n
        self.lead_sentences, self.lead_weight = lead_sentences, lead_weight
        self._units: dict[str, list] = {}  # the last documents' top units: a document has many summaries

    def thresholds(self) -> list[Threshold]:
        return [("coverage", ">=", self.min_coverage)]

    def top_units(self, x: str) -> list[tuple[str, float, object]]:
        if x not in self._units:
            if len(self._units) >= 1024:
                self._units.clear()
            self._units[x] = key_units(x, self.lead_sentences, self.lead_weight)[: self.top_n]
        return self._units[x]

    def coverage(self, x: str, y: str) -> float:
        units = self.top_units(x)
        total = sum(w for _, w, _ in units)
        if not total:
            return 1.0
        ty, stems = Text(y, other=x), {stem(_plain(w)) for w in _WORD.findall(y)}
        found = sum(w for _, w, u in units if (u in stems if isinstance(u, str) else ty.keeps(u)))
        return found / total

    def judge(self, record: Record) -> Verdict:
        c = record.scores["coverage"] = self.coverage(record.input, record.output)
        return True if c >= self.min_coverage else (False, below("coverage", self.min_coverage))


def longest_common_subsequence(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for ta in a:
        cur = [0]
        for j, tb in enumerate(b):
            cur.append(prev[j] + 1 if ta == tb else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


class Extractive(Critic):
    """Drops summaries that copy the document: keeps y when ``extract`` <= ``max_extract``.

    ``extract`` = ROUGE-L precision of y against its best-matching sentence of x: the longest
    common subsequence of lowercased word tokens (``\\w+``) of y and one sentence of x, over
    y's token count, maximised over x's sentences (0.0 for an empty y).

    Why ROUGE-L precision and not the longest contiguous common run: a copied sentence with
    words deleted ("sentence compression") or one word swapped is still a copy, and a
    subsequence sees it as one (1.0, or (n-1)/n) where a contiguous run halves at every edit;
    per sentence, because against the whole document almost any sentence's words occur in
    order somewhere. What it lets through: a fusion of halves copied from two sentences
    (about 0.5 against each); a summary reusing a few key phrases scores well under 0.8.
    """

    name = "extractive"
    score_names = ("extract",)

    def __init__(self, max_extract: float = 0.8, keep_rejects: bool = True) -> None:
        super().__init__(keep_rejects)
        if not 0 <= max_extract <= 1:
            raise ValueError(f"max_extract must be in [0, 1], got {max_extract}")
        self.max_extract = max_extract

    def thresholds(self) -> list[Threshold]:
        return [("extract", "<=", self.max_extract)]

    @staticmethod
    def extract(x: str, y: str) -> float:
        ty = _TOKEN.findall(y.lower())
        if not ty:
            return 0.0
        best, cy = 0, Counter(ty)
        for sent in _sentences(x):
            ts = _TOKEN.findall(sent.lower())
            if (cy & Counter(ts)).total() > best:  # the LCS is at most the shared words: skip the rest
                best = max(best, longest_common_subsequence(ty, ts))
        return best / len(ty)

    def judge(self, record: Record) -> Verdict:
        e = record.scores["extract"] = self.extract(record.input, record.output)
        return True if e <= self.max_extract else (False, above("extract", self.max_extract))
