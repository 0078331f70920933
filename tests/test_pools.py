"""Built-in input pools: training inputs never share a story with the held-out set."""

from __future__ import annotations

import pytest

from distill.corpus.decontam import load_eval_items
from distill.data.heldout import lee_documents, load_heldout, split_sentences
from distill.data.pools import heldout_documents, load_pool
from distill.errors import DistillError
from distill.generator.seeds import read_rows


def test_lee_train_is_disjoint_from_the_heldout_documents():
    train = load_pool("builtin:lee-train")
    held = load_heldout("lee")
    assert len(train) > 800 and len(set(train)) == len(train)
    assert not set(train) & set(held)
    docs = lee_documents()
    held_docs = heldout_documents()
    assert len(held_docs) == 150
    for d in held_docs:  # no sentence of a held-out document is a training input
        assert not set(split_sentences(docs[d])) & set(train)
    assert load_pool("lee-train") == train  # fixed order


def test_builtin_pools_work_wherever_a_seed_file_or_eval_set_is_read():
    rows = read_rows("builtin:lee-heldout", "text")
    assert [r["text"] for r in rows] == load_heldout("lee") and rows[0]["_line"] == 1
    assert load_eval_items("builtin:lee-heldout", ["text"]) == load_heldout("lee")
    with pytest.raises(DistillError, match="unknown built-in input pool builtin:nope"):
        read_rows("builtin:nope", "text")
