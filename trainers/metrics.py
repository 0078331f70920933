"""Reference-free paraphrase metrics for one pair (x = input, y = output).

Every function here scores a single pair; :mod:`distill.trainers.evaluate` averages them
over the held-out inputs. Definitions (the same text is the legend of ``results.md``):

- ``bleu``: sacrebleu sentence BLEU of y (hypothesis) against x (the one reference), on a
  0-1 scale: 13a tokenization, case-sensitive, n-grams up to 4, ``effective_order=True``
  (orders with no n-gram in y are left out, so a 3-word y is not 0 by construction) and
  sacrebleu's default ``exp`` smoothing (an order with 0 matches counts as
  1 / (2^k * ngrams of that order), k = how many zero orders so far).
  ``1 - bleu`` is the lexical diversity (self-BLEU in Niu et al. 2021).
- ``rouge_l``: ROUGE-L F1 of the longest common word subsequence (rouge-score's default
  tokenizer: lowercased, non-alphanumerics dropped; no stemming). Lower = more rewording.
- ``bertscore``: BERTScore-style greedy matching (Zhang et al. 2020) with the sentence
  encoder's contextual token embeddings, special tokens dropped, **no idf weighting and no
  baseline rescaling**: R = mean over x's tokens of the best cosine with a y token,
  P = mean over y's tokens of the best cosine with an x token, F1 = 2PR / (P + R).
  An empty side gives P = R = F1 = 0.
- ``bert_ibleu``: BERT-iBLEU (Niu et al. 2021; Jung et al. 2024, beta = 4), the weighted
  harmonic mean of semantic similarity and lexical dissimilarity:
  ``((beta / F1 + 1 / (1 - bleu)) / (beta + 1)) ** -1``; 0 when F1 <= 0 or bleu = 1
  (a copy scores 0).
- ``length_ratio``: words in y / words in x (whitespace split). Dropped content shows up
  as a ratio well under 1, which BERT-iBLEU does not punish (see shared/EVAL.md).
- ``is_copy``: y equals x after :func:`distill.critics.rules.normalize_text` (case,
  punctuation and spacing ignored). ``is_near_copy``: a copy, or what the ``copy`` critic
  rejects with its defaults (character edit distance < 0.1 or at most one word edited).
- ``degenerate``: the reason the ``wellformed`` critic (defaults) gives for y, or None:
  empty, multiline, wrapper/meta-text, wholly quoted, repetition loop, language switch,
  too few words, no end punctuation, lowercase start, unbalanced quotes/brackets.
"""

from __future__ import annotations

import numpy as np

BETA = 4.0


# (key in a model's metrics, column header, format); rates are shown as percentages
COLUMNS = [("bert_ibleu", "BERT-iBLEU ↑", ".3f"), ("bertscore_f1", "BERTScore F1", ".3f"),
           ("cosine", "cosine", ".3f"), ("one_minus_bleu", "1−BLEU", ".3f"), ("rouge_l", "ROUGE-L", ".3f"),
           ("length_ratio", "len ratio", ".2f"), ("accepted", "accepted", "%"), ("copy", "copy", "%"),
           ("near_copy", "near-copy", "%"), ("degenerate", "degenerate", "%"), ("empty", "empty", "%")]
LEGEND = """\
Means over all held-out inputs (x = input, y = the model's output; a failed output counts, it is not skipped):
- **BERT-iBLEU**: ((4 / BERTScore F1 + 1 / (1 − BLEU)) / 5)⁻¹ per pair (β = 4, Niu et al. 2021, Jung et al. 2024), \
0 for a copy. It rewards rewording and tolerates lost meaning: read it with *len ratio* and *accepted*.
- **BERTScore F1**: greedy cosine matching of the encoder's contextual token embeddings (special tokens dropped), \
R = mean over x's tokens of the best match in y, P the same from y, F1 = 2PR/(P+R); no idf weighting, no baseline rescaling.
- **cosine**: cosine of the sentence embeddings of x and y (same encoder). It cannot tell a contradiction from a paraphrase.
- **1−BLEU**: lexical diversity; BLEU = sacrebleu sentence BLEU of y against x, 0-1, 13a tokens, effective order, exp smoothing.
- **ROUGE-L**: F1 of the longest common word subsequence (rouge-score, lowercased, no stemming); lower = more rewording.
- **len ratio**: words in y / words in x; well under 1 means content was dropped.
- **accepted**: share of pairs every critic keeps (the `filter.critics` chain unless `eval.critics` is set).
- **copy**: y equals x ignoring case, punctuation and spacing. **near-copy**: a copy or what the `copy` critic rejects by \
default (character edit distance < 0.1, or at most one word edited).
- **degenerate**: the `wellformed` critic (defaults) rejects y: empty, several lines, wrapper/meta-text, wholly quoted, \
repetition loop, language switch, too few words, no end punctuation, lowercase start, unbalanced quotes. **empty**: y is empty.
Baselines: *copy* (y = x) shows what a score means for no change at all; the zero-/few-shot rows are the prompted teacher."""


