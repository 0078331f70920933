"""The summarization pools: fixed counts, held-out documents that share no story with any
training pool, and the ACLSum abstracts detokenized and cut where the abstract ends."""

from __future__ import annotations

import pytest

from distill.data.heldout import lee_documents, split_sentences
from distill.data.pools import heldout_documents, load_pool, load_pool_rows
from distill.data.summarization import abstract_sentences, aclsum_docs, detokenize, lee_docs
from distill.errors import DistillError
from distill.generator.seeds import read_rows


def test_lee_docs_counts_are_fixed_and_heldout_shares_no_story_with_training():
    held, train = lee_docs(heldout=True), lee_docs(heldout=False)
    assert (len(held), len(train)) == (60, 202)
    held_idx = {int(r["id"].removeprefix("lee-")) for r in held}
    assert held_idx <= heldout_documents()  # drawn from the paraphrase evaluation's documents
    assert not held_idx & {int(r["id"].removeprefix("lee-")) for r in train}
    held_sents = {s for r in held for s in split_sentences(r["text"])}
    held_firsts = {split_sentences(r["text"])[0] for r in held}
    assert len(held_firsts) == 60  # no repeat inside the held-out set either
    for r in train:
        sents = split_sentences(r["text"])
        assert r["text"] not in {h["text"] for h in held} and sents[0] not in held_firsts
        assert not set(sents) & held_sents  # not even a shared sentence further down
    assert not held_sents & set(load_pool("lee-train"))  # nor with the paraphrase training pool
    for r in held + train:
        assert r["text"] == " ".join(r["text"].split())
        assert len(split_sentences(r["text"])) >= 3 and len(r["text"].split()) <= 350
    docs = lee_documents()
    assert all(" ".join(docs[int(r["id"][4:])].split()) == r["text"] for r in held)


def test_lee_docs_order_is_fixed():
    held = lee_docs(heldout=True)
    assert [r["id"] for r in held[:3]] == ["lee-253", "lee-17", "lee-174"]
    assert load_pool_rows("builtin:lee-docs-heldout") == held
    assert load_pool("lee-docs") == [r["text"] for r in lee_docs(heldout=False)]


@pytest.mark.parametrize("tokens, text", [
    ("Machine Translation ( MT ) systems , e.g. Moses , work .", "Machine Translation (MT) systems, e.g. Moses, work."),
    ('the " exposure bias " problem ; ( " Why " ) We', 'the "exposure bias" problem; ("Why") We'),
    ("`` Hello , '' he said -LRB- really -RRB- : done ?", '"Hello," he said (really): done?'),
    ("users ' opinions and ' foil ' captions", "users' opinions and 'foil' captions"),
    ("translate ' A because B ' as ' B because A. '", "translate 'A because B' as 'B because A.'"),
    ("Spearman 's rho does n't fit ; they 're sure", "Spearman's rho doesn't fit; they're sure"),
    ("speech / text at https://github.com / thunlp/ RE-Context-or-Names .",
     "speech/text at https://github.com/thunlp/RE-Context-or-Names."),
    ("https://github.com/ LinyangLee / BERT-Attack .", "https://github.com/LinyangLee/BERT-Attack."),
    ("by 16 - 63 % and 14 F 1 points for $ 10", "by 16-63% and 14 F1 points for $10"),
    ('" 配 布 " ( distribute )', '"配布" (distribute)'),
    # text that is not tokenized comes back as it was
    ("A well-known, \"quoted\" aim; models' parameters (40%).", "A well-known, \"quoted\" aim; models' parameters (40%)."),
])
def test_detokenize(tokens, text):
    assert detokenize(tokens) == text


def test_abstract_sentences_stop_at_footnotes_and_known_spills():
    assert abstract_sentences("x", ["A first .", "Last one .", "1"]) == ["A first .", "Last one ."]
    assert abstract_sentences("x", ["A first .", "*", "Equal contribution ."]) == ["A first ."]
    assert abstract_sentences("x", ["A first .", "1 Nuclear reactors produce waste ..."]) == ["A first ."]
    enumerated = ["We ask : 1 ) how ?", "2 ) What then ?"]
    assert abstract_sentences("x", enumerated) == enumerated
    assert abstract_sentences("x", ["A bias for URE . 1"]) == ["A bias for URE ."]
    assert len(abstract_sentences("D10-1092", ["S ."] * 29)) == 11


def test_aclsum_pools():
    test, train = aclsum_docs("test"), aclsum_docs("train")
    assert (len(test), len(train)) == (100, 150)
    assert not {r["id"] for r in test} & {r["id"] for r in train}
    assert not {r["text"] for r in test} & {r["text"] for r in train}
    for r in test + train:
        assert r["text"] and r["title"] and r["id"]
        assert len(r["references"]) == 3 and all(ref.strip() for ref in r["references"])
        assert " ," not in r["text"] and "( " not in r["text"]  # detokenized
        assert not r["text"].endswith((" 1", "*"))  # no footnote marker left
    cut = {r["id"]: r["text"] for r in train}["D10-1092"]
    assert cut.endswith("this metric outperforms conventional metrics.") and "Reference" not in cut
    with pytest.raises(DistillError, match="unknown aclsum split"):
        aclsum_docs("val")


def test_read_rows_carries_the_pool_rows_extra_fields():
    rows = read_rows("builtin:aclsum-test", "document")
    assert len(rows) == 100 and rows[0]["_line"] == 1 and "text" not in rows[0]
    assert rows[0]["document"] == aclsum_docs("test")[0]["text"]
    assert len(rows[0]["references"]) == 3 and rows[0]["id"] and rows[0]["title"]
    assert set(read_rows("builtin:aclsum-test", "text")[0]) == {"text", "id", "title", "references", "_line"}
    # sentence pools keep their old rows exactly
    assert read_rows("builtin:atomic-heldout", "event")[0] == {"event": load_pool("atomic-heldout")[0], "_line": 1}
