"""Student training: tiny random models (Llama, BART) with SmolLM2's tokenizer and chat
template, built and saved by the tests; one slow test trains the real SmolLM2-135M."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import require_vllm

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from distill.config import ParaphraseInstructTask, RunConfig  # noqa: E402
from distill.errors import ConfigError, DistillError  # noqa: E402

WORDS = "the a cat dog sat ran on under mat rug quickly slowly big small red blue".split()


def pairs(n: int, seed: int) -> list[dict]:
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        x = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 8))) + "."
        rows.append({"id": f"p{seed}-{i}", "task": "paraphrase", "input": x, "output": x.upper()})
    return rows


def make_corpus(path: Path, train: int = 24, validation: int = 8) -> Path:
    import datasets

    dd = datasets.DatasetDict({s: datasets.Dataset.from_list(pairs(n, k)) if n else
                               datasets.Dataset.from_dict({c: [] for c in ("id", "task", "input", "output")})
                               for k, (s, n) in enumerate([("train", train), ("validation", validation), ("test", 0)])})
    dd.save_to_disk(str(path / "dataset"), num_shards={s: 1 for s in dd})  # 0 shards would not load back
    return path


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory, tok_dir):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def config(tmp: Path, corpus: Path, model: str, **train) -> RunConfig:
    base = dict(corpus_dir=str(corpus), output_dir=str(tmp / "student"), model=model, max_steps=20,
                learning_rate=3e-3, batch_size=4, eval_steps=10, save_steps=10, logging_steps=2, warmup_ratio=0.0)
    return RunConfig(output_dir=str(tmp), seed=0, train={**base, **train})


def weights(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


def test_encoder_masks_the_prompt_and_matches_the_teacher_prompt(tok_dir):
    from transformers import AutoTokenizer

    from distill.generator.tasks.paraphrase import ParaphraseInstruct
    from distill.trainers.data import PairEncoder

    tok = AutoTokenizer.from_pretrained(tok_dir)
    enc = PairEncoder(tok, "causal", ParaphraseInstructTask(inputs="x").instruction, 256)
    row = enc("The cat sat on the mat.", "A cat was sitting on the mat.")
    n_prompt = row["labels"].count(-100)
    # the prompt is what the transformers backend feeds when this student is the next teacher
    msgs = ParaphraseInstruct(ParaphraseInstructTask(inputs="x"), seed=0).messages("The cat sat on the mat.")
    served = tok(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False),
                 add_special_tokens=False)["input_ids"]
    assert row["input_ids"][:n_prompt] == served and row["labels"][:n_prompt] == [-100] * n_prompt
    assert tok.decode(row["labels"][n_prompt:]) == "A cat was sitting on the mat.<|im_end|>\n"
    assert row["input_ids"][n_prompt:] == row["labels"][n_prompt:]


def test_causal_training_changes_weights_lowers_loss_and_serves(tmp_path, corpus, tiny_llama):
    from transformers import AutoModelForCausalLM

    from distill.generator.backends.base import SamplingParams
    from distill.generator.backends.transformers_backend import TransformersBackend
    from distill.trainers.train import run_train

    cfg = config(tmp_path, corpus, tiny_llama)
    s = run_train(cfg, progress=False)
    out = tmp_path / "student"
    assert s["steps"] == 20 and s["arch"] == "causal" and s["tokens_seen"] > 0 and s["tokens_per_second"] > 0
    assert s["train_loss_last"] < 0.7 * s["train_loss_first"]
    assert s["eval_loss_best"] < s["eval_loss_first"]
    before, after = weights(tiny_llama), weights(out / "model")
    assert any(not (before[k] == after[k]).all() for k in before)
    for f in ("loss.png", "train_stats.json", "model/generation_config.json", "model/tokenizer.json"):
        assert (out / f).is_file(), f
    assert json.loads((out / "train_stats.json").read_text())["steps"] == 20
    AutoModelForCausalLM.from_pretrained(out / "model")
    backend = TransformersBackend(model=str(out / "model"), device="cpu")
    (res,) = backend.generate([[{"role": "user", "content": "x"}]], 1, SamplingParams(max_tokens=8, temperature=0))
    assert res[0].completion_tokens > 0
    backend.close()
    # a rerun of the finished run is a no-op; another config into the same folder is refused
    t = time.time()
    assert run_train(cfg, progress=False) == s and time.time() - t < 5
    with pytest.raises(ConfigError, match="learning_rate"):
        run_train(config(tmp_path, corpus, tiny_llama, learning_rate=1e-4), progress=False)


def test_killed_training_resumes_from_its_checkpoint(tmp_path, corpus, tiny_llama):
    from distill.trainers.train import run_train

    # an uninterrupted reference run, then the same run killed after its second checkpoint (step 8)
    ref = run_train(config(tmp_path / "ref", corpus, tiny_llama, max_steps=16, save_steps=4, eval_steps=4,
                           early_stopping_patience=None), progress=False)
    cfg = config(tmp_path, corpus, tiny_llama, max_steps=16, save_steps=4, eval_steps=4,
                 early_stopping_patience=None)
    code = ("import sys, json; from distill.config import RunConfig; from distill.trainers.train import run_train; "
            "run_train(RunConfig.model_validate(json.loads(sys.argv[1])), progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code, cfg.model_dump_json()], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    ckpts = tmp_path / "student" / "checkpoints"
    deadline = time.time() + 300
    while not (ckpts / "checkpoint-8" / "trainer_state.json").is_file():
        assert proc.poll() is None and time.time() < deadline, "the training subprocess ended before checkpoint 8"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "student" / "model").exists()
    s = run_train(cfg, progress=False)
    assert s["resumed_from"] and int(s["resumed_from"].rsplit("-", 1)[1]) >= 8
    assert s["steps"] == 16
    a, b = weights(tmp_path / "ref" / "student" / "model"), weights(tmp_path / "student" / "model")
    import torch

    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a), "resumed run differs from the uninterrupted one"
    assert s["eval_loss_history"][-1][1] == pytest.approx(ref["eval_loss_history"][-1][1], rel=1e-4)


def test_lora_merges_into_model_and_keeps_adapter_without_validation(tmp_path, tiny_llama):
    from transformers import AutoModelForCausalLM

    from distill.trainers.train import run_train

    corpus = make_corpus(tmp_path / "corpus", train=16, validation=0)
    s = run_train(config(tmp_path, corpus, tiny_llama, max_steps=6, lora={"r": 4, "alpha": 8},
                         learning_rate=1e-2), progress=False)
    out = tmp_path / "student"
    assert s["eval_loss_best"] is None and s["validation_rows"] == 0 and s["steps"] == 6
    assert (out / "adapter" / "adapter_config.json").is_file()
    after = weights(out / "model")
    assert not any("lora" in k for k in after)
    before = weights(tiny_llama)
    assert any(not (before[k] == after[k]).all() for k in before if "proj" in k)
    AutoModelForCausalLM.from_pretrained(out / "model")


def test_seq2seq_tiny_bart(tmp_path, corpus, tok_dir):
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, BartConfig, BartForConditionalGeneration

    from distill.trainers.train import run_train

    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(0)
    bart = BartConfig(vocab_size=len(tok), d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                      decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=256,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      decoder_start_token_id=tok.bos_token_id, forced_eos_token_id=None)
    model_dir = tmp_path / "bart"
    BartForConditionalGeneration(bart).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    s = run_train(config(tmp_path, corpus, str(model_dir), max_steps=20), progress=False)
    assert s["arch"] == "seq2seq" and s["train_loss_last"] < s["train_loss_first"]
    assert s["eval_loss_best"] < s["eval_loss_first"]
    AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "student" / "model")


def test_bad_input_is_refused_with_a_clear_message(tmp_path, corpus, tiny_llama):
    from distill.trainers.train import run_train

    with pytest.raises(DistillError, match="distill corpus"):
        run_train(config(tmp_path, tmp_path / "nope", tiny_llama), progress=False)
    empty = make_corpus(tmp_path / "empty", train=0, validation=2)
    with pytest.raises(DistillError, match="no train rows"):
        run_train(config(tmp_path, empty, tiny_llama), progress=False)
    with pytest.raises(DistillError, match="train.model: no such model folder"):
        run_train(config(tmp_path, corpus, str(tmp_path / "missing-model")), progress=False)
    with pytest.raises(ConfigError, match="decoder-only"):
        run_train(config(tmp_path, corpus, tiny_llama, arch="seq2seq"), progress=False)
    with pytest.raises(ConfigError, match="multiple of train.eval_steps"):
        run_train(config(tmp_path, corpus, tiny_llama, eval_steps=10, save_steps=15), progress=False)


@pytest.fixture(scope="module")
def smollm2_student(tmp_path_factory, tok_dir):
    """The real SmolLM2-135M trained for 3 steps through the CLI."""
    from distill.cli import main

    tmp = tmp_path_factory.mktemp("smollm2")
    corpus = make_corpus(tmp / "corpus", train=16, validation=4)
    assert main(["train", "-o", str(tmp), "--no-progress", "--set", "train.max_steps=3",
                 "--set", "train.batch_size=4", "--set", "train.save_steps=3", "--set", "train.eval_steps=3",
                 "--set", f"train.corpus_dir={corpus}"]) == 0
    return tmp / "student"


PROMPT = [{"role": "user", "content": f"{ParaphraseInstructTask(inputs='x').instruction}\n\nThe cat sat on the mat."}]


@pytest.mark.slow
def test_real_smollm2_trains_a_few_steps_and_is_served(smollm2_student):
    from distill.generator.backends.base import SamplingParams
    from distill.generator.backends.transformers_backend import TransformersBackend

    s = json.loads((smollm2_student / "train_stats.json").read_text())
    assert s["steps"] == 3 and s["eval_loss_best"] < s["eval_loss_first"]
    backend = TransformersBackend(model=str(smollm2_student / "model"), device="cpu")
    (res,) = backend.generate([PROMPT], 1, SamplingParams(max_tokens=24, temperature=0))
    assert res[0].text.strip()
    backend.close()


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_serves_the_trained_student_as_is(smollm2_student):
    require_vllm()
    from distill.generator.backends.base import SamplingParams
    from distill.generator.backends.vllm_backend import VLLMBackend

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    b = VLLMBackend(model=str(smollm2_student / "model"), enforce_eager=True, max_model_len=1024, max_num_seqs=8)
    try:
        (res,) = b.generate([PROMPT], 1, SamplingParams(max_tokens=24, temperature=0))
        assert res[0].text.strip()
    finally:
        b.close()
