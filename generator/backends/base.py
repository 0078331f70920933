"""The one teacher interface every backend implements.

A backend turns requests (a prompt, the sample indices wanted, sampling params) into
completions with token counts. Sample ``i`` of a prompt is meant to be a pure function
of (model, prompt, params, seed, i): backends derive their random seeds from
:func:`sample_seed` / :func:`request_seed`, so a resumed run or a different batch size
reproduces the same samples where the engine allows it (transformers and vLLM do;
remote APIs only on a best-effort basis).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any, Protocol, Union

from distill.errors import ConfigError
from distill.generator.constraints import LexicalConstraint

Message = dict[str, str]
Prompt = Union[str, list[Message]]  # text (completion mode) or chat messages


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings shared by all backends (vLLM's names and stop semantics).

    ``stop`` strings end a completion; the matched string is cut from the text unless
    ``include_stop`` is set. ``top_k=0`` means no top-k filtering.
    """

    max_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    include_stop: bool = False
    seed: int = 0
    #: a JSON schema (as JSON text) every completion must follow, decoded under it (structured
    #: outputs: xgrammar for transformers, vLLM's structured outputs, response_format for APIs)
    json_schema: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(self.stop))
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    def key(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        if d["json_schema"] is None:  # keys of unstructured samples are as before the field existed
            del d["json_schema"]
        return d

    def distribution_key(self) -> dict[str, Any]:
        """What decides the token distribution. Stop strings and max_tokens only cut a
        sample short, so they stay out of the seeds: the same prompt with a longer
        max_tokens continues the same sample."""
        d = {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k, "seed": self.seed}
        if self.json_schema is not None:
            d["json_schema"] = self.json_schema
        return d


@dataclass
class Completion:
    text: str
    completion_tokens: int
    finish_reason: str = "stop"  # "stop" (EOS or a stop string) or "length"


@dataclass
class Request:
    prompt: Prompt
    params: SamplingParams
    indices: tuple[int, ...]  # which samples of this prompt are wanted (0-based)
    n: int = 0  # how many samples the caller wants in all (>= max(indices) + 1)
    #: what the completions may not contain (generator/constraints.py); None: free. A backend
    #: that cannot apply it refuses the request (Backend.supports_constraints)
    constraints: LexicalConstraint | None = None

    def __post_init__(self) -> None:
        self.indices = tuple(self.indices)
        if not self.indices:
            raise ValueError("a request must ask for at least one sample")
        self.n = max(self.n, max(self.indices) + 1)


@dataclass
class Result:
    completions: list[Completion]  # one per requested index, in request order
    prompt_tokens: int = 0  # the prompt counted once, as APIs bill it


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    samples: int = 0

    def add(self, other: "Usage") -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.requests += other.requests
        self.samples += other.samples

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


#: How a streaming backend hands samples over as they arrive: (position of the request in the
#: list, the sample indices delivered, their completions, prompt tokens billed with them). The
#: caller stores them at once, so a kill can only lose what was still in flight.
Deliver = Callable[[int, tuple[int, ...], list[Completion], int], None]


class GateFull(Exception):
    """The budget has room only if a call in flight comes back under its max_tokens: wait for
    one to be delivered, then ask again."""


class Gate(Protocol):
    """Admits work against the budget. ``hold(max_completion_tokens, prompt_tokens)`` is entered
    just before a call is sent and left when its samples have been delivered; while held, the
    call counts as spent in full. Entering raises BudgetExhausted when the budget is spent, and
    GateFull (only while other calls are held) when the held calls would spend it."""

    def hold(self, completion_tokens: int, prompt_tokens: int) -> AbstractContextManager[None]: ...


class OpenGate:
    """No budget: admits everything."""

    def hold(self, completion_tokens: int, prompt_tokens: int) -> AbstractContextManager[None]:
        return nullcontext()


def local_model_id(backend: str, path: str) -> str:
    """The model id (cache keys, records) of a model run here: the backend and the resolved path."""
    return f"{backend}:{path}"


def prompt_text(prompt: Prompt) -> str:
    """A stable string form of a prompt, for cache keys and logs."""
    if isinstance(prompt, str):
        return prompt
    return json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def _hash_int(*parts: Any) -> int:
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode())
    return int.from_bytes(h.digest()[:8], "big") & ((1 << 63) - 1)


def request_seed(prompt: Prompt, params: SamplingParams) -> int:
    """Seed for all samples of one prompt drawn together (vLLM ``n=k``, API ``n``)."""
    return _hash_int("request", prompt_text(prompt), params.distribution_key())


