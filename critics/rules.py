"""Rule critics: cheap, model-free checks on a pair (x = record.input, y = record.output).

They catch the CPU teacher's failures that the metrics miss (see shared/EVAL.md): copies
and one-word edits (:class:`CopyCritic`, :class:`LexicalDissimilarity`), dropped clauses
(:class:`LengthRatio`), number and negation flips (:class:`NumberConsistency`,
:class:`NegationFlip`). Wrappers, loops and language switches are in ``wellformed.py``.
Each critic writes its numbers into ``record.scores`` and names the failed threshold.
"""

from __future__ import annotations

import re
from decimal import Decimal

from rapidfuzz.distance import Levenshtein

from distill.critics.base import Critic, Threshold, Verdict, above, below
from distill.critics.wellformed import WellFormed
from distill.record import Record

__all__ = ["LengthRatio", "Compression", "LexicalDissimilarity", "NumberConsistency",
           "CopyCritic", "WellFormed", "NegationFlip", "extract_numbers", "normalize_text"]


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def _ratio(x: str, y: str) -> float:
    # an empty input makes every non-empty output infinitely long, never "fine"
    lx, ly = len(x.strip()), len(y.strip())
    return ly / lx if lx else (float("inf") if ly else 0.0)


class LengthRatio(Critic):
    """len(y)/len(x) in characters inside [min_ratio, max_ratio] (bounds inclusive; either
    may be None). The Impossible Distillation window; the lower bound catches dropped
    clauses, the upper one added content and rambling."""

    name = "length_ratio"
    score_names = ("length_ratio",)

    def __init__(self, min_ratio: float | None = 0.8, max_ratio: float | None = 1.5,
                 keep_rejects: bool = True) -> None:
        super().__init__(keep_rejects)
        _check(min_ratio is None or max_ratio is None or min_ratio <= max_ratio,
               f"length_ratio: min_ratio {min_ratio} > max_ratio {max_ratio}")
        self.min_ratio, self.max_ratio = min_ratio, max_ratio

    def thresholds(self) -> list[Threshold]:
        return [("length_ratio", op, v) for op, v in ((">=", self.min_ratio), ("<=", self.max_ratio)) if v is not None]

    def judge(self, record: Record) -> Verdict:
        r = record.scores["length_ratio"] = _ratio(record.input, record.output)
        if self.min_ratio is not None and r < self.min_ratio:
            return False, below("length_ratio", self.min_ratio)
        if self.max_ratio is not None and r > self.max_ratio:
            return False, above("length_ratio", self.max_ratio)
        return True


class Compression(Critic):
    """Summaries: len(y) < max_ratio * len(x), and with ``min_ratio`` also len(y) >= min_ratio *
    len(x), lengths counted in ``unit``: "chars" (stripped characters) or "words" (whitespace-
    separated tokens). The upper bound is strict (the paper's |y| < 0.8|x|), so a ratio equal
    to max_ratio fails as ``compression>0.8``; the lower one is inclusive and fails as
    ``compression<0.05`` (a one-line summary of a long article that says almost nothing). The
    score ``compression`` is the ratio in ``unit``."""

    name = "compression"
    score_names = ("compression",)
    UNITS = ("chars", "words")

    def __init__(self, max_ratio: float = 0.8, min_ratio: float | None = None, unit: str = "chars",
                 keep_rejects: bool = True) -> None:
        super().__init__(keep_rejects)
        _check(max_ratio > 0, f"compression: max_ratio must be > 0, got {max_ratio}")
        _check(min_ratio is None or 0 <= min_ratio < max_ratio,
               f"compression: min_ratio must be >= 0 and < max_ratio {max_ratio}, got {min_ratio}")
        _check(unit in self.UNITS, f"compression: unit must be 'chars' or 'words', not {unit!r}")
        self.max_ratio, self.min_ratio, self.unit = max_ratio, min_ratio, unit

    def thresholds(self) -> list[Threshold]:
        low = [("compression", ">=", self.min_ratio)] if self.min_ratio is not None else []
        return low + [("compression", "<", self.max_ratio)]

    def ratio(self, x: str, y: str) -> float:
        if self.unit == "words":
            nx, ny = len(x.split()), len(y.split())
            return ny / nx if nx else (float("inf") if ny else 0.0)
        return _ratio(x, y)

    def judge(self, record: Record) -> Verdict:
        r = record.scores["compression"] = self.ratio(record.input, record.output)
        if self.min_ratio is not None and r < self.min_ratio:
            return False, below("compression", self.min_ratio)
        return True if r < self.max_ratio else (False, above("compression", self.max_ratio))


_WORD = re.compile(r"\w+")


