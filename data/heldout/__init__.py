"""Held-out evaluation inputs: real sentences that nobody on the project wrote and the
teacher never saw.

``lee``: sentences of the 300 ABC news documents in gensim's test data
(``lee_background.cor``, one document per line). Our teacher's contexts are written from
dateline prompts, so these sentences are not in any generated corpus. The sample is
fixed by ``lee_background_ids.txt`` ("doc_index sentence_index sha1-prefix" per line,
made once by ``make_ids.py``); the loader splits the documents with
:func:`split_sentences`, looks the ids up and checks each sentence's sha1 prefix, so a
changed splitter or a different copy of the file fails loudly instead of silently
evaluating on other sentences.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources

from distill.errors import DistillError

# A boundary is whitespace after . ! or ? (optionally followed by a closing quote or
# bracket, which stays with the sentence) and before a capital letter or digit (optionally
# after an opening quote or bracket). Pieces that end in an abbreviation ("Mr.", "Dr.",
# "U.S.", an initial "J.") are joined with the next piece.
_BOUNDARY = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
_ABBREV = frozenset("""mr mrs ms dr st jr sr gen lt col sgt capt prof rev gov sen rep no co inc ltd corp vs mt
jan feb aug sept oct nov dec""".split())
_INITIALS = re.compile(r"^(?:[A-Za-z]\.)+$")

IDS_FILE = "lee_background_ids.txt"
FEW_SHOT_FILE = "few_shot.jsonl"


def split_sentences(text: str) -> list[str]:
    """Deterministic regex sentence splitter (see the module's ``_BOUNDARY`` comment)."""
    out: list[str] = []
    for piece in _BOUNDARY.split(text.strip()):
        piece = piece.strip()
        if not piece:
            continue
        if out:
            last = out[-1].split()[-1].lstrip("\"'([")
            if last.rstrip(".").lower() in _ABBREV and last.endswith(".") or _INITIALS.match(last):
                out[-1] = f"{out[-1]} {piece}"
                continue
        out.append(piece)
    return out


def lee_documents() -> list[str]:
    """The 300 documents of gensim's ``lee_background.cor``, one string each."""
    try:
        from gensim.test.utils import datapath
    except ImportError:
        raise DistillError("the held-out set needs gensim (its test data ships the texts): pip install gensim") from None
    with open(datapath("lee_background.cor"), encoding="utf-8", errors="replace") as f:
        return [line.strip() for line in f]


def sentence_sha(sentence: str) -> str:
    return hashlib.sha1(sentence.encode("utf-8")).hexdigest()[:8]


def load_heldout(name: str = "lee", limit: int | None = None) -> list[str]:
    """The committed held-out sample, in file order (first ``limit`` when given)."""
    if name != "lee":
        raise DistillError(f"unknown held-out set {name!r}; known: lee")
    docs = lee_documents()
    split = {}
    out: list[str] = []
    lines = resources.files(__name__).joinpath(IDS_FILE).read_text().splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        d, s, sha = line.split()
        d, s = int(d), int(s)
        if d >= len(docs):
            raise DistillError(f"{IDS_FILE} line {n}: document {d} not in lee_background.cor ({len(docs)} documents)")
        sents = split.setdefault(d, split_sentences(docs[d]))
        if s >= len(sents) or sentence_sha(sents[s]) != sha:
            raise DistillError(f"{IDS_FILE} line {n}: sentence {d}:{s} does not resolve to the committed sentence "
                               f"(sha1 {sha}); the splitter or gensim's lee_background.cor changed")
        out.append(sents[s])
        if limit is not None and len(out) >= limit:
            break
    return out


def load_few_shot() -> list[tuple[str, str]]:
    """Hand-written (input, paraphrase) pairs for few-shot prompts, written for this
    project in the style of news sentences; none is in the held-out set (a test checks)."""
    text = resources.files(__name__).joinpath(FEW_SHOT_FILE).read_text()
    return [(o["input"], o["output"]) for o in map(json.loads, filter(str.strip, text.splitlines()))]
