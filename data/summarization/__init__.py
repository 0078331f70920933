"""Documents for the summarization task: real texts that nobody on the project wrote.

``lee_docs``: the ABC news documents of gensim's ``lee_background.cor``. The held-out
documents come only from the 150 documents whose sentences the paraphrase evaluation holds
out (``distill.data.pools.heldout_documents``), so no held-out story has a sentence in the
paraphrase training pool ``lee-train``; the training documents are all the others, minus
every near repeat of a held-out one (the corpus carries some stories twice).

``aclsum_docs``: ACL papers of the ``aclsum`` package (MIT): the abstract as the document,
and the package's three aspect summaries (challenge, approach, outcome) as references. The
package stores space-tokenized sentences; :func:`detokenize` turns them back into text.

Rows are dicts with at least ``text`` and ``id``, in a fixed order.
"""

from __future__ import annotations

import hashlib
import re

from distill.errors import DistillError

LEE_HELDOUT = 60  # held-out documents (drawn from the paraphrase evaluation's documents)
MIN_SENTENCES, MAX_WORDS = 3, 350  # a lee document outside these is not summarization input
ASPECTS = ("challenge", "approach", "outcome")


def _sha(text: str) -> str:
    # The order used for sampling and listing (as the atomic pools do): fixed, and it mixes
    # the corpus's topics so that ``limit: N`` takes a varied sample.
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _lee_candidates() -> list[tuple[int, str, str]]:
    """(index, text, first sentence) of every lee document within the length bounds."""
    from distill.data.heldout import lee_documents, split_sentences

    out = []
    for i, doc in enumerate(lee_documents()):
        text = " ".join(doc.split())
        sents = split_sentences(text)
        if len(sents) >= MIN_SENTENCES and len(text.split()) <= MAX_WORDS:
            out.append((i, text, sents[0]))
    return out


def lee_docs(heldout: bool) -> list[dict]:
    """The held-out lee documents (``heldout=True``) or the training ones, in sha1 order of
    their text. Rows: ``{"text", "id": "lee-<index in lee_background.cor>"}``.

    Held out: the first :data:`LEE_HELDOUT` documents, in sha1 order, of those the paraphrase
    evaluation holds out, skipping a repeat (same text or same first sentence) of one already
    taken. Training: every other document that repeats no held-out one and no earlier
    training one."""
    from distill.data.pools import heldout_documents

    cands = sorted(_lee_candidates(), key=lambda c: _sha(c[1]))
    para_held = heldout_documents()
    held: list[tuple[int, str, str]] = []
    seen: set[str] = set()
    for c in cands:
        if c[0] in para_held and len(held) < LEE_HELDOUT and not {c[1], c[2]} & seen:
            held.append(c)
            seen |= {c[1], c[2]}
    if len(held) < LEE_HELDOUT:
        raise DistillError(f"only {len(held)} lee documents can be held out for summarization "
                           f"(want {LEE_HELDOUT}); gensim's lee_background.cor changed?")
    if heldout:
        return [{"text": t, "id": f"lee-{i}"} for i, t, _ in held]
    taken = {c[0] for c in held}
    train = []
    for i, text, first in cands:
        if i not in taken and not {text, first} & seen:
            train.append({"text": text, "id": f"lee-{i}"})
            seen |= {text, first}
    return train


# --- ACLSum -------------------------------------------------------------------------------

# The package's "abstract" sentences come from a PDF parse, and some run past the abstract:
# a footnote marker ("1", "*", "1 *", "†") alone or opening a footnote's text ends it.
_FOOTNOTE = re.compile(r"(?:\d{1,2}|[*†‡§¶])(?:\s+[*†‡§¶])*(?:\s+[A-Z].*)?")
_TRAILING_MARK = re.compile(r"(?<=[.?!])\s+(?:\d{1,2}|[*†‡§¶])$")  # "... for URE . 1"
# Spills no rule sees, found by reading every abstract: sentences of the abstract proper.
_ABSTRACT_LEN = {
    "2020.acl-main.47": 7,  # then a table of Japanese verbs
    "D10-1092": 11,  # then the introduction's examples ("Reference :", "SMT output : ...")
    "2021.emnlp-main.411": 6,  # then "We will first describe the de-"
}
_SPLITS = {"train": ("train", "val"), "test": ("test",)}


