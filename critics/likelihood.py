"""Two-way likelihood critic (the idea of BARTScore / PRISM): a pair (x, y) is a paraphrase
when, under the paraphrase prompt P the teacher answers, each side is a likely answer for the
other. Needs only a backend that can score text (:meth:`Backend.score`): any causal LM.

Per pair, four teacher-forced passes, each the mean log-probability per token of an answer:

- ``lik_forward_raw``  = mean log p(y | P(x))   how well x lets the model write y
- ``lik_backward_raw`` = mean log p(x | P(y))   how well y lets the model write x back
- ``lik_forward``  = lik_forward_raw  - mean log p(y | B)
- ``lik_backward`` = lik_backward_raw - mean log p(x | B)

B, the baseline, is by default a neutral prompt with no source ("Write a sentence."), so the
normalised scores are a pointwise mutual information per token: how much the other side helps
to predict a sentence, with how predictable the sentence is anyway (short common words, names
the model knows) taken out. ``baseline: copy`` uses P(answer) instead (the answer given itself,
0 for a copy); ``baseline: none`` thresholds the raw means. Means, not sums: a sum grows with the token count, and x and y differ in length.
On data/paraphrase/labels.jsonl with SmolLM2-135M-Instruct the neutral baseline separated
best (README, "Likelihood critic"). The measure is one of relatedness: a near-copy that
changes one word (a number, a negation) scores like a copy, so this critic comes after the
copy and lexical critics, and catches what they let through: unrelated or off-topic answers,
added and dropped content.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from distill.critics.base import Critic, Verdict
from distill.critics.nli import directions_of, threshold_verdict
from distill.errors import DistillError
from distill.record import Record

STYLES = ("chat", "text")
TEXT_TEMPLATE = "{instruction}\n\nSentence: {source}\nParaphrase:"
NEUTRAL = "Write a sentence."
NEUTRAL_TEXT = "Write a sentence.\nSentence:"
BASELINES = ("neutral", "copy", "none")


def default_instruction() -> str:
    """The instruction the paraphrase_instruct task puts before each input."""
    from distill.config import ParaphraseInstructTask

    return ParaphraseInstructTask.model_fields["instruction"].default


def scoring_backend(who: str, backend: Any, teacher: Any, model: str | None) -> tuple[Any, bool]:
    """(the backend a scoring critic uses, whether the critic built it and so closes it):
    ``backend`` as given, else one built from ``teacher`` (a ``TeacherConfig`` or its dict)
    with ``model`` replacing its model."""
    if backend is not None and (teacher is not None or model is not None):
        raise DistillError(f"{who}: pass backend, or teacher and/or model, not both")
    if backend is not None:
        return backend, False
    from distill.config import TeacherConfig
    from distill.generator.backends import make_backend

    cfg = teacher if isinstance(teacher, TeacherConfig) else TeacherConfig(**dict(teacher or {}))
    return make_backend(cfg.model_copy(update={"model": model}) if model is not None else cfg), True


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else -math.inf


class LikelihoodCritic(Critic):
    """Keeps a pair when ``lik_forward`` >= ``min_forward`` and/or ``lik_backward`` >=
    ``min_backward``, as ``direction`` ("both", "forward", "backward") says.

    The scorer is ``backend`` (a :class:`~distill.generator.backends.Backend` with ``score``;
    the caller keeps it), else one built from ``teacher`` (a ``TeacherConfig`` or its dict; the
    run's teacher when built from a filter config), with ``model`` replacing its model when
    given; a built backend is closed by :meth:`close`. ``prompt_style`` "chat" sends the
    instruction and the source as one user message and scores the other side as the
    assistant's answer, the way ``paraphrase_instruct`` prompts the teacher; "text" sends
    ``TEXT_TEMPLATE`` (base models, and OpenAI-compatible completions endpoints, which score
    text only). Baselines are remembered per sentence (up to ``memo_size``): in
    ``paraphrase_pairs`` output each sentence is in many pairs. The default thresholds suit
    SmolLM2-135M-Instruct with the chat prompt and the neutral baseline (about 95% of the
    reworded paraphrases of labels.jsonl pass both); another model needs its own.
    """

    name = "likelihood"
    score_names = ("lik_forward", "lik_backward", "lik_forward_raw", "lik_backward_raw")

    def __init__(self, backend: Any = None, teacher: Any = None, model: str | None = None,
                 prompt_style: str = "chat", instruction: str | None = None, baseline: str = "neutral",
                 direction: str = "both", min_forward: float = 1.0, min_backward: float = 1.0,
                 records_per_call: int = 32, memo_size: int = 100_000, keep_rejects: bool = True) -> None:
        super().__init__(keep_rejects=keep_rejects)
        if prompt_style not in STYLES:
            raise DistillError(f"likelihood: prompt_style must be 'chat' or 'text', not {prompt_style!r}")
        if baseline not in BASELINES:
            raise DistillError(f"likelihood: baseline must be 'neutral', 'copy' or 'none', not {baseline!r}")
        self.baseline = baseline
        if records_per_call < 1 or memo_size < 0:
            raise DistillError("likelihood: records_per_call >= 1 and memo_size >= 0 are required")
        self.dirs = directions_of(direction)
        self.direction, self.prompt_style = direction, prompt_style
        self.instruction = instruction if instruction is not None else default_instruction()
        self.minimums = {"lik_forward": float(min_forward), "lik_backward": float(min_backward)}
        self.batch_size, self.memo_size = records_per_call, memo_size
        self._base: dict[str, float] = {}
        self.backend, self._owns_backend = scoring_backend("likelihood", backend, teacher, model)

    def thresholds(self) -> list[tuple[str, str, float]]:
        return [(f"lik_{d}", ">=", self.minimums[f"lik_{d}"]) for d in self.dirs]

    def prompt(self, source: str | None) -> Any:
        """The paraphrase prompt for ``source``; None: the neutral baseline prompt."""
        if source is None:
            return [{"role": "user", "content": NEUTRAL}] if self.prompt_style == "chat" else NEUTRAL_TEXT
        if self.prompt_style == "chat":
            return [{"role": "user", "content": f"{self.instruction}\n\n{source}"}]
        return TEXT_TEMPLATE.format(instruction=self.instruction, source=source)

    def answer(self, text: str) -> str:
        return text if self.prompt_style == "chat" else f" {text}"

    def mean_logprobs(self, pairs: Sequence[tuple[str | None, str]]) -> list[float]:
        """Mean log-probability per token of each answer given its source, one backend call
        for the distinct pairs."""
        distinct = list(dict.fromkeys(pairs))
        rows = self.backend.score([(self.prompt(s), self.answer(a)) for s, a in distinct])
        found = {p: mean(r) for p, r in zip(distinct, rows)}
        return [found[p] for p in pairs]

    def judge_batch(self, records: list[Record]) -> list[Verdict]:
        xs, ys = [r.input for r in records], [r.output for r in records]
        cross: list[tuple[str, str]] = []  # (source, answer)
        for d in self.dirs:
            cross += list(zip(xs, ys)) if d == "forward" else list(zip(ys, xs))
        answers = list(dict.fromkeys(a for _, a in cross))
        if self.baseline == "none":  # the raw mean log-probability is the score: no baseline passes
            self._base.update((a, 0.0) for a in answers if a not in self._base)
        base = {a: self._base[a] for a in answers if a in self._base}
        new = [a for a in answers if a not in base]
        flat = self.mean_logprobs(cross + [(a if self.baseline == "copy" else None, a) for a in new])
        base.update(zip(new, flat[len(cross):]))
        if len(self._base) + len(new) > self.memo_size:
            self._base.clear()
        if len(new) <= self.memo_size:
            self._base.update((a, base[a]) for a in new)
        n = len(records)
        verdicts: list[Verdict] = []
        for i, r in enumerate(records):
            judged = {}
            for k, d in enumerate(self.dirs):
                raw = flat[k * n + i]
                r.scores[f"lik_{d}_raw"] = raw
                # an empty side has no tokens: -inf, never -inf - -inf (nan would pass any threshold)
                lik = raw - base[cross[k * n + i][1]] if raw > -math.inf else -math.inf
                r.scores[f"lik_{d}"] = judged[f"lik_{d}"] = lik
            verdicts.append(threshold_verdict(judged, self.minimums))
        return verdicts

    def close(self) -> None:
        """Close the backend if this critic built it."""
        if self._owns_backend and self.backend is not None:
            self.backend.close()
            self.backend = None