class LexicalDissimilarity(Critic):
    """y must differ in wording from x: ROUGE-L F1 (rouge-score, its default tokenizer)
    <= max_rouge_l; optionally sentence BLEU(y against x, sacrebleu, 0-1) <= max_bleu and
    Jaccard of lowercased word sets <= max_token_overlap. A check set to None is off and
    its score is not computed. Bounds are inclusive."""

    name = "lexical"
    score_names = ("rouge_l", "bleu", "token_overlap")

    def __init__(self, max_rouge_l: float | None = 0.75, max_bleu: float | None = None,
                 max_token_overlap: float | None = None, use_stemmer: bool = False,
                 keep_rejects: bool = True) -> None:
        super().__init__(keep_rejects)
        for k, v in (("max_rouge_l", max_rouge_l), ("max_bleu", max_bleu), ("max_token_overlap", max_token_overlap)):
            _check(v is None or 0 <= v <= 1, f"lexical: {k} must be in [0, 1], got {v}")
        self.max_rouge_l, self.max_bleu, self.max_token_overlap = max_rouge_l, max_bleu, max_token_overlap
        self._rouge = self._bleu = None
        # imported here: rouge_score pulls in nltk (~2 s), too slow for `import distill.critics`
        if max_rouge_l is not None:
            from rouge_score import rouge_scorer
            self._rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
        if max_bleu is not None:
            from sacrebleu.metrics import BLEU
            self._bleu = BLEU(effective_order=True)  # effective order: short sentences don't score 0

    def thresholds(self) -> list[Threshold]:
        return [(k, "<=", v) for k, v in (("rouge_l", self.max_rouge_l), ("bleu", self.max_bleu),
                                          ("token_overlap", self.max_token_overlap)) if v is not None]

    def judge(self, record: Record) -> Verdict:
        x, y, s = record.input, record.output, record.scores
        if self._rouge is not None:
            s["rouge_l"] = self._rouge.score(x, y)["rougeL"].fmeasure
        if self._bleu is not None:
            s["bleu"] = self._bleu.sentence_score(y, [x]).score / 100.0
        if self.max_token_overlap is not None:
            a, b = set(_WORD.findall(x.lower())), set(_WORD.findall(y.lower()))
            s["token_overlap"] = len(a & b) / len(a | b) if a | b else 1.0
        for key, thr in (("rouge_l", self.max_rouge_l), ("bleu", self.max_bleu), ("token_overlap", self.max_token_overlap)):
            if thr is not None and s[key] > thr:
                return False, above(key, thr)
        return True


_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
# "one" is usually a pronoun in these contexts, not the number 1
_ONE_PRONOUN_BEFORE = {"no", "the", "any", "every", "each", "this", "that", "which", "little"}
_ONE_PRONOUN_AFTER = {"of", "another"}
_NUM_TOKEN = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(\s*(?:%|per ?cent\b))?|[a-z]+(?:-[a-z]+)?")


def _number_word(w: str) -> tuple[str, int] | None:
    """(kind, value) of a spelled-out number word; "twenty-five" counts as a unit."""
    if w in _UNITS:
        return "unit", _UNITS[w]
    if w in _TENS:
        return "tens", _TENS[w]
    if w in _SCALES:
        return "scale", _SCALES[w]
    tens, _, unit = w.partition("-")
    if tens in _TENS and 0 < _UNITS.get(unit, 0) < 10:
        return "unit", _TENS[tens] + _UNITS[unit]
    return None


def _read_number_words(words: list[str], i: int) -> tuple[int, int]:
    """Value of the number spelled from words[i] on, and the index after it. A word that
    cannot continue the number ("five six", "twenty thirty") starts the next one."""
    total = cur = 0
    last = None
    while i < len(words):
        if words[i] == "and" and last == "scale" and i + 1 < len(words) and _number_word(words[i + 1]):
            i += 1  # "one hundred and five"
            continue
        nw = _number_word(words[i])
        if nw is None:
            break
        kind, v = nw
        if last is not None and kind != "scale" and last != "scale" and not (last == "tens" and kind == "unit" and v < 10):
            break
        if kind == "scale":
            cur = max(cur, 1) * v
            if v > 100:
                total, cur = total + cur, 0
        else:
            cur += v
        last, i = kind, i + 1
    return total + cur, i


def _canon(digits: str, frac: str | None = None, scale: int = 1, percent: bool = False) -> str:
    v = Decimal(digits.replace(",", "") + (frac or "")) * scale
    s = format(v.normalize(), "f")  # 1,000 -> 1000, 3.50 -> 3.5, 1E+3 -> 1000
    return s + "%" if percent else s


def extract_numbers(text: str) -> set[str]:
    """Canonical numbers in ``text``: digits ("1,000" == "1000" == "one thousand"),
    decimals ("3.50" == "3.5"), percentages ("50%" == "50 percent" == "fifty per cent"),
    spelled-out numbers, and digits times a scale word ("2.5 million" == "2500000")."""
    toks = list(_NUM_TOKEN.finditer(text.lower()))
    words = [m.group(0) for m in toks]
    out: set[str] = set()
    i = 0
    while i < len(toks):
        m = toks[i]
        if m.group(1):
            scale = _SCALES.get(words[i + 1], 1) if i + 1 < len(words) and not m.group(3) else 1
            out.add(_canon(m.group(1), m.group(2), scale, bool(m.group(3))))
            i += 2 if scale > 1 else 1
        elif _number_word(words[i]) and not (words[i] == "one" and (
                (i > 0 and words[i - 1] in _ONE_PRONOUN_BEFORE)
                or (i + 1 < len(words) and words[i + 1] in _ONE_PRONOUN_AFTER))):
            value, i = _read_number_words(words, i)
            pct = words[i:i + 1] == ["percent"] or words[i:i + 2] == ["per", "cent"]
            out.add(_canon(str(value), percent=pct))
        else:
            i += 1
    return out


