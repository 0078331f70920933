"""The embedded default teacher: a transformers causal LM, batched, on CPU or CUDA.

Sampling is done per row: each (prompt, sample index) row has its own random generator
seeded from :func:`sample_seed`; the logits are filtered by transformers' own warpers
(temperature, top-k, top-p), each row draws its next token from its own generator, and
generation (run greedy) takes that token. This samples from the same distribution as
``do_sample=True`` but makes sample ``i`` of a prompt independent of which other rows
share its batch, so batch size, length sorting and resuming after a crash do not change
the samples.

Prefill is shared at two levels (see :meth:`_shared_prefill`): the long prefix that
different prompts have in common (a few-shot block, a system line) is run through the model
once and its KV cache kept for later batches and calls, and within a batch each distinct
prompt's remaining tokens are run once and copied to its sample rows. So n samples of
m few-shot prompts cost one prefill of the shared prefix plus m short ones, not n x m long ones.

A request's lexical constraints (generator/constraints.py) are applied per row by a logits
processor that runs before the sampler (backends/lexical.py); the vocabulary it needs is read
once per backend.
"""

from __future__ import annotations

import copy
import inspect
import os
from collections import OrderedDict, defaultdict
from collections.abc import Sequence

from distill.devices import pick_device, pick_dtype, release_model
from distill.errors import DistillError
from distill.generator.backends.base import (
    Backend,
    Completion,
    Deliver,
    Gate,
    OpenGate,
    Prompt,
    Request,
    Result,
    SamplingParams,
    apply_stop,
    local_model_id,
    sample_seed,
)
from distill.generator.models import resolve_model