def bleu(x: str, y: str) -> float:
    """Sentence BLEU of ``y`` against the reference ``x``, 0-1 (see the module docstring)."""
    return _bleu().sentence_score(y, [x]).score / 100.0


def rouge_l(x: str, y: str) -> float:
    """ROUGE-L F1 between ``x`` and ``y`` (symmetric)."""
    return _rouge().score(x, y)["rougeL"].fmeasure


def bertscore(x_tokens: np.ndarray, y_tokens: np.ndarray) -> tuple[float, float, float]:
    """(P, R, F1) of greedy cosine matching between token embeddings (rows) of the
    reference ``x`` and the candidate ``y``. Rows need not be normalised."""
    if len(x_tokens) == 0 or len(y_tokens) == 0:
        return 0.0, 0.0, 0.0
    a = x_tokens / np.linalg.norm(x_tokens, axis=1, keepdims=True).clip(min=1e-12)
    b = y_tokens / np.linalg.norm(y_tokens, axis=1, keepdims=True).clip(min=1e-12)
    sim = a @ b.T  # (len x, len y)
    r = float(sim.max(axis=1).mean())
    p = float(sim.max(axis=0).mean())
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return p, r, f


def bert_ibleu(bertscore_f1: float, bleu_01: float, beta: float = BETA) -> float:
    """BERT-iBLEU from BERTScore F1 and BLEU (0-1)."""
    if bertscore_f1 <= 0 or bleu_01 >= 1:
        return 0.0
    return (beta + 1) / (beta / bertscore_f1 + 1 / (1 - bleu_01))


def length_ratio(x: str, y: str) -> float:
    nx = len(x.split())
    return len(y.split()) / nx if nx else 0.0


def is_copy(x: str, y: str) -> bool:
    from distill.critics.rules import normalize_text

    return normalize_text(x) == normalize_text(y)


def is_near_copy(x: str, y: str) -> bool:
    from distill.critics.rules import CopyCritic
    from distill.record import Record

    return CopyCritic().judge(Record(id="", task="paraphrase", input=x, output=y)) is not True


def degenerate(x: str, y: str) -> str | None:
    """The wellformed critic's reason for ``y`` (None when it is one clean sentence)."""
    from distill.critics.wellformed import WellFormed

    return WellFormed().problem(y, x)


def token_embeddings(st_model, texts: list[str], batch_size: int = 64) -> list[np.ndarray]:
    """Contextual token embeddings of each text from a SentenceTransformer (its transformer
    output before pooling), special tokens ([CLS], [SEP], <s>, ...) dropped."""
    if not texts:
        return []
    outs = st_model.encode(texts, output_value="token_embeddings", batch_size=batch_size,
                           convert_to_numpy=False, show_progress_bar=False)
    tok = st_model.tokenizer
    max_len = st_model.max_seq_length
    result = []
    for text, emb in zip(texts, outs):
        ids = tok(text, truncation=True, max_length=max_len)["input_ids"]
        special = tok.get_special_tokens_mask(ids, already_has_special_tokens=True)
        emb = emb.detach().float().cpu().numpy()
        if len(ids) != len(emb):
            raise RuntimeError(f"token embeddings ({len(emb)}) and tokens ({len(ids)}) disagree for {text!r}")
        result.append(emb[[i for i, s in enumerate(special) if not s]])
    return result


_CACHE: dict[str, object] = {}


def _bleu():
    if "bleu" not in _CACHE:
        from sacrebleu.metrics import BLEU

        _CACHE["bleu"] = BLEU(effective_order=True)
    return _CACHE["bleu"]


def _rouge():
    if "rouge" not in _CACHE:
        from rouge_score import rouge_scorer

        _CACHE["rouge"] = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return _CACHE["rouge"]