def abstract_sentences(doc_id: str, sentences: list[str]) -> list[str]:
    """The sentences of the abstract proper (see ``_FOOTNOTE`` and ``_ABSTRACT_LEN``)."""
    sents = list(sentences[: _ABSTRACT_LEN.get(doc_id)])
    for k, s in enumerate(sents):
        if _FOOTNOTE.fullmatch(s.strip()):
            sents = sents[:k]
            break
    if sents:
        sents[-1] = _TRAILING_MARK.sub("", sents[-1])
    return sents


def aclsum_docs(split: str) -> list[dict]:
    """ACLSum papers: ``split`` "train" (the package's train and val splits) or "test", in the
    package's order. Rows: ``{"text": abstract, "id", "title", "references": [challenge,
    approach, outcome]}``, all detokenized."""
    if split not in _SPLITS:
        raise DistillError(f"unknown aclsum split {split!r}; known: {', '.join(_SPLITS)}")
    try:
        from aclsum import ACLSum  # its data ships in the wheel; imported here, not at module load
    except ImportError:
        raise DistillError("the aclsum pools need the aclsum package (Python 3.11+): "
                           "pip install aclsum==0.1.2") from None
    rows = []
    for part in _SPLITS[split]:
        for doc in ACLSum(part):
            text = detokenize(" ".join(abstract_sentences(doc.id, doc.sentences["abstract"])))
            rows.append({"text": text, "id": doc.id, "title": " ".join(doc.title.split()),
                         "references": [detokenize(doc.summaries[a]) for a in ASPECTS]})
    return rows


# --- detokenizer ------------------------------------------------------------------------

_PTB = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}
_CLOSE = re.compile(r"[.,;:!?%)\]}]+|\.\.\.")
_CLITICS = frozenset({"'s", "'re", "'ve", "'ll", "'d", "'m", "n't"})
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uff00-\uffef]")


def detokenize(text: str) -> str:
    """Undo PTB-style space tokenization: ``Machine Translation ( MT ) systems , ...`` →
    ``Machine Translation (MT) systems, ...``. Untokenized text comes back unchanged
    (only bare tokens are joined).

    Quotes: ``\\`\\``` and ``''`` open and close; a bare ``"`` alternates open/close; a bare
    ``'`` closes an open one, else is a plural possessive after a word ending in s before a
    lowercase word (``users ' opinions``), else opens. Also joins ``/`` on both sides, ``-``
    between numbers, ``$`` to its number, the parts of a split URL or CJK word, and ``F 1``
    (a subscript the PDF parse split off)."""
    toks = text.split()
    out: list[str] = []
    glue_next = dq_open = sq_open = False
    for i, raw in enumerate(toks):
        t = _PTB.get(raw, raw)
        prev = out[-1] if out else ""
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        left = right = False
        if t == "``" or (t == '"' and not dq_open):
            t, right, dq_open = '"', True, True
        elif t in ("''", '"'):
            t, left, dq_open = '"', True, False
        elif t == "'":
            if sq_open:
                left, sq_open = True, False
            elif prev[-1:] in ("s", "S") and nxt[:1].islower():
                left = True
            else:
                right, sq_open = True, True
        elif _CLOSE.fullmatch(t) or t.lower() in _CLITICS:
            left = True
        elif t in ("(", "[", "{", "$"):
            right = True
        elif t == "/":
            left = right = True
        elif t in ("-", "–") and prev[-1:].isdigit() and nxt[:1].isdigit():
            left = right = True
        elif _CJK.match(t[0]) and _CJK.match(prev[-1:] or " "):
            left = True
        elif "://" in prev and prev.endswith("/"):
            left = True
        elif t == "1" and prev == "F":
            left = True
        if out and (left or glue_next):
            out[-1] += t
        else:
            out.append(t)
        glue_next = right
    return " ".join(out)
