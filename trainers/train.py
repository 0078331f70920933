"""`distill train`: fine-tune a student on a corpus with transformers' Trainer.

One pass, top to bottom: find the corpus and the base model, refuse a folder made with
another config, encode the pairs (trainers/data.py), train (full or LoRA, resuming from the
last complete checkpoint), then write the outputs into ``train.output_dir``:

    checkpoints/       Trainer checkpoints; a rerun after a kill resumes from the last one
    model/             the final model (best on validation when there is one): weights,
                       tokenizer, generation_config; LoRA merged in, so from_pretrained, the
                       transformers backend and vLLM take it as-is
    adapter/           the LoRA adapter alone (LoRA runs only)
    loss.png           train and validation loss vs step
    train_stats.json   steps, losses, tokens/s, best checkpoint, config, fingerprint

``model/`` is written to a temporary folder and renamed, so its presence means the run
finished; a rerun with the same fingerprint then returns the stored stats.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from distill.config import RunConfig
from distill.devices import pick_device
from distill.errors import ConfigError, DistillError
from distill.generator.models import resolve_model
from distill.rundir import RunFolder
from distill.trainers.data import PairEncoder, corpus_digest, load_corpus_splits

# fields that may change between a killed run and its resumption (they do not change the result)
NOT_FINGERPRINTED = {"corpus_dir", "output_dir", "model", "device", "save_steps", "save_total_limit", "logging_steps"}


def paths(cfg: RunConfig) -> tuple[Path, Path]:
    t = cfg.train
    return Path(t.corpus_dir or Path(cfg.output_dir) / "corpus"), Path(t.output_dir or Path(cfg.output_dir) / "student")


def fingerprint(cfg: RunConfig, base: str, digest: str) -> dict[str, Any]:
    d = {k: v for k, v in cfg.train.model_dump(mode="json").items() if k not in NOT_FINGERPRINTED}
    seed = cfg.train.seed if cfg.train.seed is not None else cfg.seed
    return {**d, "seed": seed, "base_model": base, "corpus": digest}


def run_folder(out: Path, fp: dict[str, Any]) -> RunFolder:
    """fingerprint.json is the fingerprint alone; a run finished once model/ and train_stats.json are there."""
    return RunFolder(out, fp, record="fingerprint.json", key=None, result="train_stats.json",
                     needs=("model/config.json",), holds="a student trained with a different config",
                     elsewhere="set train.output_dir elsewhere")


def last_checkpoint(ckpt_dir: Path) -> str | None:
    """The newest checkpoint the Trainer finished writing (trainer_state.json is written last);
    a half-written one left by a kill is removed so checkpoint rotation does not count it."""
    found = sorted(ckpt_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if
                   p.name.split("-")[-1].isdigit() else -1)
    for p in reversed(found):
        if (p / "trainer_state.json").is_file():
            return str(p)
        shutil.rmtree(p, ignore_errors=True)
    return None


def pick_arch(cfg: RunConfig, model_config) -> str:
    enc_dec = bool(getattr(model_config, "is_encoder_decoder", False))
    arch = cfg.train.arch
    if arch == "auto":
        return "seq2seq" if enc_dec else "causal"
    if arch == "seq2seq" and not enc_dec:
        raise ConfigError(f"train.arch=seq2seq, but {cfg.train.model or 'the default model'} is a decoder-only "
                          f"({model_config.model_type}) model; use train.arch=causal (or auto), or a T5/BART model")
    if arch == "causal" and enc_dec:
        raise ConfigError(f"train.arch=causal, but {cfg.train.model} is an encoder-decoder "
                          f"({model_config.model_type}) model; use train.arch=seq2seq (or auto)")
    return arch


def pick_precision(precision: str, device: str) -> str:
    import torch

    if precision == "auto":
        if device == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"  # bf16 is slower than fp32 on the AVX2 CPUs measured here
    if precision == "fp16" and device == "cpu":
        raise ConfigError("train.precision=fp16 needs a CUDA device; use fp32 (or bf16) on the CPU")
    return precision


def load_model(cfg: RunConfig, base: str, arch: str):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    cls = AutoModelForSeq2SeqLM if arch == "seq2seq" else AutoModelForCausalLM
    model = cls.from_pretrained(base)  # fp32 master weights; bf16/fp16 is autocast by the Trainer
    lo = cfg.train.lora
    if lo is None:
        return model
    from peft import LoraConfig, TaskType, get_peft_model

    return get_peft_model(model, LoraConfig(
        r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=lo.target_modules,
        task_type=TaskType.SEQ_2_SEQ_LM if arch == "seq2seq" else TaskType.CAUSAL_LM))


def save_final(trainer, tok, encoder: PairEncoder, out: Path, lora: bool) -> None:
    """model/ (and adapter/) via temporary folders renamed into place."""
    model = trainer.model
    if lora:
        tmp = out / ".tmp-adapter"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        shutil.rmtree(out / "adapter", ignore_errors=True)
        os.replace(tmp, out / "adapter")
        model = model.merge_and_unload()  # plain weights: vLLM and from_pretrained need no peft
    gen = model.generation_config
    if encoder.chat:  # the served student must stop at its end-of-turn token
        end = tok(encoder.turn_end, add_special_tokens=False)["input_ids"][:1]
        eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
        gen.eos_token_id = [e for e in eos if e is not None] + [e for e in end if e not in eos]
        if len(gen.eos_token_id) == 1:
            gen.eos_token_id = gen.eos_token_id[0]
    tmp = out / ".tmp-model"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(out / "model", ignore_errors=True)
    os.replace(tmp, out / "model")


def plot_losses(train: list, evals: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train), label="train")
    if evals:
        ax.plot(*zip(*evals), marker="o", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (completion tokens)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_train(cfg: RunConfig, progress: bool = True) -> dict[str, Any]:
    """Train the student of ``cfg.train``; return its stats (also in ``<out>/train_stats.json``)."""
    t0 = time.time()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t = cfg.train
    corpus_dir, out = paths(cfg)
    dd = load_corpus_splits(corpus_dir)
    try:
        base = resolve_model(t.model)
    except DistillError as e:
        raise DistillError(str(e).replace("teacher.model", "train.model")) from None
    fp = fingerprint(cfg, base, corpus_digest(dd))
    folder = run_folder(out, fp)
    folder.check()
    done = folder.finished()
    if done is not None:
        return done
    val = dd["validation"] if "validation" in dd and len(dd["validation"]) else None
    if val is not None and t.save_steps % t.eval_steps:
        raise ConfigError(f"train.save_steps ({t.save_steps}) must be a multiple of train.eval_steps ({t.eval_steps}) "
                          f"so the best checkpoint on validation is saved")

    import torch
    from transformers import (AutoConfig, AutoTokenizer, DataCollatorForSeq2Seq, EarlyStoppingCallback, Trainer,
                              TrainingArguments, set_seed)

    device = pick_device(t.device, "student")
    precision = pick_precision(t.precision, device)
    arch = pick_arch(cfg, AutoConfig.from_pretrained(base))
    folder.claim()
    set_seed(fp["seed"])  # before the model: LoRA adapters are initialised at random
    tok = AutoTokenizer.from_pretrained(base)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    encoder = PairEncoder(tok, arch, t.instruction, t.max_length)
    train_ds = encoder.encode(dd["train"], "encode train")
    val_ds = encoder.encode(val, "encode validation") if val is not None else None
    if val is None:
        print("note: the corpus has no validation rows: no evaluation, no early stopping, the last step is final")
    model = load_model(cfg, base, arch)

    ckpt = last_checkpoint(out / "checkpoints")
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"), seed=fp["seed"], data_seed=fp["seed"],
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.learning_rate, weight_decay=t.weight_decay,
        num_train_epochs=t.epochs, max_steps=t.max_steps or -1, warmup_steps=t.warmup_ratio,
        logging_steps=t.logging_steps, logging_first_step=True,
        eval_strategy="steps" if val is not None else "no", eval_steps=t.eval_steps, eval_on_start=val is not None
        and ckpt is None, save_strategy="steps", save_steps=t.save_steps, save_total_limit=t.save_total_limit,
        load_best_model_at_end=val is not None, metric_for_best_model="eval_loss", greater_is_better=False,
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=device == "cpu",
        include_num_input_tokens_seen="non_padding", report_to="none", disable_tqdm=not progress,
        dataloader_num_workers=0, remove_unused_columns=False, prediction_loss_only=True,  # no logits kept in eval
    )
    callbacks = [EarlyStoppingCallback(t.early_stopping_patience)] if val is not None and t.early_stopping_patience \
        else []
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds, processing_class=tok,
                      data_collator=DataCollatorForSeq2Seq(tok, model=model, label_pad_token_id=-100),
                      callbacks=callbacks)
    tokens_before = json.loads((Path(ckpt) / "trainer_state.json").read_text()).get("num_input_tokens_seen", 0) \
        if ckpt else 0
    result = trainer.train(resume_from_checkpoint=ckpt)
    save_final(trainer, tok, encoder, out, t.lora is not None)

    st = trainer.state
    train_hist = [[h["step"], h["loss"]] for h in st.log_history if "loss" in h]
    eval_hist = [[h["step"], h["eval_loss"]] for h in st.log_history if "eval_loss" in h]
    plot_losses(train_hist, eval_hist, out / "loss.png")
    m = result.metrics
    stats = {
        "status": "done", "output_dir": str(out), "model_dir": str(out / "model"),
        "adapter_dir": str(out / "adapter") if t.lora else None, "base_model": base, "arch": arch,
        "corpus_dir": str(corpus_dir), "train_rows": len(train_ds), "validation_rows": len(val_ds or []),
        "device": device, "precision": precision, "torch_threads": torch.get_num_threads(),
        "steps": st.global_step, "max_steps": st.max_steps, "epochs": round(st.epoch or 0, 4),
        "stopped_early": st.global_step < st.max_steps, "resumed_from": ckpt,
        "train_loss_first": train_hist[0][1] if train_hist else None,
        "train_loss_last": train_hist[-1][1] if train_hist else None,
        "eval_loss_first": eval_hist[0][1] if eval_hist else None, "eval_loss_best": st.best_metric,
        "best_checkpoint": st.best_model_checkpoint,
        "tokens_seen": int(st.num_input_tokens_seen),
        "tokens_per_second": round((st.num_input_tokens_seen - tokens_before) / max(m["train_runtime"], 1e-9), 1),
        "train_runtime_s": round(m.get("train_runtime", 0.0), 1), "wall_s": round(time.time() - t0, 1),
        "train_loss_history": train_hist, "eval_loss_history": eval_hist,
        # [step, tokens seen, seconds since this invocation started] at each train-loss log
        "token_log": [[h["step"], h["num_input_tokens_seen"], h["train_runtime"]] for h in st.log_history
                      if "loss" in h and "train_runtime" in h],
        "config": t.model_dump(mode="json"), "fingerprint": fp,
    }
    folder.finish(stats)
    return stats


def cli_train(cfg: RunConfig, progress: bool = True) -> int:
    s = run_train(cfg, progress=progress)
    ev = f", validation loss {s['eval_loss_first']:.3f} -> best {s['eval_loss_best']:.3f}" \
        if s.get("eval_loss_best") is not None else ""
    tl = f", train loss {s['train_loss_first']:.3f} -> {s['train_loss_last']:.3f}" if s.get("train_loss_last") else ""
    print(f"\n{s['status']}: {s['steps']} steps ({s['epochs']} epochs) on {s['train_rows']} pairs{tl}{ev}")
    print(f"{s['tokens_per_second']} tokens/s, {s['train_runtime_s']} s training, {s['wall_s']} s in all")
    print(f"model: {s['model_dir']} (use as teacher.model); loss curve: {s['output_dir']}/loss.png")
    return 0