def sample_seed(prompt: Prompt, params: SamplingParams, index: int) -> int:
    """Seed for sample ``index`` of one prompt drawn on its own."""
    return _hash_int("sample", prompt_text(prompt), params.distribution_key(), index)


def apply_stop(text: str, stop: Sequence[str], include_stop: bool) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string. Returns (text, whether a stop matched)."""
    best = -1
    best_s = ""
    for s in stop:
        if not s:
            continue
        i = text.find(s)
        if i != -1 and (best == -1 or i < best):
            best, best_s = i, s
    if best == -1:
        return text, False
    return (text[: best + len(best_s)] if include_stop else text[:best]), True


class Backend:
    """Base class of teacher backends.

    Subclasses implement :meth:`generate_requests`; heavy imports (torch, vllm, openai)
    happen in ``__init__`` or later, never at module import.
    """

    name: str = "backend"
    #: how many requests the caller should hand over at once (None: all of a shard,
    #: which lets vLLM schedule everything in one ``generate()`` call)
    chunk_size: int | None = None
    #: whether the backend applies a Request's ``constraints`` while decoding
    supports_constraints: bool = False
    #: whether ``generate_requests`` takes ``deliver=`` and ``gate=`` (a streaming backend hands
    #: each sample over as it is made and asks the gate before each call or batch; others are
    #: stored and checked per chunk by the caller)
    streams: bool = False

    @property
    def model_id(self) -> str:
        """Identifies the model for cache keys and the run manifest."""
        raise NotImplementedError

    def generate_requests(self, requests: list[Request]) -> list[Result]:
        """One Result per request, in order. A streaming backend (``streams = True``) also takes
        ``deliver: Deliver | None`` and ``gate: Gate | None`` keywords: it calls ``deliver`` as
        samples are finished (every sample exactly once, before returning) and enters
        ``gate.hold`` around each call or batch it sends."""
        raise NotImplementedError

    def generate(self, prompts: Sequence[Prompt], n: int, params: SamplingParams,
                 constraints: Sequence[LexicalConstraint | None] | None = None) -> list[list[Completion]]:
        """Convenience form: ``n`` completions for each prompt (``constraints``: one per prompt)."""
        cons = list(constraints) if constraints is not None else [None] * len(prompts)
        reqs = [Request(p, params, tuple(range(n)), n, c) for p, c in zip(prompts, cons, strict=True)]
        return [r.completions for r in self.generate_requests(reqs)]

    #: whether the backend decodes under SamplingParams.json_schema
    supports_json_schema: bool = False

    def refuse_json_schema(self, params: SamplingParams) -> None:
        if params.json_schema is not None and not self.supports_json_schema:
            raise ConfigError(f"task.output_schema: the {self.name} backend cannot decode under a JSON schema")

    def refuse_constraints(self, constraints: Iterable[LexicalConstraint | None]) -> None:
        """Raise when a constraint is given and this backend cannot apply it."""
        if not self.supports_constraints and any(c is not None for c in constraints):
            raise ConfigError(f"task.constraints: the {self.name} backend cannot apply lexical constraints while "
                              f"decoding; use teacher.backend=transformers or turn task.constraints off")

    def next_token_logprobs(self, prompts: Sequence[Prompt], candidates: Sequence[str]) -> list[dict[str, float]]:
        """For each prompt, the log-probability of each candidate as the next token.

        A candidate stands for its first token (``" yes"``, ``"Yes"``, ``" no"``): two candidates
        with the same first token get the same value, so callers that sum over candidates should
        pass distinct single-token strings. Chat prompts are rendered with the generation prompt,
        so the value is that of the assistant's first token. Values are log-probabilities of the
        model's raw distribution (no temperature or top-p), greedy, one position.
        """
        raise NotImplementedError(f"the {self.name} backend does not give next-token log-probabilities")

    def score(self, requests: Sequence[tuple[Prompt, str]]) -> list[list[float]]:
        """For each (prompt, continuation), the log-probability of each token of the continuation
        given the prompt and the continuation's earlier tokens (teacher forcing).

        Chat prompts are rendered with the generation prompt, so the continuation is scored as
        the assistant's answer; text prompts as they are. The prompt and the continuation are
        tokenized apart and joined, so the tokens scored are exactly those the model would have
        to generate. Raw distribution (no temperature or top-p); an empty continuation gives [].
        """
        raise NotImplementedError(f"the {self.name} backend does not score text")

    def close(self) -> None:
        """Release the model / engine / connections. Safe to call twice."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
