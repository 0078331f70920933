"""EmbeddingSimilarity on inline records with the real MiniLM encoder: exact reasons,
scores written, counts; config errors before any model loads."""

from __future__ import annotations

import pytest

from distill.errors import ConfigError
from distill.record import Record

X1 = "The city council voted on Tuesday to expand the bus network to the northern suburbs."
X2 = "Heavy rain forced organisers to postpone the outdoor concert until next weekend."


def rec(i: str, x: str, y: str) -> Record:
    return Record(id=i, task="paraphrase", input=x, output=y)


def test_reasons_scores_and_counts(encoder):
    from distill.critics.similarity import EmbeddingSimilarity

    c = EmbeddingSimilarity(min_cos=0.65, max_cos=0.98, encoder=encoder)
    records = [
        rec("para", X1, "On Tuesday, councillors approved a plan to extend bus services into the northern suburbs."),
        rec("para2", X2, "The outdoor concert was put off for a week because it rained heavily."),  # cos ~0.69
        rec("copy", X1, X1),
        rec("one-word", X1, X1.replace("northern", "southern")),  # cos ~0.99
        rec("unrelated", X1, "The football club has sacked its manager after seven straight defeats."),
        rec("spanish", X2, "Las fuertes lluvias obligaron a aplazar el concierto hasta el próximo fin de semana."),
        rec("meta", X2, "I think this sentence is about the weather."),
    ]
    kept = [r.id for r in c.run(records)]
    assert kept == ["para", "para2"]
    assert {r.id: reason for r, reason in c.drain_rejects()} == {
        "copy": "embed_cos>0.98", "one-word": "embed_cos>0.98",
        "unrelated": "embed_cos<0.65", "spanish": "embed_cos<0.65", "meta": "embed_cos<0.65"}
    assert all("embed_cos" in r.scores for r in records)
    assert records[2].scores["embed_cos"] == pytest.approx(1.0, abs=1e-5)
    assert records[4].scores["embed_cos"] < 0.3
    assert c.stats() == {"name": "embed_similarity", "total": 7, "kept": 2,
                         "dropped": {"embed_cos<0.65": 3, "embed_cos>0.98": 2}}


def test_default_has_no_upper_bound_and_cosine_is_symmetric(encoder):
    from distill.critics.similarity import DEFAULT_MIN_COS, EmbeddingSimilarity

    c = EmbeddingSimilarity(encoder=encoder)
    assert c.min_cos == DEFAULT_MIN_COS and c.max_cos is None
    y = "The outdoor concert was put off for a week because it rained heavily."
    fwd, bwd, same = rec("f", X2, y), rec("b", y, X2), rec("s", X2, X2)
    assert [r.id for r in c.run([fwd, bwd, same])] == ["f", "b", "s"]
    assert fwd.scores["embed_cos"] == pytest.approx(bwd.scores["embed_cos"], abs=1e-6)


def test_bad_bounds_are_config_errors_before_loading_a_model():
    from distill.critics.registry import build_critic

    with pytest.raises(ConfigError, match="min_cos 0.9 > max_cos 0.5"):
        build_critic("embed_similarity", {"min_cos": 0.9, "max_cos": 0.5}, encoder=None)
    with pytest.raises(ConfigError, match=r"max_cos must be in \[-1, 1\]"):
        build_critic("embed_similarity", {"max_cos": 1.5})