class TransformersBackend(Backend):
    name = "transformers"
    supports_constraints = True
    supports_json_schema = True  # through xgrammar's grammar-constrained decoding
    streams = True

    def __init__(self, model: str | None = None, device: str = "auto", dtype: str = "auto",
                 batch_size: int = 32, trust_remote_code: bool = False, share_prefill: bool = True) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.path = resolve_model(model)  # a missing model fails here, before the heavy imports
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = pick_device(device, "teacher")
        self.batch_size = batch_size
        self.chunk_size = batch_size * 4
        self.share_prefill = share_prefill  # off: every row prefills its own prompt (the reference path)
        self._prefixes: OrderedDict[tuple[int, ...], object] = OrderedDict()  # shared-prefix KV caches, newest last
        try:
            self.tok = AutoTokenizer.from_pretrained(self.path, trust_remote_code=trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(
                self.path, dtype=pick_dtype(dtype, self.device, "teacher"), trust_remote_code=trust_remote_code
            ).to(self.device)
        except OSError as e:
            raise DistillError(
                f"could not load teacher model {model!r} ({self.path}): {e}\nNothing is downloaded at run "
                f"time here: pass a local folder or a model already in the Hugging Face cache."
            ) from e
        self.model.eval()
        # what this transformers version's forward takes, read once: a KV cache as `cache` (5.2x;
        # `past_key_values` still works there, with a deprecation warning) or `past_key_values`,
        # and `logits_to_keep` (the LM head run on the last positions only)
        forward_args = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward_args else "past_key_values"
        self._keeps_logits = "logits_to_keep" in forward_args
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        eos = self.model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        for t in (self.tok.eos_token_id, self.tok.convert_tokens_to_ids("<|endoftext|>")):
            if isinstance(t, int) and t != self.tok.unk_token_id and t not in eos:
                eos.append(t)
        self.eos_ids = eos
        self.max_len = getattr(self.model.config, "max_position_embeddings", None)
        self._torch = torch
        self._lexicon = None

    @property
    def model_id(self) -> str:
        return local_model_id(self.name, self.path)

    def render(self, prompt: Prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        if not self.tok.chat_template:
            raise DistillError(f"chat prompts need a chat template, and {self.path} has none; use a text task mode")
        return self.tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)

    def generate_requests(self, requests: list[Request], deliver: Deliver | None = None,
                          gate: Gate | None = None) -> list[Result]:
        # One row per (request, sample index); rows that share sampling params are batched
        # together, longest prompts first so a batch holds prompts of similar length. Each
        # batch is delivered as it finishes (a kill loses at most the batch being decoded) and
        # asks the gate first; a request's prompt tokens go with its first delivered sample.
        ids = [self.tok(self.render(r.prompt), add_special_tokens=not isinstance(r.prompt, list))["input_ids"]
               for r in requests]
        for r, x in zip(requests, ids):
            if not x:
                raise DistillError("empty prompt: every prompt needs at least one token")
            if self.max_len and len(x) + r.params.max_tokens > self.max_len:
                raise DistillError(f"a prompt of {len(x)} tokens plus max_tokens={r.params.max_tokens} exceeds "
                                   f"the model's context of {self.max_len} tokens")
        rows = [(ri, k, idx) for ri, r in enumerate(requests) for k, idx in enumerate(r.indices)]
        out: dict[int, list[Completion | None]] = {ri: [None] * len(r.indices) for ri, r in enumerate(requests)}
        billed: set[int] = set()  # requests whose prompt tokens were delivered
        by_params: dict[SamplingParams, list] = defaultdict(list)
        for row in rows:
            by_params[requests[row[0]].params].append(row)
        for params, prow in by_params.items():
            prow.sort(key=lambda row: -len(ids[row[0]]))
            for b in range(0, len(prow), self.batch_size):
                batch = prow[b : b + self.batch_size]
                seeds = [sample_seed(requests[ri].prompt, params, idx) for ri, _, idx in batch]
                cons = [requests[ri].constraints for ri, _, _ in batch]
                fresh = {ri for ri, _, _ in batch if ri not in billed}
                with (gate or OpenGate()).hold(len(batch) * params.max_tokens, sum(len(ids[ri]) for ri in fresh)):
                    comps = self._generate_batch([ids[ri] for ri, _, _ in batch], seeds, params, cons)
                    for (ri, k, idx), c in zip(batch, comps):
                        out[ri][k] = c
                        if deliver is not None:
                            deliver(ri, (idx,), [c], 0 if ri in billed else len(ids[ri]))
                        billed.add(ri)
        return [Result(completions=out[ri], prompt_tokens=len(ids[ri])) for ri in range(len(requests))]

    def _grammar_processor(self, schema: str):
        """A fresh xgrammar logits processor for one generate() call (grammars compiled once)."""
        import xgrammar as xgr
        from xgrammar.contrib.hf import LogitsProcessor

        if getattr(self, "_grammars", None) is None:
            info = xgr.TokenizerInfo.from_huggingface(self.tok, vocab_size=self.model.config.vocab_size,
                                                      stop_token_ids=list(self.eos_ids))
            self._grammars = (xgr.GrammarCompiler(info), {})
        compiler, compiled = self._grammars
        if schema not in compiled:
            compiled[schema] = compiler.compile_json_schema(schema)
        return LogitsProcessor(compiled[schema])

    def lexicon(self):
        """The vocabulary as the lexical constraints read it (built on first use)."""
        if self._lexicon is None:
            from distill.generator.backends.lexical import Lexicon

            self._lexicon = Lexicon(self.tok, getattr(self.model.config, "vocab_size", None), self.device)
        return self._lexicon

    def _generate_batch(self, prompts: list[list[int]], seeds: list[int], params: SamplingParams,
                        constraints: list | None = None) -> list[Completion]:
        torch = self._torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        with torch.inference_mode():
            enc, cache = self._shared_prefill(prompts, params.max_tokens) if self.share_prefill else (None, None)
        if enc is None:
            enc = self.tok.pad({"input_ids": prompts}, return_tensors="pt").to(self.device)
        width = enc["input_ids"].shape[1]
        processors = LogitsProcessorList()
        if constraints and any(c is not None for c in constraints):
            from distill.generator.backends.lexical import LexicalProcessor

            processors.append(LexicalProcessor(self.lexicon(), constraints, width))  # bans before sampling
        if params.json_schema is not None:  # only tokens the schema's grammar allows, before sampling
            processors.append(self._grammar_processor(params.json_schema))
        if params.temperature > 0:
            processors.append(_RowSeededSampler(seeds, params, self.device))
        stopping = StoppingCriteriaList()
        if params.stop:
            stopping.append(_StopOnStrings(self.tok, params.stop, width))
        gen_config = GenerationConfig(
            max_new_tokens=params.max_tokens, do_sample=False, num_beams=1,
            eos_token_id=self.eos_ids, pad_token_id=self.tok.pad_token_id,
        )
        with torch.inference_mode():
            extra = {self._cache_arg: cache} if cache is not None else {}
            seqs = self.model.generate(**enc, generation_config=gen_config, logits_processor=processors,
                                       stopping_criteria=stopping, **extra)
        results = []
        for row in seqs[:, width:].tolist():
            n = len(row)
            for j, t in enumerate(row):
                if t in self.eos_ids:
                    n = j
                    break
            text, stopped = apply_stop(self.tok.decode(row[:n], skip_special_tokens=True), params.stop,
                                       params.include_stop)
            hit_eos = n < len(row)
            finish = "stop" if stopped or hit_eos else "length"
            results.append(Completion(text=text, completion_tokens=n + (1 if hit_eos and not stopped else 0),
                                      finish_reason=finish))
        return results

    # A prefix shared by the distinct prompts of a batch is cached when it is at least this long
    # and two or more prompts share it; the newest ``max_prefixes`` such caches are kept.
    min_shared_prefix = 16
    max_prefixes = 2

    def _shared_prefill(self, prompts: list[list[int]], max_new_tokens: int = 0):
        """(input_ids, attention_mask, KV cache of every row but its last token) for a batch, or
        (None, None) when nothing is shared (every row its own prompt, no cached prefix), and
        generate then left-pads and prefills every row itself.

        Each distinct prompt is laid out as ``shared prefix | padding | rest``: the shared prefix
        (the longest one the distinct prompts have in common, or a cached prefix of it) sits in
        the first columns of every row, so one KV cache of it, computed once with batch size 1
        and kept in :attr:`_prefixes`, serves every prompt of this batch and of later batches and
        calls; the padding goes between it and each prompt's own tokens. The attention mask
        hides the padding, and positions are derived from the mask exactly as ``generate``
        derives them (``GenerationMixin._prepare_position_ids_for_generation``): the prefix
        takes positions 0..P-1 and each prompt's own tokens continue from P, as when the prompt
        is prefilled alone. The rest of each distinct prompt but its last token is then run once
        on top of the prefix cache, and the cache is gathered to the rows. Given it and the full
        input_ids / attention_mask, ``generate`` runs only the last prompt token and decodes.

        A model with sliding-window attention counts padding inside the window and keeps only
        the window in its cache, so there nothing is shared unless prompt and answer fit in it.
        """
        torch = self._torch
        from transformers import DynamicCache

        first: dict[tuple[int, ...], int] = {}
        row_to_distinct = [first.setdefault(tuple(p), len(first)) for p in prompts]
        distinct = list(first)
        window = getattr(self.model.config, "sliding_window", None)
        if window and max(map(len, distinct)) + max_new_tokens > window:
            return None, None
        plen, base = self._cached_prefix(distinct)
        if base is None and len(distinct) == len(prompts):
            return None, None
        rests = [d[plen:] for d in distinct]
        width = plen + max(len(r) for r in rests)
        pad = self.tok.pad_token_id
        ids = torch.tensor([d[:plen] + (pad,) * (width - len(d)) + r for d, r in zip(distinct, rests)],
                           device=self.device)
        mask = torch.tensor([[1] * plen + [0] * (width - len(d)) + [1] * len(r) for d, r in zip(distinct, rests)],
                            device=self.device)
        cache = None
        if base is not None:
            cache = copy.deepcopy(base)
            cache.batch_repeat_interleave(len(distinct))
        if width - 1 > plen:  # the prompts' own tokens but the last, on top of the prefix
            pos = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
            extra = {"logits_to_keep": 1} if self._keeps_logits else {}  # the logits are not used
            out = self.model(input_ids=ids[:, plen:-1], attention_mask=mask[:, :-1], position_ids=pos[:, plen:-1],
                             use_cache=True, **{self._cache_arg: cache}, **extra)
            cache = self._cache_of(out)
        if not isinstance(cache, DynamicCache) or cache.get_seq_length() != width - 1:
            return None, None  # a cache kind this layout is not known to be right for: prefill every row
        pick = torch.tensor(row_to_distinct, device=self.device)
        cache.batch_select_indices(pick)  # keys[idx], values[idx]
        return {"input_ids": ids[pick], "attention_mask": mask[pick]}, cache

    def _cached_prefix(self, distinct: list[tuple[int, ...]]):
        """(P, KV cache of the first P tokens with batch size 1) for a prefix every distinct prompt
        starts with and leaves at least one token after, or (0, None): a cached prefix if one
        fits, else the prompts' longest common prefix when two or more share one of at least
        :attr:`min_shared_prefix` tokens (computed here and cached)."""
        from transformers import DynamicCache

        common = min(len(d) for d in distinct) - 1
        head = distinct[0]
        for d in distinct[1:]:
            common = next((i for i, (a, b) in enumerate(zip(head[:common], d)) if a != b), common)
        for key in reversed(self._prefixes):
            if len(key) <= common and head[: len(key)] == key:
                self._prefixes.move_to_end(key)
                return len(key), self._prefixes[key]
        if len(distinct) < 2 or common < self.min_shared_prefix:
            return 0, None
        key = head[:common]
        extra = {"logits_to_keep": 1} if self._keeps_logits else {}
        out = self.model(input_ids=self._torch.tensor([key], device=self.device), use_cache=True, **extra)
        cache = self._cache_of(out)
        if not isinstance(cache, DynamicCache) or cache.get_seq_length() != common:
            return 0, None
        self._prefixes[key] = cache
        while len(self._prefixes) > self.max_prefixes:
            self._prefixes.popitem(last=False)
        return common, cache

    @staticmethod
    def _cache_of(out):
        cache = getattr(out, "cache", None)
        return cache if cache is not None else out.past_key_values

    def first_token_ids(self, candidates: Sequence[str]) -> list[int]:
        """The first token id of each candidate string (no special tokens added)."""
        out = []
        for c in candidates:
            ids = self.tok(c, add_special_tokens=False)["input_ids"]
            if not ids:
                raise DistillError(f"candidate {c!r} encodes to no tokens")
            out.append(ids[0])
        return out

    def next_token_logprobs(self, prompts: Sequence[Prompt], candidates: Sequence[str]) -> list[dict[str, float]]:
        """One forward pass per batch (longest prompts first, left padding); log-softmax of the
        last position, read at each candidate's first token."""
        torch = self._torch
        if self.model is None:
            raise DistillError("TransformersBackend.next_token_logprobs called after close()")
        cand = torch.tensor(self.first_token_ids(candidates), device=self.device)
        ids = [self.tok(self.render(p), add_special_tokens=not isinstance(p, list))["input_ids"] for p in prompts]
        for x in ids:
            if not x:
                raise DistillError("empty prompt: every prompt needs at least one token")
            if self.max_len and len(x) > self.max_len:
                raise DistillError(f"a prompt of {len(x)} tokens exceeds the model's context of {self.max_len} tokens")
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out: list[dict[str, float]] = [{} for _ in ids]
        for b in range(0, len(order), self.batch_size):
            batch = order[b : b + self.batch_size]
            enc = self.tok.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt").to(self.device)
            mask = enc["attention_mask"]
            # Left padding: positions must count real tokens only, as generate() does, or the
            # padded rows would see shifted positions and give other numbers than alone.
            pos = (mask.cumsum(-1) - 1).clamp_(min=0)
            extra = {"logits_to_keep": 1} if self._keeps_logits else {}  # skip the LM head elsewhere
            with torch.inference_mode():
                logits = self.model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=pos,
                                    use_cache=False, **extra).logits[:, -1, :]
                lp = torch.log_softmax(logits.float(), dim=-1)[:, cand].tolist()
            for i, row in zip(batch, lp):
                out[i] = dict(zip(candidates, row))
        return out

    def score(self, requests: Sequence[tuple[Prompt, str]]) -> list[list[float]]:
        """Teacher-forced log-probabilities of each continuation (see :meth:`Backend.score`).

        Rows go longest first, left-padded, so every row's continuation ends at the last column
        and the LM head runs on the last ``max continuation + 1`` positions only."""
        torch = self._torch
        if self.model is None:
            raise DistillError("TransformersBackend.score called after close()")
        rows = []
        for prompt, cont in requests:
            p = self.tok(self.render(prompt), add_special_tokens=not isinstance(prompt, list))["input_ids"]
            c = self.tok(cont, add_special_tokens=False)["input_ids"] if cont else []
            if not p:
                raise DistillError("empty prompt: scoring needs at least one prompt token")
            if self.max_len and len(p) + len(c) > self.max_len:
                raise DistillError(f"a prompt and continuation of {len(p) + len(c)} tokens exceed the model's "
                                   f"context of {self.max_len} tokens")
            rows.append((p, c))
        order = sorted((i for i in range(len(rows)) if rows[i][1]), key=lambda i: -sum(map(len, rows[i])))
        out: list[list[float]] = [[] for _ in rows]
        for b in range(0, len(order), self.batch_size):
            batch = order[b : b + self.batch_size]
            enc = self.tok.pad({"input_ids": [rows[i][0] + rows[i][1] for i in batch]}, padding_side="left",
                               return_tensors="pt").to(self.device)
            mask = enc["attention_mask"]
            pos = (mask.cumsum(-1) - 1).clamp_(min=0)  # count real tokens only, as in next_token_logprobs
            keep = max(len(rows[i][1]) for i in batch) + 1
            extra = {"logits_to_keep": keep} if self._keeps_logits else {}
            with torch.inference_mode():
                logits = self.model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=pos,
                                    use_cache=False, **extra).logits[:, -keep:-1, :].float()
                target = enc["input_ids"][:, -keep + 1 :]  # position t predicts token t + 1
                lp = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
            for i, row in zip(batch, lp.tolist()):
                out[i] = row[len(row) - len(rows[i][1]) :]
        return out

    def close(self) -> None:
        self._prefixes.clear()
        release_model(self)


