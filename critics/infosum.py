"""InfoSumm's critics (Jung et al., 2024, "Information-Theoretic Distillation for Reference-less
Summarization") as scores any backend with token log-probabilities can compute
(:meth:`Backend.score`: transformers, vLLM prompt logprobs, OpenAI completions echo).

The paper, with a masked LM (T5), keeps a document x and summary y when

- saliency:     log p(x | x_mask, y) / p(x | x_mask) > tau_S * |y|/|x|   (what y tells about x,
  relative to its length)
- faithfulness: log p(y | y_mask, x) / p(y | y_mask) > tau_F   (how much x explains y: an
  added fact is not explained)
- brevity:      |y|/|x| small.

A causal LM does not fill masks; it scores a whole text given a prompt, teacher-forced. So each
pointwise mutual information becomes the difference of two summed log-probabilities of the same
text, under a prompt that shows the other side and one that does not:

- ``info_saliency_pmi``  = sum log p(x | S(y)) - sum log p(x | S0)          (nats)
- ``info_brevity``       = |y| / |x| in the model's tokens
- ``info_saliency``      = info_saliency_pmi / info_brevity, so the paper's inequality is the
  plain bound ``info_saliency > min_saliency`` (= tau_S)
- ``info_faithfulness``  = sum log p(y | F(x)) - sum log p(y | F0)          (nats, summed as the
  paper; min_faithfulness = tau_F)
- ``info_faithfulness_mean`` = info_faithfulness / |y| (per token: comparable across lengths)

Prompts (``prompt_style``). "text", for base models and completion endpoints: F(x) =
``"Document: {x}\\nSummary:"`` scoring ``" {y}"``, F0 = ``"Summary:"``; S(y) = ``"Summary: {y}\\n
Document:"`` scoring ``" {x}"``, S0 = ``"Document:"``. "chat", for instruct models: F(x) is the
user message the summarization task sends (the instruction, then x) with y as the assistant's
answer, F0 asks for a one-sentence summary of a text without giving one. For saliency the user
gives y as a one-sentence summary and asks for the full text, and x is the answer; S0 asks for a
full text. That is the causal analogue of the masked reconstruction: how much better the model
writes the document having been told its summary, with the same framing in both prompts so the
difference is y's information and not the wording of the request.

Each document has many candidate summaries (and a summary may be judged against one document
only), so the baseline sums (x under S0, y under F0) are remembered per text; a record costs
two passes (x given y, y given x) once its texts' baselines are known. An empty x or y has no
tokens: its saliency and faithfulness are -inf (it fails any minimum).
"""

from __future__ import annotations

import math
from typing import Any

from distill.critics.base import Critic, Threshold, Verdict, above, below
from distill.critics.likelihood import scoring_backend
from distill.errors import DistillError
from distill.record import Record

STYLES = ("chat", "text")
FAITH_BASE_CHAT = "Write a one-sentence summary of a text."
SALIENCY_CHAT = "Here is a one-sentence summary of a text:\n\n{summary}\n\nWrite the full text."
SALIENCY_BASE_CHAT = "Write a full text."
FAITH_TEXT, FAITH_BASE_TEXT = "Document: {document}\nSummary:", "Summary:"
SALIENCY_TEXT, SALIENCY_BASE_TEXT = "Summary: {summary}\nDocument:", "Document:"
#: the bounds, in the order they are checked: (score, setting, kind)
BOUNDS = (("info_saliency", "min_saliency", "min"), ("info_faithfulness", "min_faithfulness", "min"),
          ("info_faithfulness_mean", "min_faithfulness_mean", "min"), ("info_brevity", "min_brevity", "min"),
          ("info_brevity", "max_brevity", "max"))


def default_instruction() -> str:
    """The instruction the summarization task puts before each document."""
    from distill.generator.tasks.summarize import INSTRUCTION

    return INSTRUCTION


