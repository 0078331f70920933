"""The cross-encoder critic: graded and binary labels read (bad rows named by line), a tiny
BERT this test builds fine-tuned end to end (weights change, threshold from CV, artifact
loads as a filter stage with exact reasons), the CLI path, and the real MiniLM (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.errors import DistillError
from distill.record import Record

PAIRS = [  # (x, y keep, y reject), each x its own group
    ("the police arrested the man in sydney .", "officers detained the man in sydney .", "the man arrested the police ."),
    ("the council voted to expand the bus network .", "councillors approved a bigger bus network .",
     "the council voted against the bus network ."),
    ("heavy rain forced organisers to postpone the concert .", "the concert was postponed because of heavy rain .",
     "heavy rain forced organisers to cancel the match ."),
    ("water bills will go up by five percent .", "bills for water will rise five percent .",
     "water bills will go down by five percent ."),
    ("the minister resigned on tuesday .", "on tuesday the minister quit .", "the minister resigned on friday ."),
    ("the club sacked its manager after seven defeats .", "seven defeats cost the manager his job at the club .",
     "the club sacked its manager ."),
    ("india accused pakistan of backing the attack .", "pakistan was accused by india of backing the attack .",
     "pakistan accused india of backing the attack ."),
    ("the bridge will close for repairs next week .", "next week the bridge shuts for repairs .",
     "the bridge closed for repairs last week ."),
]


def write_labels(path: Path, n_test: int = 2) -> Path:
    rows = []
    for i, (x, keep, reject) in enumerate(PAIRS):
        split = "test" if i >= len(PAIRS) - n_test else ("dev" if i == 0 else "train")
        rows.append({"id": f"{i}-p", "x": x, "y": keep, "label": "P", "kinds": [], "group": f"g{i}", "split": split})
        rows.append({"id": f"{i}-m", "x": x, "y": reject, "label": "M", "kinds": ["fact"], "group": f"g{i}",
                     "split": split})
        rows.append({"id": f"{i}-c", "x": x, "y": x, "label": "C", "kinds": [], "group": f"g{i}", "split": split})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT and a word-level tokenizer over the test's words, saved."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    out = tmp_path_factory.mktemp("tiny-bert")
    words = sorted({w for p in PAIRS for s in p for w in s.split()} | {"on", "and"})
    (out / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
    tok = BertTokenizerFast(vocab_file=str(out / "vocab.txt"))
    cfg = BertConfig(vocab_size=len(words) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=1)
    BertForSequenceClassification(cfg).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {k.removeprefix("bert."): v for k, v in load_file(str(folder / "model.safetensors")).items()}


def test_graded_and_binary_labels(tmp_path):
    from distill.critics.labels import fit_rows, read_labels

    p = tmp_path / "l.jsonl"
    p.write_text(
        '{"id": "a", "x": "X one.", "y": "Y one.", "label": "P", "kinds": [], "group": "s1", "split": "train"}\n'
        '{"id": "b", "x": "X one.", "y": "Y two.", "label": "M", "kinds": ["time", "role"], "split": "dev"}\n'
        '\n'
        '{"id": "c", "x": "X two.", "y": "Y three.", "label": 1, "kind": "paraphrase", "split": "test"}\n'
        '{"id": "d", "x": "X two.", "y": "X two.", "label": "C", "split": "test"}\n')
    a, b, c, d = read_labels(p)
    assert (a.label, a.letter, a.kind, a.group, a.line) == (1, "P", "P", "s1", 1)
    assert (b.label, b.letter, b.kinds, b.group, b.split) == (0, "M", ("time", "role"), "X one.", "dev")
    assert (c.label, c.letter, c.kind, c.kinds, d.label) == (1, None, "paraphrase", ("paraphrase",), 0)
    assert [r.id for r in fit_rows([a, b, c, d])] == ["a", "b"]


@pytest.mark.parametrize("line, msg", [
    ('{"id": "b", "x": "a", "y": "b", "label": "Q", "split": "train"}',
     "label must be one of P, C, M, D (or 0/1), got 'Q'"),
    ('{"id": "b", "x": "a", "label": "P", "split": "train"}', "missing field(s) ['y']"),
    ('{"id": "b", "x": "a", "y": " ", "label": "P", "split": "train"}', "'y' must be a non-empty string"),
    ('{"id": "b", "x": "a", "y": "b", "label": "P", "split": "train"', "invalid JSON ("),
    ('{"id": "b", "x": "a", "y": "b", "label": "M", "kinds": "time", "split": "train"}',
     "'kinds' must be a list of strings"),
    ('{"id": "b", "x": "a", "y": "b", "label": 2, "split": "train"}', "label must be one of P, C, M, D or 0/1, got 2"),
    ('{"id": "b", "x": "a", "y": "b", "label": "P", "split": "val"}', "split must be one of train, dev, test"),
    ('{"id": "a", "x": "a", "y": "b", "label": "P", "split": "train"}', "duplicate id 'a' (first on line 1)"),
])
def test_bad_label_rows_name_file_and_line(tmp_path, line, msg):
    from distill.critics.labels import read_labels

    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": "a", "x": "a", "y": "b", "label": "P", "split": "train"}\n' + line + "\n")
    with pytest.raises(DistillError) as e:
        read_labels(p)
    assert str(e.value).startswith(f"{p} line 2: ") and msg in str(e.value) and "\n" not in str(e.value)


def test_bad_labels_exit_2_through_the_cli(tmp_path, capsys):
    from distill.cli import main

    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": "a", "x": "a", "y": "b", "label": "X", "split": "train"}\n')
    assert main(["critic", "train", str(p), "--model", "cross-encoder", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{p} line 1: label must be one of P, C, M, D" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # ~15 s: three fine-tunes through the sentence-transformers trainer
def test_tiny_cross_encoder_trains_and_judges(tmp_path, tiny_bert):
    from distill.cli import main
    from distill.critics.registry import build_critic

    labels = write_labels(tmp_path / "labels.jsonl")
    out = tmp_path / "ce"
    assert main(["critic", "train", str(labels), "--model", "cross-encoder", "--base", str(tiny_bert),
                 "--out", str(out), "--cv", "2", "--epochs", "1", "--lr", "1e-3", "--batch-size", "8",
                 "--target-precision", "0.5", "--synthetic", "1", "--device", "cpu"]) == 0
    meta = json.loads((out / "spec.json").read_text())
    assert meta["format"] == "distill-cross-encoder-critic" and meta["model"] == "cross-encoder"
    assert meta["labels"] == {"path": str(labels), "n_train": 18, "n_test": 6}
    assert meta["metrics"]["cv"]["n"] == 18 and meta["metrics"]["test"]["n"] == 6  # synthetic rows never scored
    assert meta["synthetic"]["n_final"] > 0 and set(meta["metrics"]["test"]["by_kind"]) == {"P", "C", "M"}
    before, after = weights(tiny_bert), weights(out / "model")
    changed = [k for k in before if not before[k].equal(after[k])]
    assert "encoder.layer.1.attention.self.query.weight" in changed and "classifier.weight" in changed
    assert "embeddings.word_embeddings.weight" not in changed  # frozen by default

    critic = build_critic("cross_encoder", {"path": str(out)})
    thr = meta["threshold"]
    assert critic.thresholds() == [("cross_encoder", ">=", thr)]
    recs = [Record(id=str(i), task="paraphrase", input=x, output=y) for i, (x, y, _) in enumerate(PAIRS)]
    kept = {r.id for r in critic.run(recs)}
    for r in recs:
        assert (r.id in kept) == (r.scores["cross_encoder"] >= thr)
    assert all(reason == f"cross_encoder<{thr:g}" for _, reason in critic.drain_rejects())

    strict = build_critic("cross_encoder", {"path": str(out), "threshold": 0.9999, "name": "ce"})
    assert list(strict.run(recs[:1])) == [] and strict.drain_rejects()[0][1] == "ce<0.9999"
    assert strict.stats()["dropped"] == {"ce<0.9999": 1}


def test_artifact_errors(tmp_path, tiny_bert):
    from distill.critics.cross_encoder import CrossEncoderCritic, train_cross_encoder
    from distill.critics.trained import TrainedCritic

    with pytest.raises(DistillError, match="no spec.json"):
        CrossEncoderCritic(str(tmp_path))
    (tmp_path / "spec.json").write_text('{"format": "distill-trained-critic", "artifact_version": 1}')
    with pytest.raises(DistillError, match="critic type 'trained'"):
        CrossEncoderCritic(str(tmp_path))
    (tmp_path / "spec.json").write_text('{"format": "distill-cross-encoder-critic", "artifact_version": 1}')
    with pytest.raises(DistillError, match="is a cross-encoder artifact: use it as {type: cross_encoder"):
        TrainedCritic(str(tmp_path))
    with pytest.raises(DistillError, match="exists; pass overwrite=True"):
        train_cross_encoder(write_labels(tmp_path / "l.jsonl"), tmp_path, base=str(tiny_bert))


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    """A 2-layer causal LM and a word-level tokenizer with an eos token but no pad token."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny-llama")
    words = sorted({w for p in PAIRS for s in p for w in s.split()})
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["<unk>", "</s>"] + words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", eos_token="</s>").save_pretrained(str(out))
    cfg = LlamaConfig(vocab_size=len(words) + 2, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, eos_token_id=1)
    LlamaForCausalLM(cfg).save_pretrained(str(out))
    return out