class _RowSeededSampler:
    """Logits processor: draws each row's token with the row's own generator and returns
    scores whose argmax is that token (see module docstring).

    Temperature, top-k and top-p are applied here rather than with transformers'
    warpers: their top-p sorts the whole vocabulary every step (~25% of a step for
    SmolLM2 on CPU). Here top-p looks at the ``top_k`` best tokens (or a candidate set
    that doubles until it holds ``top_p`` of the mass), which keeps exactly the same
    tokens: token t stays iff the probability mass strictly above it is < top_p.
    """

    first_candidates = 256

    def __init__(self, seeds: list[int], params: SamplingParams, device: str) -> None:
        import torch

        self.torch = torch
        self.gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.device = device
        self.temperature, self.top_k, self.top_p = params.temperature, params.top_k, params.top_p

    def filtered(self, scores):
        """(candidate probabilities with filtered tokens zeroed, their vocabulary ids)."""
        torch = self.torch
        scores = scores.float() / self.temperature
        vocab = scores.shape[-1]
        log_z = torch.logsumexp(scores, dim=-1, keepdim=True)
        k = min(self.top_k, vocab) if self.top_k > 0 else (min(self.first_candidates, vocab) if self.top_p < 1 else vocab)
        while True:
            vals, ids = torch.topk(scores, k, dim=-1, sorted=True)
            probs = torch.exp(vals - log_z)
            if self.top_p >= 1 or self.top_k > 0 or k == vocab or bool((probs.sum(-1) >= self.top_p).all()):
                break
            k = min(k * 4, vocab)
        if self.top_p < 1:
            # renormalise over the top-k set first when top-k is on (transformers' order: top-k, then top-p)
            p = probs / probs.sum(-1, keepdim=True) if self.top_k > 0 else probs
            probs = probs * ((torch.cumsum(p, dim=-1) - p) < self.top_p)
        return probs, ids

    def __call__(self, input_ids, scores):
        torch = self.torch
        probs, ids = self.filtered(scores)
        # Inverse-CDF sampling with one uniform per row from the row's own generator.
        cdf = torch.cumsum(probs, dim=-1)
        u = torch.cat([torch.rand(1, generator=g, device=self.device) for g in self.gens]).unsqueeze(1)
        # right=True: the first candidate whose cdf exceeds u*total, never a zeroed one
        pos = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp_(max=probs.shape[-1] - 1)
        picked = ids.gather(1, pos).squeeze(1)
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(len(picked), device=out.device), picked] = 0.0
        return out


class _StopOnStrings:
    """Stopping criterion: a row is done once its generated text contains a stop string.

    Only the last few generated tokens are decoded each step (stop strings are short),
    so the check costs little next to the forward pass.
    """

    def __init__(self, tok, stop: tuple[str, ...], prompt_width: int, tail: int = 6) -> None:
        self.tok, self.stop, self.width, self.tail = tok, stop, prompt_width, tail

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        gen = input_ids[:, self.width :]
        texts = self.tok.batch_decode(gen[:, -self.tail :], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stop) for t in texts], device=input_ids.device)
