"""The trained critic end to end on the shipped hand-labelled pairs (real MiniLM encoder,
real scikit-learn fits): train, save, load, judge; held-out precision above a measured
floor; bad label rows named by line; incompatible artifacts refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from distill.errors import DistillError
from distill.record import Record

LABELS = Path(__file__).resolve().parents[1] / "data" / "paraphrase" / "labels.jsonl"
# Measured with seed 0 (scikit-learn 1.9, all-MiniLM-L6-v2), held-out split of 100 pairs:
#   logreg: precision 0.929, recall 0.975, AUC 0.997   gbm: precision 0.923, recall 0.900, AUC 0.995
# The floors sit a little below, so the test catches a broken feature or threshold, not noise.
FLOORS = {"logreg": {"precision": 0.88, "recall": 0.85, "auc": 0.97},
          "gbm": {"precision": 0.88, "recall": 0.80, "auc": 0.97}}

X = "The city council voted on Tuesday to expand the bus network to the northern suburbs."


@pytest.fixture(scope="module")
def logreg(tmp_path_factory, encoder):
    from distill.critics.trained import train_critic

    out = tmp_path_factory.mktemp("art") / "logreg"
    meta = train_critic(LABELS, out, model="logreg", target_precision=0.9, seed=0, encoder=encoder)
    return out, meta


def rec(i: str, x: str, y: str, **scores: float) -> Record:
    return Record(id=i, task="paraphrase", input=x, output=y, scores=dict(scores))


def check_floors(meta: dict, model: str) -> None:
    test = meta["metrics"]["test"]
    for k, floor in FLOORS[model].items():
        assert test[k] >= floor, f"{model} held-out {k} {test[k]} < floor {floor}: {test}"
    assert test["n"] == 100 and meta["labels"]["n_train"] == 308


def judge_labels(critic, split: str = "test"):
    from distill.critics.trained import read_labels

    rows = [r for r in read_labels(LABELS) if r.split == split]
    recs = [rec(r.id, r.x, r.y) for r in rows]
    kept = {r.id for r in critic.run(recs)}
    return rows, recs, kept


def test_logreg_end_to_end(logreg, encoder):
    from distill.critics.trained import TrainedCritic, format_report

    out, meta = logreg
    check_floors(meta, "logreg")
    assert meta["target"] == {"precision": 0.9} and meta["target_reached_in_cv"]
    assert meta["metrics"]["cv"]["precision"] >= 0.9
    saved = json.loads((out / "spec.json").read_text())
    assert saved["threshold"] == meta["threshold"] and saved["feature_spec"]["dim"] == 384
    assert sorted(p.name for p in out.iterdir()) == ["model.joblib", "spec.json"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left
    assert "held-out test" in format_report(meta)

    critic = TrainedCritic(str(out), embedder=encoder)
    thr = critic.threshold
    para = rec("para", X, "On Tuesday, councillors approved a plan to extend bus services into the northern suburbs.")
    copy = rec("copy", X, X)
    unrelated = rec("unrelated", X, "The football club has sacked its manager after seven straight defeats.")
    assert [r.id for r in critic.run([para, copy, unrelated])] == ["para"]
    assert sorted(critic.drain_rejects(), key=lambda t: t[0].id) == [
        (copy, f"trained_critic<{thr:g}"), (unrelated, f"trained_critic<{thr:g}")]
    assert para.scores["trained_critic"] >= thr > copy.scores["trained_critic"]

    # the loaded critic reproduces the metrics saved at training time
    critic.counts.clear()
    rows, _, kept = judge_labels(critic)
    tp = sum(r.id in kept and r.label == 1 for r in rows)
    fp = sum(r.id in kept and r.label == 0 for r in rows)
    assert (tp, fp) == (meta["metrics"]["test"]["tp"], meta["metrics"]["test"]["fp"])
    assert critic.stats()["kept"] == tp + fp


def test_gbm_end_to_end(tmp_path, encoder):
    from distill.critics.trained import TrainedCritic, train_critic

    meta = train_critic(LABELS, tmp_path / "gbm", model="gbm", target_precision=0.9, seed=0, encoder=encoder)
    check_floors(meta, "gbm")
    critic = TrainedCritic(str(tmp_path / "gbm"), embedder=encoder)
    rows, recs, kept = judge_labels(critic)
    assert sum(r.id in kept and r.label == 1 for r in rows) == meta["metrics"]["test"]["tp"]
    assert all(0 <= r.scores["trained_critic"] <= 1 for r in recs)


def test_target_recall_and_overwrite(logreg, encoder, tmp_path):
    from distill.critics.trained import train_critic

    out, meta = logreg
    dst = tmp_path / "art"
    shutil.copytree(out, dst)
    with pytest.raises(DistillError, match="exists; pass overwrite=True"):
        train_critic(LABELS, dst, target_recall=0.95, encoder=encoder)
    m2 = train_critic(LABELS, dst, target_recall=0.95, encoder=encoder, overwrite=True)
    assert m2["target"] == {"recall": 0.95} and m2["metrics"]["cv"]["recall"] >= 0.95
    assert m2["threshold"] <= meta["threshold"]
    assert json.loads((dst / "spec.json").read_text())["target"] == {"recall": 0.95}
    assert [p.name for p in tmp_path.iterdir()] == ["art"]


GOOD = {"id": "a", "x": "One sentence here.", "y": "Another sentence there.", "label": 1, "split": "train"}


@pytest.mark.parametrize("bad, words", [
    ("{not json", ["invalid JSON (Expecting property name enclosed in double quotes at column 2)"]),
    (json.dumps({k: v for k, v in GOOD.items() if k != "label"}), ["missing field(s) ['label']"]),
    (json.dumps({**GOOD, "label": 2}), ["label must be one of P, C, M, D or 0/1, got 2"]),
    (json.dumps({**GOOD, "label": "1"}), ["label must be one of P, C, M, D (or 0/1), got '1'"]),
    (json.dumps({**GOOD, "split": "val"}), ["split must be one of train, dev, test, got 'val'"]),
    (json.dumps({**GOOD, "y": "  "}), ["'y' must be a non-empty string"]),
    (json.dumps(GOOD), ["duplicate id 'a' (first on line 1)"]),
    ("[1, 2]", ["expected a JSON object, got list"]),
])
def test_bad_label_rows_name_the_line(tmp_path, bad, words):
    from distill.critics.trained import train_critic

    f = tmp_path / "labels.jsonl"
    f.write_text(json.dumps(GOOD) + "\n\n" + bad + "\n" + json.dumps({**GOOD, "id": "z"}) + "\n")
    with pytest.raises(DistillError) as e:
        train_critic(f, tmp_path / "out")  # fails before any model loads
    assert str(e.value).startswith(f"{f} line 3: ")
    for w in words:
        assert w in str(e.value)
    assert not (tmp_path / "out").exists()


def test_empty_or_unusable_labels(tmp_path):
    from distill.critics.trained import cli_train, train_critic

    f = tmp_path / "labels.jsonl"
    f.write_text("\n\n")
    with pytest.raises(DistillError, match="no labelled rows"):
        train_critic(f, tmp_path / "out")
    f.write_text("".join(json.dumps({**GOOD, "id": str(i)}) + "\n" for i in range(8)))
    with pytest.raises(DistillError, match="at least 5 rows of each label"):
        cli_train([str(f), "--out", str(tmp_path / "out")])
    f.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"id": "\xff"}\n')
    with pytest.raises(DistillError, match="labels.jsonl line 2: not UTF-8 text"):
        train_critic(f, tmp_path / "out")
    with pytest.raises(DistillError, match="labels file not found"):
        cli_train([str(tmp_path / "nope.jsonl")])
    with pytest.raises(SystemExit):
        cli_train([str(f), "--target-precision", "0.9", "--target-recall", "0.9"])
    assert not (tmp_path / "out").exists()


def edit_spec(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    meta = json.loads((dst / "spec.json").read_text())
    for k, v in changes.items():
        if k in meta["feature_spec"]:
            meta["feature_spec"][k] = v
        else:
            meta[k] = v
    (dst / "spec.json").write_text(json.dumps(meta))
    return dst


def test_incompatible_artifacts_are_refused(logreg, encoder, tmp_path):
    from distill.critics.trained import FEATURE_VERSION, TrainedCritic

    out, _ = logreg
    with pytest.raises(DistillError, match=f"feature spec version {FEATURE_VERSION + 1} is incompatible"):
        TrainedCritic(str(edit_spec(out, tmp_path / "v", version=FEATURE_VERSION + 1)), embedder=encoder)
    with pytest.raises(DistillError, match="trained with encoder 'someone/other-encoder'"):
        TrainedCritic(str(edit_spec(out, tmp_path / "e", encoder="someone/other-encoder")), embedder=encoder)
    with pytest.raises(DistillError, match=r"the model takes 1539 features but its spec describes 1540"):
        TrainedCritic(str(edit_spec(out, tmp_path / "u", upstream=["nli_forward"])), embedder=encoder)
    with pytest.raises(DistillError, match=r"trained with upstream scores \[\], but the config provides \['nli'\]"):
        TrainedCritic(str(out), upstream=["nli"], embedder=encoder)
    with pytest.raises(DistillError, match="artifact format"):
        TrainedCritic(str(edit_spec(out, tmp_path / "f", format="something-else")), embedder=encoder)
    with pytest.raises(DistillError, match="not a trained critic artifact"):
        TrainedCritic(str(tmp_path / "missing"), embedder=encoder)


def test_upstream_scores_are_features(tmp_path, encoder):
    """An upstream critic score travels from the labels into the model, and a record that
    lacks it at judge time is a clear error naming the record and the score."""
    from distill.critics.trained import TrainedCritic, train_critic

    rows = [json.loads(line) for line in LABELS.read_text().splitlines()[:80]]
    for n, r in enumerate(rows):
        r["scores"] = {"rule": float(r["label"])}  # a perfect upstream critic
        r["split"] = "test" if n % 4 == 0 else "train"
    f = tmp_path / "labels.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    meta = train_critic(f, tmp_path / "art", cv=3, upstream=["rule"], encoder=encoder)
    assert meta["feature_spec"]["upstream"] == ["rule"]

    critic = TrainedCritic(str(tmp_path / "art"), upstream=["rule"], embedder=encoder)
    y = "Bus routes will be extended to the northern suburbs after a council vote on Tuesday."
    yes, no = rec("yes", X, y, rule=1.0), rec("no", X, y, rule=0.0)
    list(critic.run([yes, no]))
    assert yes.scores["trained_critic"] > no.scores["trained_critic"] + 0.2  # the score is a feature
    with pytest.raises(DistillError, match=r"record 'r2' has no score 'rule'.*run the critic that writes 'rule'"):
        list(critic.run([rec("r2", X, X)]))

    rows[5]["scores"] = {}
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DistillError, match=f"{f} line 6: no numeric score 'rule'"):
        train_critic(f, tmp_path / "art2", cv=3, upstream=["rule"], encoder=encoder)


def test_choose_threshold():
    import numpy as np

    from distill.critics.trained import choose_threshold

    # 10 rejects, 10 accepts, a mixed band, then 10 accepts, by rising P(good)
    y = np.array([0] * 10 + [1] * 10 + [0, 1] * 5 + [1] * 10)
    p = np.round(np.linspace(0.01, 0.99, len(y)), 4)

    def precision(t: float) -> float:
        return y[p >= t].mean()

    thr, ok = choose_threshold(y, p, target_precision=0.9, min_accepts=1)
    assert ok
    assert all(precision(t) >= 0.9 for t in p[p >= thr])  # every stricter threshold holds the target
    assert precision(p[p < thr].max()) < 0.9  # and one step looser does not
    thr, ok = choose_threshold(y, p, target_recall=1.0)
    assert ok and thr == p[10]  # the lowest accept
    # out of reach (the only perfect threshold passes 1 pair < min_accepts): the most precise one
    thr, ok = choose_threshold(np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4]), target_precision=0.99,
                               min_accepts=2)
    assert not ok and thr == 0.2
