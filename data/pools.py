"""Built-in input pools, named ``builtin:<name>`` wherever a seed file is expected
(``task.inputs``, ``eval.inputs``).

- ``lee-train``: sentences (8-30 words, well-formed) of the ABC news documents of gensim's
  ``lee_background.cor`` that are *not* in the held-out sample: the held-out set takes one
  sentence from each of 150 documents, and every document it draws from is excluded here,
  so training inputs and evaluation inputs never share a story. The corpus repeats some
  stories in several documents, so every sentence of a held-out document is also removed
  wherever its text appears again, and each
  sentence is kept once (near copies are the corpus stage's decontamination's job).
- ``lee-heldout``: the held-out sample itself (distill.data.heldout.load_heldout).
- ``atomic-events``: everyday events about PersonX (``data/commonsense/events.txt``, written for
  this project in ATOMIC's style) minus the held-out ones; ``atomic-heldout``: the held-out
  events (``data/commonsense/heldout_events.txt``), for evaluating a commonsense student.
- ``lee-docs``, ``lee-docs-heldout``: whole lee documents for summarization
  (distill.data.summarization.lee_docs): 60 held-out documents, all drawn from the documents
  the paraphrase evaluation holds out, and the training documents, which repeat none of them.
- ``aclsum-train``, ``aclsum-test``: ACL abstracts of the ``aclsum`` package with three
  reference summaries each (distill.data.summarization.aclsum_docs); ``train`` is the
  package's train and val splits, ``test`` its test split.

Every pool gives text rows; the document pools' rows also carry ``id`` and, for aclsum,
``title`` and ``references`` (:func:`load_pool_rows`), which seed rows keep.
"""

from __future__ import annotations

from importlib import resources

from distill.errors import DistillError

PREFIX = "builtin:"


def heldout_documents() -> set[int]:
    from distill.data import heldout

    lines = resources.files(heldout.__name__).joinpath(heldout.IDS_FILE).read_text().splitlines()
    return {int(line.split()[0]) for line in lines if line.strip() and not line.startswith("#")}


def lee_train() -> list[str]:
    from distill.critics.wellformed import WellFormed
    from distill.data.heldout import lee_documents, load_heldout, split_sentences

    wf, held, docs = WellFormed(), heldout_documents(), lee_documents()
    seen = set(load_heldout("lee")) | {s for d in held for s in split_sentences(docs[d])}
    out: list[str] = []
    for d, doc in enumerate(docs):
        if d in held:
            continue
        for s in split_sentences(doc):
            if s not in seen and 8 <= len(s.split()) <= 30 and wf.problem(s) is None:
                seen.add(s)
                out.append(s)
    return out


_POOLS = ("lee-train", "lee-heldout", "atomic-events", "atomic-heldout", "lee-docs", "lee-docs-heldout",
          "aclsum-train", "aclsum-test")


def load_pool_rows(name: str) -> list[dict]:
    """The rows of pool ``name`` (with or without the ``builtin:`` prefix), in a fixed order:
    dicts with at least ``text``."""
    name = name.removeprefix(PREFIX)
    if name in ("lee-docs", "lee-docs-heldout"):
        from distill.data.summarization import lee_docs

        return lee_docs(heldout=name == "lee-docs-heldout")
    if name in ("aclsum-train", "aclsum-test"):
        from distill.data.summarization import aclsum_docs

        return aclsum_docs(name.removeprefix("aclsum-"))
    if name == "lee-train":
        texts = lee_train()
    elif name == "lee-heldout":
        from distill.data.heldout import load_heldout

        texts = load_heldout("lee")
    elif name in ("atomic-events", "atomic-heldout"):
        texts = atomic_events(heldout=name == "atomic-heldout")
    else:
        raise DistillError(f"unknown built-in input pool {PREFIX}{name}; known: "
                           + ", ".join(PREFIX + p for p in _POOLS))
    return [{"text": t} for t in texts]


def load_pool(name: str) -> list[str]:
    """The texts of pool ``name`` (with or without the ``builtin:`` prefix), in a fixed order."""
    return [row["text"] for row in load_pool_rows(name)]


def _lines(name: str) -> list[str]:
    from distill.data import commonsense

    text = resources.files(commonsense.__name__).joinpath(name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def atomic_events(heldout: bool = False) -> list[str]:
    """The shipped events: the held-out ones, or all the others, in a fixed order that mixes the
    file's topics (a hash of each event), so that ``limit: N`` takes a varied sample."""
    import hashlib

    held = _lines("heldout_events.txt")
    drop = {e.lower() for e in held}
    events = held if heldout else [e for e in _lines("events.txt") if e.lower() not in drop]
    return sorted(events, key=lambda e: hashlib.sha1(e.encode()).hexdigest())