class NumberConsistency(Critic):
    """Every number in y appears in x (``numbers_not_in_input``); with ``symmetric``,
    also every number in x appears in y (``numbers_dropped``). Scores: how many numbers
    were added and dropped."""

    name = "numbers"
    score_names = ("numbers_added", "numbers_dropped")

    def __init__(self, symmetric: bool = False, keep_rejects: bool = True) -> None:
        super().__init__(keep_rejects)
        self.symmetric = symmetric

    def thresholds(self) -> list[Threshold]:
        return [("numbers_added", "<=", 0.0)] + ([("numbers_dropped", "<=", 0.0)] if self.symmetric else [])

    def judge(self, record: Record) -> Verdict:
        nx, ny = extract_numbers(record.input), extract_numbers(record.output)
        record.scores["numbers_added"] = float(len(ny - nx))
        record.scores["numbers_dropped"] = float(len(nx - ny))
        if ny - nx:
            return False, "numbers_not_in_input"
        if self.symmetric and nx - ny:
            return False, "numbers_dropped"
        return True


def normalize_text(text: str) -> str:
    """Lowercase, punctuation removed, whitespace collapsed: what a copy is compared on."""
    return " ".join(_WORD.findall(text.lower().replace("_", " ")))


class CopyCritic(Critic):
    """Copies and trivial edits. After :func:`normalize_text`: identical (``copy``);
    character edit distance / longer length below min_edit (``edit_distance<0.1``);
    at most max_word_edits words inserted, deleted or swapped (``word_edits<=1``).
    Either near-copy check is off when set to None."""

    name = "copy"
    score_names = ("edit_distance", "word_edits")

    def __init__(self, min_edit: float | None = 0.1, max_word_edits: int | None = 1,
                 keep_rejects: bool = True) -> None:
        super().__init__(keep_rejects)
        _check(min_edit is None or 0 <= min_edit <= 1, f"copy: min_edit must be in [0, 1], got {min_edit}")
        _check(max_word_edits is None or max_word_edits >= 0, f"copy: max_word_edits must be >= 0, got {max_word_edits}")
        self.min_edit, self.max_word_edits = min_edit, max_word_edits

    def thresholds(self) -> list[Threshold]:
        # an exact copy (after normalize_text) also goes; it has edit_distance 0, below any min_edit > 0
        return ([("edit_distance", ">=", self.min_edit)] if self.min_edit is not None else []) + (
            [("word_edits", ">", float(self.max_word_edits))] if self.max_word_edits is not None else [])

    def judge(self, record: Record) -> Verdict:
        x, y = normalize_text(record.input), normalize_text(record.output)
        d = record.scores["edit_distance"] = Levenshtein.normalized_distance(x, y)
        w = Levenshtein.distance(x.split(), y.split())
        record.scores["word_edits"] = float(w)
        if x == y:
            return False, "copy"
        if self.min_edit is not None and d < self.min_edit:
            return False, below("edit_distance", self.min_edit)
        if self.max_word_edits is not None and w <= self.max_word_edits:
            return False, f"word_edits<={self.max_word_edits}"
        return True


_NEGATION = re.compile(r"\b(?:not|no|never|none|nobody|nothing|neither|nor|without|cannot|nowhere)\b"
                       r"|\w+n['’]t\b", re.IGNORECASE)


def count_negations(text: str) -> int:
    return len(_NEGATION.findall(text))


class NegationFlip(Critic):
    """A negation (not, no, never, n't, none, nobody, nothing, neither, nor, without, ...)
    in one of x/y but not the other: ``negation_mismatch``. With ``compare_counts`` the
    number of negations must match too (catches one of two negations lost). Score
    ``negation_diff``: negations in y minus negations in x."""

    name = "negation"
    score_names = ("negation_diff",)

    def __init__(self, compare_counts: bool = False, keep_rejects: bool = True) -> None:
        super().__init__(keep_rejects)
        self.compare_counts = compare_counts

    def thresholds(self) -> list[Threshold]:
        # without compare_counts the check is presence on each side, not a bound on negation_diff
        return [("negation_diff", ">=", 0.0), ("negation_diff", "<=", 0.0)] if self.compare_counts else []

    def judge(self, record: Record) -> Verdict:
        a, b = count_negations(record.input), count_negations(record.output)
        record.scores["negation_diff"] = float(b - a)
        mismatch = (a != b) if self.compare_counts else ((a > 0) != (b > 0))
        return (False, "negation_mismatch") if mismatch else True
