"""The student's data: read the corpus, turn each (x, y) pair into token ids and labels.

Causal LMs learn the exact prompt the teacher backends send when the student becomes the
next round's teacher: ``ParaphraseInstruct.messages(x)`` rendered with the model's chat
template (``add_generation_prompt=True``), tokenized on its own without special tokens as
the transformers backend does. The completion is ``y`` plus whatever the template writes
after an assistant turn (``<|im_end|>\\n`` for SmolLM2), so the student learns to stop.
Loss is on completion tokens only: labels are -100 on the prompt (and on padding, which
the collator adds). Prompt and completion are tokenized separately so the prompt ids are
the very ids the backend feeds at inference.

A model without a chat template gets the plain prompt ``instruction\\n\\nx\\n`` (tokenized
with special tokens, as the backend tokenizes text prompts) and the completion ``y`` + EOS.
Seq2seq models get source ``instruction\\n\\nx`` and target ``y``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from distill.errors import DistillError

SPLITS = ("train", "validation", "test")


def load_corpus_splits(corpus_dir: Path):
    """The corpus as a ``DatasetDict`` (train, validation, test; the last two may be empty)."""
    import datasets

    try:  # the corpus stage's own loader, when it exists
        from distill.corpus.dataset import load_corpus
    except ImportError:
        load_corpus = None
    hint = "run `distill corpus` first (or set train.corpus_dir to a `distill corpus` output folder)"
    if not corpus_dir.is_dir():
        raise DistillError(f"no corpus at {corpus_dir}: {hint}")
    if load_corpus is not None:
        dd = load_corpus(corpus_dir)
    elif (corpus_dir / "dataset" / "dataset_dict.json").is_file():
        dd = datasets.load_from_disk(str(corpus_dir / "dataset"))
    else:
        files = {s: sorted(str(p) for p in (corpus_dir / "data").glob(f"{s}-*.parquet")) for s in SPLITS}
        if not files["train"]:
            raise DistillError(f"{corpus_dir} holds neither dataset/ nor data/train-*.parquet: {hint}")
        dd = datasets.DatasetDict({s: datasets.Dataset.from_parquet(f) for s, f in files.items() if f})
    if "train" not in dd or len(dd["train"]) == 0:
        raise DistillError(f"the corpus at {corpus_dir} has no train rows: nothing to train on (did every record "
                           f"fail the critics? see the filter's stats.json)")
    missing = {"input", "output"} - set(dd["train"].column_names)
    if missing:
        raise DistillError(f"the corpus at {corpus_dir} lacks the column(s) {sorted(missing)}")
    return dd


def corpus_digest(dd) -> str:
    """A content hash of the rows the student sees (train and validation), for the fingerprint."""
    h = hashlib.sha256()
    for split in ("train", "validation"):
        if split in dd:
            h.update(f"{split}:{len(dd[split])}\n".encode())
            for x, y in zip(dd[split]["input"], dd[split]["output"]):
                h.update(f"{x}\x00{y}\x01".encode())
    return h.hexdigest()[:16]


class PairEncoder:
    """(x, y) -> {input_ids, attention_mask, labels} for one model family (see module doc)."""

    def __init__(self, tok, arch: str, instruction: str, max_length: int) -> None:
        self.tok, self.arch, self.instruction, self.max_length = tok, arch, instruction, max_length
        self.chat = arch == "causal" and bool(getattr(tok, "chat_template", None))
        if self.chat:
            self.turn_end = self._turn_end()

    def _turn_end(self) -> str:
        """What the template writes after an assistant message's content (e.g. ``<|im_end|>\\n``)."""
        msgs = self.messages("x")
        prompt = self.tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        probe = "\u2063probe\u2063"
        full = self.tok.apply_chat_template(msgs + [{"role": "assistant", "content": probe}], tokenize=False)
        if not full.startswith(prompt) or probe not in full:
            raise DistillError("the model's chat template does not render an assistant turn after the generation "
                               "prompt; train it with a model whose template does, or one without a template")
        return full.split(probe, 1)[1]

    def messages(self, x: str) -> list[dict[str, str]]:
        # ParaphraseInstruct.messages without few-shot examples
        return [{"role": "user", "content": f"{self.instruction}\n\n{x}"}]

    def prompt_text(self, x: str) -> str:
        if self.chat:
            return self.tok.apply_chat_template(self.messages(x), add_generation_prompt=True, tokenize=False)
        return f"{self.instruction}\n\n{x}" + ("\n" if self.arch == "causal" else "")

    def __call__(self, x: str, y: str) -> dict[str, list[int]]:
        tok, n = self.tok, self.max_length
        if self.arch == "seq2seq":
            src = tok(self.prompt_text(x), truncation=True, max_length=n)["input_ids"]
            tgt = tok(text_target=y, truncation=True, max_length=n)["input_ids"]
            if tok.eos_token_id is not None and tgt[-1:] != [tok.eos_token_id]:  # T5/BART add it, others do not
                tgt = tgt[: n - 1] + [tok.eos_token_id]
            return {"input_ids": src, "attention_mask": [1] * len(src), "labels": tgt}
        if self.chat:
            p = tok(self.prompt_text(x), add_special_tokens=False)["input_ids"]
            c = tok(y + self.turn_end, add_special_tokens=False)["input_ids"]
        else:
            p = tok(self.prompt_text(x))["input_ids"]
            c = tok(y, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        # cut the prompt's start, never the completion's end: the stop token must stay learnable
        c = c[: n - 1]
        p = p[max(0, len(p) - (n - len(c))):]
        ids = p + c
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [-100] * len(p) + c}

    def encode(self, ds, desc: str):
        """Map a split to model inputs, dropping every other column."""
        # in memory: never write cache files into the corpus folder; an explicit fingerprint
        # spares datasets hashing the tokenizer inside the closure
        key = hashlib.sha256(f"{ds._fingerprint}|{self.arch}|{self.instruction}|{self.max_length}|"
                             f"{self.tok.name_or_path}".encode()).hexdigest()[:16]
        return ds.map(lambda r: self(r["input"], r["output"]), remove_columns=ds.column_names, desc=desc,
                      keep_in_memory=True, new_fingerprint=key)