@pytest.mark.slow  # ~15 s, as above
def test_lm_classifier_on_a_tiny_causal_lm(tmp_path, tiny_llama):
    from distill.critics.cross_encoder import CrossEncoderCritic, FitConfig, train_cross_encoder

    labels = write_labels(tmp_path / "labels.jsonl")
    meta = train_cross_encoder(labels, tmp_path / "lm", model="lm-classifier", base=str(tiny_llama), cv=2,
                               target_precision=0.5, device="cpu", fit_config=FitConfig(epochs=1, lr=1e-3))
    assert meta["model"] == "lm-classifier" and meta["metrics"]["test"]["n"] == 6
    critic = CrossEncoderCritic(str(tmp_path / "lm"))
    assert critic.model.tokenizer.pad_token == "</s>"  # set from eos: the head reads the last real token
    assert type(critic.model.model).__name__ == "LlamaForSequenceClassification"  # a fresh head, not yes/no logits
    before, after = weights(tiny_llama), weights(tmp_path / "lm" / "model")
    assert "score.weight" in after and not before["model.layers.1.mlp.up_proj.weight"].equal(
        after["model.layers.1.mlp.up_proj.weight"])
    recs = [Record(id=str(i), task="paraphrase", input=x, output=y) for i, (x, y, _) in enumerate(PAIRS)]
    verdicts = critic.judge_batch(recs)
    for r, v in zip(recs, verdicts):
        assert v is True if r.scores["cross_encoder"] >= critic.threshold else v == (
            False, f"cross_encoder<{critic.threshold:g}")


@pytest.mark.slow
def test_minilm_cross_encoder_two_steps(tmp_path):
    """The real default base (MiniLM from its wheel, new head): a few steps change it."""
    from distill.critics.cross_encoder import CrossEncoderCritic, FitConfig, train_cross_encoder
    from distill.critics.embed import resolve_encoder

    labels = write_labels(tmp_path / "labels.jsonl")
    meta = train_cross_encoder(labels, tmp_path / "ce", cv=2, target_precision=0.5, device="cpu",
                               fit_config=FitConfig(epochs=1, batch_size=16))
    assert meta["base"] == "all-MiniLM-L6-v2"
    base = {k: v for k, v in weights(Path(resolve_encoder(None))).items() if k.startswith("encoder.")}
    after = weights(tmp_path / "ce" / "model")
    assert any(not v.equal(after[k]) for k, v in base.items())
    critic = CrossEncoderCritic(str(tmp_path / "ce"))
    rec = Record(id="a", task="paraphrase", input=PAIRS[0][0], output=PAIRS[0][1])
    critic.judge_batch([rec])
    assert 0 <= rec.scores["cross_encoder"] <= 1