class InfoSumCritic(Critic):
    """Keeps a summary when every bound that is set holds, strictly as the paper's inequalities:
    ``info_saliency > min_saliency``, ``info_faithfulness > min_faithfulness``,
    ``info_faithfulness_mean > min_faithfulness_mean``, ``min_brevity < info_brevity <
    max_brevity``. A bound set to None is no bound; every score is written either way. The
    reason names the first failed bound in that order (``info_saliency<20``).

    The scorer is ``backend`` (the caller keeps it), else one built from ``teacher`` (a
    ``TeacherConfig`` or its dict; the run's teacher when built from a filter config), with
    ``model`` replacing its model; a built backend is closed by :meth:`close`. ``instruction``
    replaces the summarization task's instruction in the chat faithfulness prompt. Baselines are
    remembered per text, up to ``memo_size`` texts.

    The default bounds suit SmolLM2-135M-Instruct with the chat prompts, measured on 30 lee
    documents (data/summarization) with the model's own summaries, each document's lead sentence,
    another document's summary (off-topic) and a summary with an unrelated clause appended: they
    keep about nine in ten of the model's summaries and every lead, and drop all but one of the
    30 off-topic ones. An added clause lowers faithfulness relative to the same summary without
    it (30 of 30 pairs), but not below an absolute bound: a long faithful part carries it, so
    added facts are the ``entities`` critic's to catch. Another model or prompt style needs its
    own bounds; the scores are in nats, so they move with the model's confidence.
    """

    name = "infosum"
    score_names = ("info_saliency", "info_saliency_pmi", "info_faithfulness", "info_faithfulness_mean",
                   "info_brevity")

    def __init__(self, backend: Any = None, teacher: Any = None, model: str | None = None,
                 prompt_style: str = "chat", instruction: str | None = None,
                 min_saliency: float | None = 20.0, min_faithfulness: float | None = 20.0,
                 min_faithfulness_mean: float | None = None, min_brevity: float | None = None,
                 max_brevity: float | None = None, records_per_call: int = 16, memo_size: int = 100_000,
                 keep_rejects: bool = True) -> None:
        super().__init__(keep_rejects=keep_rejects)
        if prompt_style not in STYLES:
            raise DistillError(f"infosum: prompt_style must be 'chat' or 'text', not {prompt_style!r}")
        if records_per_call < 1 or memo_size < 0:
            raise DistillError("infosum: records_per_call >= 1 and memo_size >= 0 are required")
        if min_brevity is not None and max_brevity is not None and min_brevity >= max_brevity:
            raise DistillError(f"infosum: min_brevity {min_brevity} must be < max_brevity {max_brevity}")
        self.prompt_style = prompt_style
        self.instruction = instruction if instruction is not None else default_instruction()
        settings = {"min_saliency": min_saliency, "min_faithfulness": min_faithfulness,
                    "min_faithfulness_mean": min_faithfulness_mean, "min_brevity": min_brevity,
                    "max_brevity": max_brevity}
        self.bounds = [(score, kind, float(settings[key])) for score, key, kind in BOUNDS
                       if settings[key] is not None]
        self.batch_size, self.memo_size = records_per_call, memo_size
        self._base: dict[tuple[str, str], tuple[float, int]] = {}  # ("x" | "y", text) -> (sum, tokens)
        self.backend, self._owns_backend = scoring_backend("infosum", backend, teacher, model)

    def thresholds(self) -> list[Threshold]:
        return [(score, ">" if kind == "min" else "<", value) for score, kind, value in self.bounds]

    # ---------------------------------------------------------------- prompts

    def faithfulness_prompt(self, x: str | None) -> Any:
        """The prompt y is scored under: given document ``x``, or the baseline (None)."""
        if self.prompt_style == "text":
            return FAITH_BASE_TEXT if x is None else FAITH_TEXT.format(document=x)
        return [{"role": "user", "content": FAITH_BASE_CHAT if x is None else f"{self.instruction}\n\n{x}"}]

    def saliency_prompt(self, y: str | None) -> Any:
        """The prompt x is scored under: given summary ``y``, or the baseline (None)."""
        if self.prompt_style == "text":
            return SALIENCY_BASE_TEXT if y is None else SALIENCY_TEXT.format(summary=y)
        return [{"role": "user", "content": SALIENCY_BASE_CHAT if y is None else SALIENCY_CHAT.format(summary=y)}]

    def answer(self, text: str) -> str:
        return text if self.prompt_style == "chat" else f" {text}"

    # ---------------------------------------------------------------- judging

    def judge_batch(self, records: list[Record]) -> list[Verdict]:
        pairs = list(dict.fromkeys((r.input, r.output) for r in records if r.input.strip() and r.output.strip()))
        new = list(dict.fromkeys([("x", x) for x, _ in pairs if ("x", x) not in self._base]
                                 + [("y", y) for _, y in pairs if ("y", y) not in self._base]))
        requests = [(self.saliency_prompt(y), self.answer(x)) for x, y in pairs]
        requests += [(self.faithfulness_prompt(x), self.answer(y)) for x, y in pairs]
        requests += [(self.saliency_prompt(None) if side == "x" else self.faithfulness_prompt(None), self.answer(t))
                     for side, t in new]
        rows = self.backend.score(requests) if requests else []
        if len(rows) != len(requests):
            raise DistillError(f"infosum: the backend scored {len(rows)} of {len(requests)} texts")
        n = len(pairs)
        needed = {("x", x) for x, _ in pairs} | {("y", y) for _, y in pairs}
        base = {k: self._base[k] for k in needed if k in self._base}
        base.update((k, (math.fsum(r), len(r))) for k, r in zip(new, rows[2 * n:]))
        if len(self._base) + len(new) > self.memo_size:
            self._base.clear()
        if len(new) <= self.memo_size:
            self._base.update((k, base[k]) for k in new)
        found = {p: (math.fsum(rows[i]), math.fsum(rows[n + i])) for i, p in enumerate(pairs)}
        return [self._score(r, found.get((r.input, r.output)), base) for r in records]

    def _score(self, r: Record, sums: tuple[float, float] | None, base: dict) -> Verdict:
        s = r.scores
        (x_base, nx), (y_base, ny) = ((0.0, 0), (0.0, 0))
        if sums is not None:
            (x_base, nx), (y_base, ny) = base[("x", r.input)], base[("y", r.output)]
        if not nx or not ny:  # an empty side has no tokens: it says and explains nothing
            s["info_brevity"] = 0.0 if not r.output.strip() else math.inf
            s["info_saliency_pmi"] = s["info_saliency"] = -math.inf
            s["info_faithfulness"] = s["info_faithfulness_mean"] = -math.inf
        else:
            s["info_brevity"] = ny / nx
            s["info_saliency_pmi"] = sums[0] - x_base
            s["info_saliency"] = s["info_saliency_pmi"] / s["info_brevity"]
            s["info_faithfulness"] = sums[1] - y_base
            s["info_faithfulness_mean"] = s["info_faithfulness"] / ny
        for score, kind, value in self.bounds:
            if kind == "min" and not s[score] > value:
                return False, below(score, value)
            if kind == "max" and not s[score] < value:
                return False, above(score, value)
        return True

    def close(self) -> None:
        """Close the backend if this critic built it."""
        if self._owns_backend and self.backend is not None:
            self.backend.close()
            self.backend = None
